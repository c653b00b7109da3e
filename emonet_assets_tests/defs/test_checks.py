"""Each data-quality gate passes on the demo data and fails on data planted to break it."""

import dagster as dg
import polars as pl

from emonet_assets.definitions import build_definitions
from emonet_assets.defs.design.checks import cells_are_balanced, prompts_are_valid, shards_are_non_empty
from emonet_assets.defs.taxonomy.checks import rollups_are_complete, taxonomy_is_complete
from emonet_assets.lib.shared.storage import Store
from emonet_assets.resources import ProfileResource, StorageResource
from emonet_assets.runner import materialize_all
from emonet_assets_tests.defs.conftest import tiny_profile


def storage(root):
    return StorageResource(root=str(root))


def profile_resource(root):
    return ProfileResource.from_profile(tiny_profile(root))


def rewrite(root, table, change):
    store = Store(str(root))
    store.write_table(table, change(store.read_table(table)))


def test_all_checks_pass_on_the_demo_data(materialized_root):
    s = storage(materialized_root)
    assert taxonomy_is_complete(storage=s).passed
    assert rollups_are_complete(storage=s).passed
    assert prompts_are_valid(storage=s).passed
    assert cells_are_balanced(storage=s).passed
    assert shards_are_non_empty(storage=s, profile=profile_resource(materialized_root)).passed


def test_taxonomy_check_fails_on_a_duplicated_emotion(root_copy):
    rewrite(root_copy, "taxonomy", lambda t: pl.concat([t, t.head(1)]))
    result = taxonomy_is_complete(storage=storage(root_copy))
    assert not result.passed
    assert "expected 40 emotions, found 41" in result.description
    failed = {f["expectation"] for f in result.metadata["failures"].value}
    assert {"expect_table_row_count_to_equal", "expect_column_values_to_be_unique"} <= failed


def test_taxonomy_check_fails_on_an_emotion_without_group(root_copy):
    rewrite(
        root_copy,
        "taxonomy",
        lambda t: t.with_columns(
            group_id=pl.when(pl.col("emotion_id") == "awe").then(None).otherwise(pl.col("group_id"))
        ),
    )
    result = taxonomy_is_complete(storage=storage(root_copy))
    assert not result.passed and "without a group: ['Awe']" in result.description


def test_rollup_check_names_the_missing_emotion(root_copy):
    rewrite(
        root_copy,
        "emotion_rollups",
        lambda t: t.filter(~((pl.col("rollup") == "operational") & (pl.col("emotion_id") == "awe"))),
    )
    result = rollups_are_complete(storage=storage(root_copy))
    assert not result.passed
    assert "rollup 'operational'" in result.description and "'Awe' is missing" in result.description


def test_prompt_check_fails_on_duplicate_ids_and_empty_text(root_copy):
    rewrite(
        root_copy,
        "prompt_design",
        lambda t: t.with_columns(
            prompt_id=pl.when(pl.col("position") == 1).then(pl.lit(t["prompt_id"][0])).otherwise(pl.col("prompt_id")),
            prompt=pl.when(pl.col("position") == 2).then(pl.lit("   ")).otherwise(pl.col("prompt")),
        ),
    )
    result = prompts_are_valid(storage=storage(root_copy))
    assert not result.passed
    failures = {(f["expectation"], f["column"]) for f in result.metadata["failures"].value}
    assert ("expect_column_values_to_be_unique", "prompt_id") in failures
    assert ("expect_column_values_to_match_regex", "prompt") in failures


def test_prompt_check_fails_on_an_unfilled_placeholder(root_copy):
    rewrite(root_copy, "prompt_design", lambda t: t.with_columns(prompt=pl.col("prompt") + " {cluster}"))
    assert not prompts_are_valid(storage=storage(root_copy)).passed


def test_balance_check_fails_when_a_cell_gets_two_more(root_copy):
    def crowd(t):
        extra = t.head(2).with_columns(prompt_id=pl.Series(["x1", "x2"]), cell_id=pl.lit(t["cell_id"][0]))
        return pl.concat([t, extra])

    rewrite(root_copy, "prompt_design", crowd)
    result = cells_are_balanced(storage=storage(root_copy))
    assert not result.passed
    assert result.metadata["spread"].value == 3
    assert "spread 3" in result.description


def test_shard_check_fails_on_an_empty_shard(root_copy):
    rewrite(
        root_copy,
        "prompt_shards",
        lambda t: pl.concat([t, t.tail(1).with_columns(shard=pl.lit("shard-99999"))]),
    )
    result = shards_are_non_empty(storage=storage(root_copy), profile=profile_resource(root_copy))
    assert not result.passed
    assert "shard-99999" in result.description
    assert result.metadata["examples"].value[0]["problem"] == "empty shard"


def test_shard_check_fails_on_a_prompt_outside_the_shards(root_copy):
    rewrite(
        root_copy,
        "prompt_design",
        lambda t: t.with_columns(
            shard=pl.when(pl.col("position") == 0).then(pl.lit("shard-77777")).otherwise(pl.col("shard"))
        ),
    )
    result = shards_are_non_empty(storage=storage(root_copy), profile=profile_resource(root_copy))
    assert not result.passed
    problems = {e["problem"] for e in result.metadata["examples"].value}
    assert "shard missing from prompt_shards" in problems and "size differs from the design" in problems


def test_a_failing_blocking_check_stops_downstream(tmp_path):
    bad_mapping = tmp_path / "bad.yaml"
    bad_mapping.write_text("name: ops\nlevels:\n  alert: [Fear, Fear, Anger]\n")
    profile = tiny_profile(tmp_path / "root")
    profile = profile.model_copy(
        update={"taxonomy": profile.taxonomy.model_copy(update={"rollups": [str(bad_mapping)]})}
    )
    reports = materialize_all(build_definitions(profile), dg.DagsterInstance.ephemeral())
    failed = reports[-1]
    assert failed.assets == ["emotion_rollups"] and not failed.success
    [message] = failed.checks_failed
    assert message.startswith("rollups_are_complete: 39 problem(s)")  # Fear twice, 38 emotions missing
    assert "'Fear' named 2 times" in message
    assert Store(str(tmp_path / "root")).table_names() == ["emotion_rollups", "taxonomy"]


def _file_bytes(root, table):
    return (root / "tables" / table / "all.parquet").read_bytes()


def test_template_with_unknown_placeholder_fails_naming_it_and_keeps_stored_prompts(root_copy):
    before = _file_bytes(root_copy, "prompt_design")
    profile = tiny_profile(root_copy, templates={"mine": "a {mood} face showing {cluster}"})
    reports = materialize_all(build_definitions(profile), dg.DagsterInstance.ephemeral())
    failed = reports[-1]
    assert failed.assets == ["design_cells", "prompt_design"] and not failed.success
    assert "unknown placeholder(s) {mood}" in failed.error and "tiny.yaml" in failed.error
    assert _file_bytes(root_copy, "prompt_design") == before


def test_malformed_rollup_file_fails_naming_it_and_keeps_stored_rollups(root_copy, tmp_path):
    before = _file_bytes(root_copy, "emotion_rollups")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: ops\nlevels: {alert: [Fear\n")
    profile = tiny_profile(root_copy)
    profile = profile.model_copy(update={"taxonomy": profile.taxonomy.model_copy(update={"rollups": [str(broken)]})})
    reports = materialize_all(build_definitions(profile), dg.DagsterInstance.ephemeral())
    assert reports[-1].assets == ["emotion_rollups"] and not reports[-1].success
    assert f"{broken}: rollup mapping file is not valid YAML" in reports[-1].error
    assert _file_bytes(root_copy, "emotion_rollups") == before
