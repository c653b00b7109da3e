"""Alerts on a failed run and on a failed asset check, over every asset of the code location.

Both sensors only read the event log and send through the notifier, which never raises: an alert that
cannot be delivered is logged, and the run it reports on has already finished either way.
"""

from __future__ import annotations

import json
import time

import dagster as dg
from dagster import DagsterEventType

from emonet_assets.defs.execution.runs import error_message
from emonet_assets.lib.shared.notify import Alert, LocalChannel
from emonet_assets.lib.shared.tables import Table
from emonet_assets.resources import NotifierResource

FINISHED = (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE)
# Below the daemon's 60 s sensor timeout, so a tick always returns its cursor.
TICK_BUDGET_S = 40
_SEVERITY_RANK = {"WARN": 0, "ERROR": 1}
_METADATA_TEXT_MAX = 300


def _plain(value: dg.MetadataValue) -> str | int | float | bool:
    raw = value.value
    if isinstance(raw, bool | int | float):
        return raw
    text = str(raw)
    return text if len(text) <= _METADATA_TEXT_MAX else text[:_METADATA_TEXT_MAX] + "…"


def _send(context, notifier: NotifierResource, alert: Alert) -> None:
    deliveries = notifier.send(alert)
    for delivery in deliveries:
        context.log.info(f"{alert.title}: {delivery.channel} {'sent' if delivery.ok else delivery.error}")
    if any(delivery.channel == LocalChannel.name and delivery.ok for delivery in deliveries):
        context.instance.report_runless_asset_event(
            dg.AssetMaterialization(Table.ALERTS.key, description=alert.title, metadata=notifier.alerts_metadata())
        )


def run_failure_alert(context: dg.RunFailureSensorContext, run_url: str) -> Alert:
    run = context.dagster_run
    steps = context.get_step_failure_events()
    assets = sorted(key.to_user_string() for key in run.asset_selection or [])
    metadata: dict[str, str | int] = {"job": run.job_name, "failed_steps": ", ".join(e.step_key for e in steps)}
    if partition := run.tags.get("dagster/partition"):
        metadata["partition"] = partition
    reasons = [f"{e.step_key}: {error_message(e.step_failure_data.error)}" for e in steps if e.step_failure_data]
    # Named by the steps that failed: a multi-asset's step is one name, where its assets (every table) are many.
    named = [e.step_key for e in steps] or assets
    return Alert(
        kind="run_failure",
        title=f"Run failed: {', '.join(named) if named else run.job_name}",
        severity="ERROR",
        asset=", ".join(assets) or None,
        check=None,
        run_id=run.run_id,
        run_url=run_url,
        message="\n".join(reasons) or context.failure_event.message or "run failed",
        metadata=metadata,
    )


def check_failure_alert(evaluation: dg.AssetCheckEvaluation, run_id: str, run_url: str) -> Alert:
    key = evaluation.asset_check_key
    # A WARN check that fails warns; only an ERROR check's failure is called a failure.
    verb = "warned" if evaluation.severity == dg.AssetCheckSeverity.WARN else "failed"
    return Alert(
        kind="check_failure",
        title=f"Check {verb}: {key.asset_key.to_user_string()} / {key.name}",
        severity=evaluation.severity.value,
        asset=key.asset_key.to_user_string(),
        check=key.name,
        run_id=run_id,
        run_url=run_url,
        message=evaluation.description or "check failed",
        metadata={name: _plain(value) for name, value in evaluation.metadata.items()},
    )


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts on every failed run: the assets, the failed steps with their error, a link to the run.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, notifier: NotifierResource) -> None:
    _send(context, notifier, run_failure_alert(context, notifier.run_url(context.dagster_run.run_id)))


def _latest(instance: dg.DagsterInstance, status: DagsterEventType) -> str | None:
    latest = instance.fetch_run_status_changes(status, limit=1, ascending=False)
    return latest.cursor if latest.records else None


@dg.sensor(
    name="check_failure_alert_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Data-quality alerts: every failed asset check of each run that finished since the last tick (at "
    "or above the profile's `alerts.min_check_severity`), with asset, check, severity, metadata and a run link.",
)
def check_failure_alert_sensor(context: dg.SensorEvaluationContext, notifier: NotifierResource) -> dg.SensorResult:
    # Finished runs are followed through run status changes, whose cursors every event log storage supports
    # (a plain storage-id cursor over check events does not work on the default run-sharded SQLite storage).
    instance = context.instance
    if context.cursor is None:
        # Like Dagster's run status sensors, start from now rather than replaying the whole history.
        return dg.SensorResult(cursor=json.dumps({s.value: _latest(instance, s) for s in FINISHED}))
    cursors = json.loads(context.cursor)
    floor = _SEVERITY_RANK[notifier.settings.min_check_severity]
    # One run at a time, its cursor saved after it: a tick that runs out of time (slow channels) stops between
    # runs and the next tick goes on from there, sending nothing twice.
    deadline = time.monotonic() + TICK_BUDGET_S
    for status in FINISHED:
        while time.monotonic() < deadline:
            finished = instance.fetch_run_status_changes(
                status, limit=1, cursor=cursors.get(status.value), ascending=True
            )
            if not finished.records:
                break
            run_id = finished.records[0].run_id
            for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
                evaluation = entry.dagster_event.asset_check_evaluation_data
                if not evaluation.passed and _SEVERITY_RANK[evaluation.severity.value] >= floor:
                    _send(context, notifier, check_failure_alert(evaluation, run_id, notifier.run_url(run_id)))
            cursors[status.value] = finished.cursor
    return dg.SensorResult(cursor=json.dumps(cursors))
