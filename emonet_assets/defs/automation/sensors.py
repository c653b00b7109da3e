import dagster as dg

# Running by default, unlike the one Dagster adds on its own: annotation imports refresh consensus through it.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
