"""Operating the graph unattended: the nightly generation schedule, the weekly refresh, and consensus refreshing
itself when an annotation batch lands."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from emonet_assets.definitions import build_definitions
from emonet_assets.defs.execution.runs import RANGE_END_TAG, RANGE_START_TAG
from emonet_assets.lib.shared.storage import Store
from emonet_assets.runner import materialize_step
from emonet_assets_tests.defs.conftest import tiny_profile, upstream

pytestmark = pytest.mark.slow

GENERATED = dg.AssetKey("generated_images")
NIGHT = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, name: str):
    schedule = defs.resolve_schedule_def(name)
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=NIGHT, resources=dict(defs.resources)
    ) as context:
        return schedule.evaluate_tick(context)


def _ranges(tick) -> list[tuple[str, str]]:
    return [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in tick.run_requests or []]


def test_nightly_schedule_generates_the_next_shards_without_images(tmp_path, instance):
    profile = tiny_profile(tmp_path / "root", total=80)
    schedules = profile.schedules.model_copy(update={"nightly_shards": 2})
    defs = build_definitions(profile.model_copy(update={"schedules": schedules}))
    upstream(defs, instance)
    for shard in ("shard-00000", "shard-00002"):
        assert materialize_step(defs, instance, [GENERATED], partition=shard).success

    tick = _tick(defs, instance, "nightly_generation_schedule")
    assert _ranges(tick) == [("shard-00001", "shard-00001"), ("shard-00003", "shard-00003")]
    assert [r.run_key for r in tick.run_requests] == [
        "2026-11-24:shard-00001...shard-00001",
        "2026-11-24:shard-00003...shard-00003",
    ]
    assert all(r.asset_selection == [GENERATED] for r in tick.run_requests)
    for start, end in _ranges(tick):
        assert materialize_step(defs, instance, [GENERATED], partition_range=(start, end)).success

    assert _ranges(_tick(defs, instance, "nightly_generation_schedule")) == [("shard-00004", "shard-00004")]
    assert materialize_step(defs, instance, [GENERATED], partition="shard-00004").success
    done = _tick(defs, instance, "nightly_generation_schedule")
    assert done.run_requests == [] and done.skip_message == "all 5 prompt shards have images"
    assert Store(profile.root).table_partitions("generated_images") == [f"shard-0000{i}" for i in range(5)]


def test_weekly_refresh_retrains_and_rewrites_the_fairness_report(root_copy, instance):
    defs = build_definitions(tiny_profile(root_copy))
    job = defs.resolve_job_def("weekly_refresh_job")
    selected = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    assert {"consensus_labels", "emotion_agreement", "splits", "image_embeddings", "emotion_model"} <= selected
    assert {"model_evaluation", "fairness_report", "reannotation_tasks"} <= selected
    assert not selected & {"annotations", "generated_images", "image_qc", "prompt_design"}

    tick = _tick(defs, instance, "weekly_refresh_schedule")
    schedule = defs.resolve_schedule_def("weekly_refresh_schedule")
    assert len(tick.run_requests) == 1 and schedule.job_name == "weekly_refresh_job"
    assert schedule.cron_schedule == "0 4 * * 1"

    store = Store(str(root_copy))
    trainings = store.read_table("emotion_model").height
    result = job.execute_in_process(
        instance=instance, run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    )
    assert result.success
    assert store.read_table("emotion_model").height == trainings + 1
    assert instance.get_latest_materialization_event(dg.AssetKey("fairness_report")).run_id == result.run_id


def test_a_new_annotation_batch_refreshes_annotations_and_consensus_but_not_the_model(tmp_path):
    """Runless events stand in for a deployment where everything has been materialized once."""
    defs = build_definitions(tiny_profile(tmp_path / "root"))
    graph = defs.resolve_asset_graph()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("prompt_shards", ["shard-00000", "shard-00001"])
    instance.add_dynamic_partitions("annotation_batches", ["batch-a"])
    for key in graph.materializable_asset_keys:
        partitions = graph.get(key).partitions_def
        for partition in partitions.get_partition_keys(dynamic_partitions_store=instance) if partitions else [None]:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))

    def requested(cursor):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        return {k.to_user_string() for k in graph.materializable_asset_keys if result.get_num_requested(k)}, result

    nothing, result = requested(None)
    assert nothing == set()
    instance.add_dynamic_partitions("annotation_batches", ["batch-b"])
    for key in graph.get(dg.AssetKey("annotation_batches")).assets_def.keys:  # the batch's tables, written together
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition="batch-b"))
    refreshed, result = requested(result.cursor)

    consensus = {k.to_user_string() for k in graph.asset_keys_for_group("consensus")}
    collected = {"annotations", "external_images"}
    unread = {"stg_taxonomy", "stg_scales"}
    assert refreshed == collected | consensus - unread, "stg_taxonomy reads only the taxonomy, stg_scales no table"
    assert not refreshed & {"splits", "image_embeddings", "emotion_model", "fairness_report"}
    again, _ = requested(result.cursor)
    assert again == set()
