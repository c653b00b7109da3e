import dagster as dg

from emonet_assets.defs.design.partitions import prompt_shard_partitions
from emonet_assets.defs.execution.runs import RANGE_END_TAG, RANGE_START_TAG, partition_runs
from emonet_assets.defs.generation.assets import generated_images
from emonet_assets.lib.shared.tables import Table
from emonet_assets.resources import ProfileResource, StorageResource


@dg.schedule(
    name="nightly_generation_schedule",
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    target=[generated_images],
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every night at 02:00 UTC: the next `schedules.nightly_shards` prompt shards that have no images "
    "yet, packed into runs as the asset's backfill policy packs them. Starts stopped: it spends GPU hours.",
)
def nightly_generation_schedule(
    context: dg.ScheduleEvaluationContext, storage: StorageResource, profile: ProfileResource
):
    shards = context.instance.get_dynamic_partitions(prompt_shard_partitions.name)
    done = set(storage.store().table_partitions(Table.GENERATED_IMAGES))
    todo = [shard for shard in shards if shard not in done][: profile.schedules.nightly_shards]
    if not todo:
        return dg.SkipReason(f"all {len(shards)} prompt shards have images")
    per_run = generated_images.backfill_policy.max_partitions_per_run or len(todo)
    night = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(
            run_key=f"{night}:{start}...{end}",
            asset_selection=[generated_images.key],
            tags={RANGE_START_TAG: start, RANGE_END_TAG: end},
        )
        for start, end in partition_runs(shards, per_run, todo)
    ]
