import dagster as dg

weekly_refresh_job = dg.define_asset_job(
    name="weekly_refresh_job",
    selection=dg.AssetSelection.groups("consensus", "dataset", "model", "fairness"),
    description="Consensus and agreement from every imported rating, then splits, embeddings of new images, "
    "a re-trained model, its evaluation and the fairness report: the benchmark as of this week.",
)

weekly_refresh_schedule = dg.ScheduleDefinition(
    name="weekly_refresh_schedule",
    job=weekly_refresh_job,
    cron_schedule="0 4 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Mondays at 04:00 UTC: weekly_refresh_job. Starts stopped: turn it on where a deployment trains.",
)
