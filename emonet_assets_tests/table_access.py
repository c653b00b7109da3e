"""Which tables each Dagster step reads and writes, judged against the asset graph: the lineage test's evidence.

The storage layer reports each table access to an observer (lib.shared.storage.observe_tables); the one here asks
Dagster which step is running and records the access with the step's own and upstream asset keys. Run as a module, it
runs `emonet ARGS` in this process under observation and writes the log as JSON, so the test session's one shared demo
(conftest.demo_run) is also the run the lineage test judges:

    python -m emonet_assets_tests.table_access LOG.json demo
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dagster as dg

from emonet_assets.lib.shared.storage import READ, WRITE, observe_tables


def running_step() -> dg.AssetExecutionContext | dg.AssetCheckExecutionContext | None:
    for kind in (dg.AssetExecutionContext, dg.AssetCheckExecutionContext):
        try:
            return kind.get()
        except dg.DagsterInvariantViolationError:
            continue
    return None


@dataclass
class StepTables:
    own: set[str]
    upstream: set[str]
    read: set[str] = field(default_factory=set)
    written: set[str] = field(default_factory=set)


class TableAccessLog:
    """Which tables each step read and wrote, and which were written outside any step."""

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
            return self.steps.setdefault(name, StepTables(own=set(), upstream=_names(upstream)))
        own = set(context.assets_def.keys)
        upstream = set().union(*(self.graph.get(k).parent_keys for k in own))
        return self.steps.setdefault(op.op_def.name, StepTables(own=_names(own), upstream=_names(upstream)))

    def to_json(self) -> dict:
        steps = {name: {k: sorted(v) for k, v in asdict(step).items()} for name, step in self.steps.items()}
        return {"steps": steps, "outside": {kind: sorted(tables) for kind, tables in self.outside.items()}}


def _names(keys) -> set[str]:
    return {key.to_user_string() for key in keys}


def problems(log: dict, graph) -> list[str]:
    """Every read of a table that is not among the step's upstreams (or its own), every write of a table that is not
    the step's own, and every write outside a step to a table that is no external asset; one line each."""
    found = []
    for name, step in sorted(log["steps"].items()):
        for table in step["read"]:
            if table not in set(step["own"]) | set(step["upstream"]):
                found.append(f"step {name} reads table {table}, which is not among its declared upstreams")
        for table in step["written"]:
            if table not in step["own"]:
                found.append(f"step {name} writes table {table}, which is not its own asset")
    for table in log["outside"].get(WRITE, []):
        key = dg.AssetKey(table)
        if not graph.has(key) or graph.get(key).is_materializable:
            found.append(f"table {table} is written outside any step, and is no external asset")
    return found


def tiny_graph(root: str):
    from emonet_assets.definitions import build_definitions
    from emonet_assets.profiles import load_profile

    return build_definitions(load_profile("tiny", env={"EMONET_ROOT": root})).resolve_asset_graph()


def main(log_path: str, *args: str) -> int:
    from emonet_assets.cli import main as emonet

    log = TableAccessLog(tiny_graph(os.environ["EMONET_ROOT"]))
    with observe_tables(log):
        try:
            emonet.main(list(args), prog_name="emonet")
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    Path(log_path).write_text(json.dumps(log.to_json()), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
