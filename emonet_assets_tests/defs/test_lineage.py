"""Lineage the asset graph can be trusted for: every table a step reads is one of its declared upstreams (or its own),
every table it writes is its own asset, and a table written outside any step is an external asset.

The test session's shared demo runs with every table access recorded (emonet_assets_tests.table_access); the tests
here judge that record against the asset graph, and a planted asset shows what a violation reads like.
"""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from emonet_assets.lib.shared.storage import Store, observe_tables
from emonet_assets.lib.shared.tables import Table
from emonet_assets.resources import StorageResource
from emonet_assets_tests.table_access import TableAccessLog, problems, tiny_graph


@pytest.mark.slow
def test_the_demo_reads_and_writes_only_declared_tables(demo_run):
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    graph = tiny_graph(str(demo_run.root))
    log = demo_run.table_access
    found = problems(log, graph)
    assert not found, "\n".join(found)
    assert len(log["steps"]) > 20  # every step was seen, not just the first
    assets = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert set(Store(str(demo_run.root)).table_names()) <= assets
    assert {table.value for table in Table} <= assets
    # The demo's one warned check lands in the alerts table, and the sensor that wrote it tells Dagster so.
    with dg.DagsterInstance.from_config(str(demo_run.folder / "home")) as instance:
        event = instance.get_latest_materialization_event(Table.ALERTS.key)
    assert event is not None
    rows = Store(str(demo_run.root)).read_table(Table.ALERTS).height
    assert event.asset_materialization.metadata["dagster/row_count"].value == rows


def planted_definitions(root) -> dg.Definitions:
    """Two assets over the tables of a root: `emotion_rollups` declares only taxonomy, yet reads prompt_design too,
    and writes design_cells beside its own table."""

    @dg.asset(key=Table.TAXONOMY.key)
    def taxonomy(storage: StorageResource) -> None:
        storage.store().write_table(Table.TAXONOMY, pl.DataFrame({"emotion_id": ["joy"]}))

    @dg.asset(key=Table.EMOTION_ROLLUPS.key, deps=[Table.TAXONOMY.key])
    def emotion_rollups(storage: StorageResource) -> None:
        store = storage.store()
        rollups = store.read_table(Table.TAXONOMY).join(store.read_table(Table.PROMPT_DESIGN), on="emotion_id")
        store.write_table(Table.EMOTION_ROLLUPS, rollups)
        store.write_table(Table.DESIGN_CELLS, rollups)

    return dg.Definitions(assets=[taxonomy, emotion_rollups], resources={"storage": StorageResource(root=str(root))})


def test_a_planted_undeclared_read_and_write_are_named(tmp_path):
    root = tmp_path / "root"
    Store(str(root)).write_table(Table.PROMPT_DESIGN, pl.DataFrame({"emotion_id": ["joy"], "prompt_id": ["p1"]}))
    defs = planted_definitions(root)
    log = TableAccessLog(defs.resolve_asset_graph())
    with observe_tables(log), dg.instance_for_test() as instance:
        assert defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance).success
    assert problems(log.to_json(), defs.resolve_asset_graph()) == [
        "step emotion_rollups reads table prompt_design, which is not among its declared upstreams",
        "step emotion_rollups writes table design_cells, which is not its own asset",
    ]
