"""The one code location: everything under defs/ (assets, checks, sensors, schedules, automation, the executor),
bound to the active profile's resources."""

import os
import warnings

import dagster as dg

from emonet_assets.defs.consensus.project import dbt_resource
from emonet_assets.lib.annotation.label_studio import TOKEN_ENV as LABEL_STUDIO_TOKEN_ENV
from emonet_assets.lib.shared.package_data import package_path
from emonet_assets.profiles import AlertSettings, Profile, load_profile
from emonet_assets.resources import (
    CatalogResource,
    EmbedderResource,
    ImageGeneratorResource,
    LabelStudioResource,
    NotifierResource,
    ProfileResource,
    StorageResource,
)

# Secrets stay out of profile files: set, these variables replace the profile's alert settings.
ALERT_SECRETS = {"webhook_url": "EMONET_ALERT_WEBHOOK_URL", "smtp_password": "EMONET_SMTP_PASSWORD"}


def _alert_settings(profile: Profile) -> AlertSettings:
    secrets = {field: dg.EnvVar(var) for field, var in ALERT_SECRETS.items() if os.environ.get(var)}
    return profile.alerts.model_copy(update=secrets)


def build_definitions(profile: Profile) -> dg.Definitions:
    """The defs folder, found through the dg project settings shipped in the package (dg.toml, the same as
    pyproject's [tool.dg]: a wheel has no pyproject.toml), with `profile`'s resources."""
    storage = StorageResource(
        root=profile.root, endpoint_url=os.environ.get("EMONET_S3_ENDPOINT_URL"), catalog=profile.catalog_path
    )
    resources = {
        "storage": storage,
        "catalog": CatalogResource(database=profile.catalog_path),
        "profile": ProfileResource.from_profile(profile),
        "generator": ImageGeneratorResource(settings=profile.generation),
        "embedder": EmbedderResource(settings=profile.embedding),
        "dbt": dbt_resource(),
        "notifier": NotifierResource(storage=storage, settings=_alert_settings(profile)),
        "label_studio": LabelStudioResource(
            url=profile.annotation.label_studio.url,
            token=dg.EnvVar(LABEL_STUDIO_TOKEN_ENV) if os.environ.get(LABEL_STUDIO_TOKEN_ENV) else None,
        ),
    }
    return dg.Definitions.merge(defs_folder(), dg.Definitions(resources=resources))


def defs_folder() -> dg.Definitions:
    """Everything under defs/, as `dg.load_from_defs_folder` builds it less one entry: the catalogue of component
    types the installed libraries offer (dagster's, dagster-aws's, dagster-dbt's), which the UI offers for
    scaffolding new components and which it rebuilds from their JSON schemas on every load, 1.1 s of CPU in a new
    process and 0.3 s of each later load's 0.36 s. This project scaffolds no components."""
    with warnings.catch_warnings():  # as load_from_defs_folder: Dagster's notes on its own beta and preview APIs
        for category in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):
            warnings.simplefilter("ignore", category)
        tree = dg.ComponentTree.for_project(package_path())
        return dg.Definitions.merge(tree.build_defs(tree.defs_module_path), dg.Definitions(component_tree=tree))


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_profile())
