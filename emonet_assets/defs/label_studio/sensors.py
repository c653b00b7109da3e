import json

import dagster as dg

from emonet_assets.lib.annotation.label_studio import (
    LabelStudioError,
    LabelStudioUnavailable,
    fetch_pulls,
    land_pulls,
    pulled_through,
    pushed_projects,
)
from emonet_assets.resources import LabelStudioResource, ProfileResource, StorageResource


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Pulls the annotations submitted in Label Studio since the last pull and lands them in the "
    "annotation landing zone, one Label Studio export per project and pull; annotation_landing_sensor imports "
    "them. Label Studio down: skips, and the next tick pulls from the same place.",
)
def label_studio_pull_sensor(
    context: dg.SensorEvaluationContext,
    storage: StorageResource,
    profile: ProfileResource,
    label_studio: LabelStudioResource,
) -> dg.SensorResult | dg.SkipReason:
    store, landing = storage.store(), profile.annotation.landing
    try:
        client = label_studio.client()
        projects = pushed_projects(store)
        pulls = fetch_pulls(client, label_studio.url, projects, pulled_through(store, landing))
    except LabelStudioUnavailable as exc:
        return dg.SkipReason(f"{exc}: nothing pulled; the next tick tries again from the same annotations")
    except LabelStudioError as exc:
        return dg.SkipReason(str(exc))
    if not projects:
        return dg.SkipReason(
            "no task pushed to Label Studio yet: materialize label_studio_tasks (emonet annotate push)"
        )
    if not pulls:
        return dg.SkipReason(f"no annotation submitted in Label Studio at {label_studio.url} since the last pull")
    landed = land_pulls(store, landing, pulls)
    for pull, (path, _) in zip(pulls, landed, strict=True):
        context.log.info(f"pulled {pull.annotations} annotations of {pull.title!r} into {path}")
    return dg.SensorResult(
        skip_reason=f"landed {len(landed)} file(s) of {sum(p.annotations for p in pulls)} annotations; "
        "annotation_landing_sensor imports them",
        cursor=json.dumps(pulled_through(store, landing), sort_keys=True),
    )
