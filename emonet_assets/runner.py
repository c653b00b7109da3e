"""Materialize the whole asset graph in-process, one run per asset node (and per partition)."""

from __future__ import annotations

import contextlib
import graphlib
import io
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg
from dagster import DagsterEventType
from rich.markup import escape

from emonet_assets.defs.execution.runs import RANGE_END_TAG, RANGE_START_TAG, error_message, partition_runs

if TYPE_CHECKING:
    from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor

# How a StepReport marks a check that failed at WARN severity.
WARNED = "warning: "


@dataclass
class StepReport:
    assets: list[str]
    partition: str | None
    success: bool
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)
    error: str | None = None
    run_id: str | None = None
    output_tail: str = ""
    interrupted: bool = False  # Ctrl-C (SIGINT) stopped the run; Dagster reports it as a failed step


def _interrupted(result: dg.ExecuteInProcessResult) -> bool:
    from dagster._core.errors import DagsterExecutionInterruptedError
    from dagster._core.execution.plan.objects import ErrorSource

    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_FAILURE and (
            event.step_failure_data.error_source == ErrorSource.INTERRUPT
        ):
            return True
        if event.event_type == DagsterEventType.RUN_FAILURE:
            error = event.job_failure_data.error
            names = {"KeyboardInterrupt", DagsterExecutionInterruptedError.__name__}
            if error is not None and error.cls_name in names:
                return True
    return False


def _failure_message(result: dg.ExecuteInProcessResult) -> str | None:
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_FAILURE:
            return error_message(event.step_failure_data.error)
    return None


def _quiet(log_level: str) -> dict:
    return {"loggers": {"console": {"config": {"log_level": log_level}}}}


def plan(defs: dg.Definitions) -> list[list[dg.AssetKey]]:
    """Asset keys grouped by the node that materializes them, nodes in dependency order."""
    graph = defs.resolve_asset_graph()
    materializable = set(graph.materializable_asset_keys)
    node_of = {key: tuple(sorted(set(graph.get(key).assets_def.keys) & materializable)) for key in materializable}
    sorter = graphlib.TopologicalSorter()
    for key, node in sorted(node_of.items()):
        parents = {node_of[p] for p in graph.get(key).parent_keys if p in node_of} - {node}
        sorter.add(node, *parents)
    return [list(node) for node in sorter.static_order()]


def materialize_step(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    keys: list[dg.AssetKey],
    partition: str | None = None,
    partition_range: tuple[str, str] | None = None,
    run_config: dict | None = None,
    log_level: str = "WARNING",
) -> StepReport:
    """One run: the given asset node for one partition, a range of partitions, or unpartitioned. An asset of a
    multi-asset that cannot run in part brings the node's other assets along."""
    graph = defs.resolve_asset_graph()
    keys = sorted(dg.AssetSelection.assets(*keys).required_multi_asset_neighbors().resolve(graph))
    tags = {}
    if partition_range:
        tags = {
            RANGE_START_TAG: partition_range[0],
            RANGE_END_TAG: partition_range[1],
        }
    started = time.perf_counter()
    # Tools a step runs (dbt) echo their logs to stdout for the UI's compute logs; here they would
    # bury the one-line-per-step report, so they are kept for a failure's message instead.
    echoed = io.StringIO()
    with contextlib.redirect_stdout(echoed):
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            run_config={**_quiet(log_level), **(run_config or {})},
            instance=instance,
            asset_selection=keys,
            partition_key=partition,
            tags=tags,
            raise_on_error=False,
        )
    label = partition
    if partition_range:
        label = partition_range[0] if partition_range[0] == partition_range[1] else "...".join(partition_range)
    report = StepReport(
        assets=[k.to_user_string() for k in keys],
        partition=label,
        success=result.success,
        seconds=time.perf_counter() - started,
        error=None if result.success else _failure_message(result),
        output_tail="\n".join(echoed.getvalue().splitlines()[-20:]),
        run_id=result.run_id,
        interrupted=not result.success and _interrupted(result),
    )
    for mat in result.get_asset_materialization_events():
        materialization = mat.step_materialization_data.materialization
        rows = materialization.metadata.get("dagster/row_count")
        if rows is not None:
            report.rows[materialization.asset_key.to_user_string()] = rows.value
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.passed:
            report.checks_passed += 1
        else:
            warned = WARNED if evaluation.severity == dg.AssetCheckSeverity.WARN else ""
            report.checks_failed.append(
                f"{warned}{evaluation.asset_check_key.name}: {evaluation.description or 'failed'}"
            )
    return report


SHORT_HASH = 12


def partition_label(partition: str) -> str:
    """A partition named by a sha256 (an annotation batch) is shown by its first 12 characters, as git shortens
    commits; shard names and ranges stay whole."""
    return partition[:SHORT_HASH] if re.fullmatch(r"[0-9a-f]{64}", partition) else partition


def step_lines(report: StepReport, label: str) -> list[str]:
    """The demo's lines for one step, as Rich markup: status, name, rows, checks passed and seconds; a step that
    wrote several tables gets a line naming each beside its own row count; each check that did not pass follows,
    as warned or failed by its severity."""
    mark = "[green]ok[/green]  " if report.success else "[red]FAIL[/red]"
    name = label + (f" [{partition_label(report.partition)}]" if report.partition else "")
    single = len(report.assets) == 1 and len(report.rows) == 1
    count = next(iter(report.rows.values()), 0)
    rows = f"{count:,} row{'' if count == 1 else 's'}" if single else ""
    checks = f"checks {report.checks_passed}/{report.checks_passed + len(report.checks_failed)}"
    lines = [f"  {mark} {escape(f'{name:<34}')} {rows:<12} {checks:<12} {report.seconds:5.1f}s"]
    if report.rows and not single:
        tables = ", ".join(f"{asset} {count:,}" for asset, count in sorted(report.rows.items()))
        lines.append(f"       rows: {escape(tables)}")
    for failure in report.checks_failed:
        if failure.startswith(WARNED):
            lines.append(f"       [yellow]check warned[/yellow] {escape(failure.removeprefix(WARNED))}")
        else:
            lines.append(f"       [red]check failed[/red] {escape(failure)}")
    if report.error:
        lines.append(f"       [red]{escape(report.error)}[/red]")
        if report.output_tail:
            lines.append(escape(report.output_tail))
    return lines


def describe_alerts(alerts: list[tuple[str, str]]) -> str:
    """(kind, severity) of each alert sent, counted in words: a WARN check warned, an ERROR check failed."""
    counts = Counter(alerts)
    parts = []
    for (kind, severity), verb in (
        (("check_failure", "ERROR"), "failed"),
        (("check_failure", "WARN"), "warned"),
        (("run_failure", "ERROR"), "failed"),
    ):
        if n := counts.get((kind, severity)):
            noun = "check" if kind == "check_failure" else "run"
            parts.append(f"{n} {noun}{'s' if n > 1 else ''} {verb}")
    return ", ".join(parts) if parts else "no check failed or warned"


def tick_sensor(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    name: str,
    cursor: str | None = None,
    log_level: str = "WARNING",
) -> dg.SensorResult:
    """One evaluation of a sensor with the definitions' resources, from `cursor`; nothing it requests is run. The
    sensor's log lines below `log_level` are not printed: the commands print their own account of what it did."""
    context = dg.build_sensor_context(
        instance=instance, definitions=defs, sensor_name=name, cursor=cursor, resources=dict(defs.resources or {})
    )
    with context:
        context.log.setLevel(log_level)
        return defs.resolve_sensor_def(name)(context)


def skip_message(result: dg.SensorResult | dg.SkipReason | None) -> str | None:
    """What a sensor evaluation said when it requested nothing: a SkipReason alone or inside a SensorResult."""
    reason = result if isinstance(result, dg.SkipReason) else getattr(result, "skip_reason", None)
    return reason.skip_message if reason is not None else None


def run_sensor(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    name: str,
    on_step: Callable[[StepReport], None] = lambda _: None,
    log_level: str = "WARNING",
) -> list[StepReport]:
    """Evaluate a sensor once as the daemon would: apply its partition requests, then run what it requests."""
    sensor = defs.resolve_sensor_def(name)
    result = tick_sensor(defs, instance, name, log_level=log_level)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    keys = list(sensor.asset_selection.resolve(defs.resolve_asset_graph()))
    reports = []
    for request in result.run_requests or []:
        selection = list(request.asset_selection) if request.asset_selection else keys
        report = materialize_step(defs, instance, selection, partition=request.partition_key, log_level=log_level)
        reports.append(report)
        on_step(report)
    return reports


def materialize_all(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    on_step: Callable[[StepReport], None] = lambda _: None,
    log_level: str = "WARNING",
    handlers: dict[dg.AssetKey, Callable[[], list[StepReport]]] | None = None,
) -> list[StepReport]:
    """Stops at the first failed step (a blocking check counts): later assets must not see bad data.

    Partitioned assets run in ranges packed as their backfill policy says; `handlers` run a node another
    way (the demo imports annotation batches through the landing-zone sensor).
    """
    graph = defs.resolve_asset_graph()
    reports = []
    for keys in plan(defs):
        node = graph.get(keys[0])
        handler = next((handlers[k] for k in keys if k in (handlers or {})), None)
        if handler is not None:
            handled = handler()
            reports += handled
            if not all(r.success for r in handled):
                return reports
            continue
        if node.partitions_def is None:
            steps = [{}]
        else:
            partition_keys = node.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
            per_run = (node.backfill_policy.max_partitions_per_run if node.backfill_policy else 1) or len(
                partition_keys
            )
            steps = [{"partition_range": r} for r in partition_runs(partition_keys, per_run)]
        for step in steps:
            report = materialize_step(defs, instance, keys, log_level=log_level, **step)
            reports.append(report)
            on_step(report)
            if not report.success:
                return reports
    return reports


def run_automation(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    cursor: AssetDaemonCursor | None,
    on_step: Callable[[StepReport], None] = lambda _: None,
    log_level: str = "WARNING",
) -> list[StepReport]:
    """One tick of the automation conditions, as the daemon's automation sensor evaluates them, from `cursor` (the
    state before the change it should react to); what it requests runs node by node in dependency order."""
    result = _evaluate_automation(defs, instance, cursor)
    requested = {k for k in defs.resolve_asset_graph().materializable_asset_keys if result.get_num_requested(k)}
    reports = []
    for keys in plan(defs):
        if chosen := [k for k in keys if k in requested]:
            report = materialize_step(defs, instance, chosen, log_level=log_level)
            reports.append(report)
            on_step(report)
            if not report.success:
                break
    return reports


def automation_cursor(defs: dg.Definitions, instance: dg.DagsterInstance) -> AssetDaemonCursor:
    """The automation state now, taken before a change so that `run_automation` reacts to that change alone."""
    return _evaluate_automation(defs, instance, None).cursor


def _evaluate_automation(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: AssetDaemonCursor | None):
    # Dagster's evaluator passes one of its own beta parameters; that warning is Dagster's, not the user's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
