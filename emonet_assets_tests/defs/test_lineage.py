"""Lineage the asset graph can be trusted for: every table a step reads is one of its declared upstreams (or its own),
every table it writes is its own asset, and a table written outside any step is an external asset.

The storage layer reports each table access to an observer (lib.shared.storage.observe_tables); the one here asks
Dagster which step is running and judges the access against the asset graph.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import dagster as dg
import polars as pl
import pytest
from click.testing import CliRunner

from emonet_assets.cli import main
from emonet_assets.definitions import build_definitions
from emonet_assets.lib.shared.storage import READ, WRITE, Store, observe_tables
from emonet_assets.lib.shared.tables import Table
from emonet_assets.resources import StorageResource
from emonet_assets_tests.defs.conftest import tiny_profile


def running_step() -> dg.AssetExecutionContext | dg.AssetCheckExecutionContext | None:
    for kind in (dg.AssetExecutionContext, dg.AssetCheckExecutionContext):
        try:
            return kind.get()
        except dg.DagsterInvariantViolationError:
            continue
    return None


@dataclass
class StepTables:
    own: set[dg.AssetKey]
    upstream: set[dg.AssetKey]
    read: set[str] = field(default_factory=set)
    written: set[str] = field(default_factory=set)


class TableAccessLog:
    """Which tables each step read and wrote, and what was written outside any step."""

    def __init__(self, graph):
        self.graph = graph
        self.steps: dict[str, StepTables] = {}
        self.outside: dict[str, set[str]] = defaultdict(set)

    def __call__(self, kind: str, table: str) -> None:
        context = running_step()
        if context is None:
            self.outside[kind].add(table)
            return
        step = self._step(context)
        (step.read if kind == READ else step.written).add(table)

    def _step(self, context) -> StepTables:
        op = context.op_execution_context
        if isinstance(context, dg.AssetCheckExecutionContext):
            checks = sorted(op.selected_asset_check_keys)
            name = ", ".join(f"check {c.asset_key.to_user_string()}/{c.name}" for c in checks)
            upstream = set().union(*(self.graph.get(c).parent_entity_keys for c in checks))
            return self.steps.setdefault(name, StepTables(own=set(), upstream=upstream))
        own = set(context.assets_def.keys)
        upstream = set().union(*(self.graph.get(k).parent_keys for k in own))
        return self.steps.setdefault(op.op_def.name, StepTables(own=own, upstream=upstream))

    def problems(self) -> list[str]:
        found = []
        for name, step in sorted(self.steps.items()):
            for table in sorted(step.read):
                if dg.AssetKey(table) not in step.own | step.upstream:
                    found.append(f"step {name} reads table {table}, which is not among its declared upstreams")
            for table in sorted(step.written):
                if dg.AssetKey(table) not in step.own:
                    found.append(f"step {name} writes table {table}, which is not its own asset")
        for table in sorted(self.outside[WRITE]):
            key = dg.AssetKey(table)
            if not self.graph.has(key) or self.graph.get(key).is_materializable:
                found.append(f"table {table} is written outside any step, and is no external asset")
        return found


@pytest.mark.slow
def test_the_demo_reads_and_writes_only_declared_tables(tmp_path):
    root, home = tmp_path / "root", tmp_path / "home"
    graph = build_definitions(tiny_profile(root)).resolve_asset_graph()
    log = TableAccessLog(graph)
    with observe_tables(log):
        result = CliRunner().invoke(
            main, ["demo"], env={"EMONET_ROOT": str(root), "DAGSTER_HOME": str(home), "EMONET_PROFILE": None}
        )
    assert result.exit_code == 0, result.output
    problems = log.problems()
    assert not problems, "\n".join(problems)
    assert len(log.steps) > 20  # every step was seen, not just the first
    assets = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert set(Store(str(root)).table_names()) <= assets
    assert {table.value for table in Table} <= assets
    # The demo's one warned check lands in the alerts table, and the sensor that wrote it tells Dagster so.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(Table.ALERTS.key)
    assert event is not None
    rows = Store(str(root)).read_table(Table.ALERTS).height
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
    assert log.problems() == [
        "step emotion_rollups reads table prompt_design, which is not among its declared upstreams",
        "step emotion_rollups writes table design_cells, which is not its own asset",
    ]
