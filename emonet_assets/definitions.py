"""The one code location: everything under defs/, bound to the active profile's resources."""

import os

import dagster as dg

import emonet_assets.defs
from emonet_assets.alert_sensors import check_failure_alert_sensor, run_failure_alert_sensor
from emonet_assets.defs.consensus.project import dbt_resource
from emonet_assets.k8s_steps import step_executor
from emonet_assets.profiles import AlertSettings, Profile, load_profile
from emonet_assets.resources import (
    CatalogResource,
    EmbedderResource,
    ImageGeneratorResource,
    NotifierResource,
    ProfileResource,
    StorageResource,
)

# Running by default, unlike the one Dagster adds on its own: annotation imports refresh consensus through it.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
)

# Secrets stay out of profile files: set, these variables replace the profile's alert settings.
ALERT_SECRETS = {"webhook_url": "EMONET_ALERT_WEBHOOK_URL", "smtp_password": "EMONET_SMTP_PASSWORD"}


def _alert_settings(profile: Profile) -> AlertSettings:
    secrets = {field: dg.EnvVar(var) for field, var in ALERT_SECRETS.items() if os.environ.get(var)}
    return profile.alerts.model_copy(update=secrets)


def build_definitions(profile: Profile) -> dg.Definitions:
    storage = StorageResource(root=profile.root, endpoint_url=os.environ.get("EMONET_S3_ENDPOINT_URL"))
    resources = {
        "storage": storage,
        "catalog": CatalogResource(database=profile.catalog_path),
        "profile": ProfileResource.from_profile(profile),
        "generator": ImageGeneratorResource(settings=profile.generation),
        "embedder": EmbedderResource(settings=profile.embedding),
        "dbt": dbt_resource(),
        "notifier": NotifierResource(storage=storage, settings=_alert_settings(profile)),
    }
    return dg.Definitions.merge(
        dg.load_defs(defs_root=emonet_assets.defs),
        dg.Definitions(
            sensors=[automation_sensor, run_failure_alert_sensor, check_failure_alert_sensor],
            resources=resources,
            executor=step_executor(),
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_profile())
