"""Alert sensors end to end: a real run on the tiny graph, the sensors evaluated as the daemon would, and the
alerts caught by webhook and SMTP servers on 127.0.0.1."""

import email
import email.policy
import json
import shutil
import time

import dagster as dg
import pytest
from dagster import DagsterEventType

from emonet_assets.definitions import build_definitions
from emonet_assets.defs.alerts import sensors as alert_sensors
from emonet_assets.lib.shared.storage import Store
from emonet_assets.runner import materialize_step
from emonet_assets_tests.defs.conftest import plant_gender_disparity, tiny_profile

UI = "http://dagster.test:3000"

pytestmark = pytest.mark.usefixtures("no_proxy")


def _profile(root, gate_severity="ERROR", **alerts):
    profile = tiny_profile(root)
    fairness = profile.fairness.model_copy(
        update={"min_group_size": 1, "gate_severity": gate_severity, "bootstrap_resamples": 20}
    )
    settings = profile.alerts.model_copy(update={"ui_base_url": UI, **alerts})
    return profile.model_copy(update={"fairness": fairness, "alerts": settings})


class _CheckSensor:
    """check_failure_alert_sensor ticking against one instance, its cursor carried between ticks."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance):
        self.defs, self.instance, self.cursor = defs, instance, None
        self.sensor = defs.resolve_sensor_def("check_failure_alert_sensor")

    def tick(self) -> None:
        context = dg.build_sensor_context(
            instance=self.instance,
            definitions=self.defs,
            sensor_name=self.sensor.name,
            cursor=self.cursor,
            resources=dict(self.defs.resources),
        )
        with context:
            self.cursor = self.sensor(context).cursor


@pytest.fixture
def root(root_copy):
    """A copy of the demo's root without the alerts the demo recorded for its own warned checks, so a test sees
    exactly the alerts it causes."""
    shutil.rmtree(root_copy / "tables" / "alerts", ignore_errors=True)
    return root_copy


def _payloads(server) -> list[dict]:
    return [json.loads(body) for body in server.bodies]


def test_failing_fairness_gate_on_a_planted_disparity_alerts_the_webhook(root, instance, webhook_server):
    target = plant_gender_disparity(Store(str(root)))
    defs = build_definitions(_profile(root, webhook_url=webhook_server.url))
    sensor = _CheckSensor(defs, instance)
    sensor.tick()

    report = materialize_step(defs, instance, [dg.AssetKey("fairness_report")])
    assert report.success, report.error
    assert any(c.startswith("fairness_gap_mean_mae") for c in report.checks_failed)
    assert not webhook_server.bodies
    summary = instance.get_latest_materialization_event(dg.AssetKey("fairness_report")).asset_materialization
    assert "- **FAILED**: mean_spearman differs by 2.000 across gender" in summary.metadata["summary"].value
    sensor.tick()

    alerts = {p["alert"]["check"]: p for p in _payloads(webhook_server)}
    payload = alerts["fairness_gap_mean_spearman"]
    alert = payload["alert"]
    assert alert["kind"] == "check_failure" and alert["severity"] == "ERROR"
    assert alert["asset"] == "fairness_report"
    assert alert["run_id"] == report.run_id and alert["run_url"] == f"{UI}/runs/{report.run_id}"
    assert "mean_spearman differs by 2.000 across gender" in alert["message"]
    assert f"worst {target} -1.000" in alert["message"]
    assert alert["metadata"] == {"metric": "mean_spearman", "max_gap": 0.4}
    assert payload["text"].startswith("ERROR: Check failed: fairness_report / fairness_gap_mean_spearman")
    assert f"<{UI}/runs/{report.run_id}|{report.run_id}>" in json.dumps(payload["blocks"])

    local = Store(str(root)).read_table("alerts")
    assert set(local["check"]) == set(alerts) and set(local["run_id"]) == {report.run_id}

    sensor.tick()
    assert len(webhook_server.bodies) == len(alerts), "a failure already alerted is not sent again"


def test_checks_below_the_minimum_severity_are_not_alerted(root, instance, webhook_server):
    plant_gender_disparity(Store(str(root)))
    defs = build_definitions(
        _profile(root, gate_severity="WARN", webhook_url=webhook_server.url, min_check_severity="ERROR")
    )
    sensor = _CheckSensor(defs, instance)
    sensor.tick()
    report = materialize_step(defs, instance, [dg.AssetKey("fairness_report")])
    assert any(c.startswith("warning: fairness_gap_mean_mae") for c in report.checks_failed)
    sensor.tick()
    assert webhook_server.bodies == []


def test_webhook_answering_500_is_retried_then_logged_and_the_local_alert_kept(root, instance, webhook_server):
    plant_gender_disparity(Store(str(root)))
    webhook_server.statuses.extend([500] * 100)
    defs = build_definitions(_profile(root, webhook_url=webhook_server.url, webhook_retries=1))
    sensor = _CheckSensor(defs, instance)
    sensor.tick()
    report = materialize_step(defs, instance, [dg.AssetKey("fairness_report")])
    assert report.success
    sensor.tick()

    failed = report.checks_failed
    assert len(webhook_server.bodies) == 2 * len(failed), "each alert: one try and one retry"
    assert Store(str(root)).read_table("alerts").height == len(failed)


def test_failed_run_alerts_webhook_and_email_with_the_error_and_run_link(root, instance, webhook_server, smtp_server):
    store = Store(str(root))
    shutil.rmtree(root / "tables" / "model_test_predictions")
    defs = build_definitions(
        _profile(
            root,
            webhook_url=webhook_server.url,
            smtp_host="127.0.0.1",
            smtp_port=smtp_server.port,
            smtp_sender="emonet@lab.test",
            smtp_recipients=["data-team@lab.test"],
        )
    )
    report = materialize_step(defs, instance, [dg.AssetKey("fairness_report")])
    assert not report.success

    run = instance.get_run_by_id(report.run_id)
    [failure] = instance.all_logs(report.run_id, of_type=DagsterEventType.RUN_FAILURE)
    sensor = defs.resolve_sensor_def("run_failure_alert_sensor")
    with dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=failure.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
        resources={"notifier": defs.resources["notifier"]},
    ) as context:
        sensor(context.for_run_failure())

    [payload] = _payloads(webhook_server)
    alert = payload["alert"]
    assert alert["kind"] == "run_failure" and alert["severity"] == "ERROR"
    fairness = sorted(k.to_user_string() for k in defs.resolve_assets_def("fairness_report").keys)
    assert alert["asset"] == ", ".join(fairness) and alert["title"] == "Run failed: fairness_report"
    assert "table 'model_test_predictions' has not been written" in alert["message"]
    assert alert["run_url"] == f"{UI}/runs/{report.run_id}"
    assert alert["metadata"]["failed_steps"] == "fairness_report"

    [(sender, recipients, raw)] = smtp_server.messages
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert sender == "emonet@lab.test" and recipients == ["data-team@lab.test"]
    assert message["Subject"] == "[emonet-face] ERROR: Run failed: fairness_report"
    assert f"{UI}/runs/{report.run_id}" in message.get_content()
    assert store.read_table("alerts")["kind"].to_list() == ["run_failure"]


class _SlowClock:
    """Each reading 30 s after the last: a tick's 40 s budget covers one run."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 30
        return self.now


def test_a_tick_out_of_time_stops_between_runs_and_the_next_sends_the_rest_once(
    root, instance, webhook_server, monkeypatch
):
    plant_gender_disparity(Store(str(root)))
    defs = build_definitions(_profile(root, webhook_url=webhook_server.url))
    sensor = _CheckSensor(defs, instance)
    sensor.tick()
    runs = [materialize_step(defs, instance, [dg.AssetKey("fairness_report")]).run_id for _ in range(2)]

    monkeypatch.setattr(alert_sensors, "time", _SlowClock())
    sensor.tick()
    assert {p["alert"]["run_id"] for p in _payloads(webhook_server)} == {runs[0]}
    monkeypatch.setattr(alert_sensors, "time", time)
    sensor.tick()
    alerted = [(p["alert"]["run_id"], p["alert"]["check"]) for p in _payloads(webhook_server)]
    assert len(alerted) == len(set(alerted)) == 6 and {run for run, _ in alerted} == set(runs)


@pytest.mark.parametrize(
    ("severity", "verb"), [(dg.AssetCheckSeverity.WARN, "warned"), (dg.AssetCheckSeverity.ERROR, "failed")]
)
def test_a_warn_check_warns_and_an_error_check_fails_in_the_alert_title(severity, verb):
    evaluation = dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey("splits"), check_name="cells_have_test_images", passed=False, severity=severity
    )
    alert = alert_sensors.check_failure_alert(evaluation, "run-1", "http://127.0.0.1:3000/runs/run-1")
    assert alert.title == f"Check {verb}: splits / cells_have_test_images"
    assert alert.severity == severity.value
