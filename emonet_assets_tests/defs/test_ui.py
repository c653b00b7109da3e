"""The UI as its users reach it: `dg dev` (what `make dev` runs) serving the GraphQL API the UI uses, with its
daemon running backfills and sensors."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from emonet_assets.definitions import build_definitions
from emonet_assets.lib.shared.tables import FAIRNESS_TABLES
from emonet_assets_tests.browser import browser_page
from emonet_assets_tests.defs.conftest import tiny_profile, upstream
from emonet_assets_tests.local_servers import WebhookServer, free_port, serving

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
GENERATED = dg.AssetKey("generated_images")
# The fairness report and its tables: one step writes them all, so a run selects them together.
FAIRNESS_NODE = sorted(["fairness_report", *(table.value for table in FAIRNESS_TABLES.values())])
SHARDS = ["shard-00001", "shard-00002", "shard-00003"]
SUCCEEDED = {"COMPLETED", "COMPLETED_SUCCESS"}
ENDED_BADLY = {"FAILED", "FAILING", "CANCELED", "CANCELING", "COMPLETED_FAILED"}

ASSET_NODE = """
query AssetNode { assetNodes(assetKeys: [{path: ["generated_images"]}]) { id isPartitioned } }
"""
LAUNCH_BACKFILL = """
mutation LaunchBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionKeysNotFoundError { message partitionKeys }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""
BACKFILL_STATUS = """
query BackfillStatus($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { status error { message } }
    ... on PythonError { message }
  }
}
"""
LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""
BACKFILL_RUNS = """
query BackfillRuns($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status tags { key value } } }
    ... on PythonError { message }
  }
}
"""


def log_tail(log: Path, lines: int = 80) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{url}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]


def wait_for(condition, seconds: float, what: str, log: Path, server: subprocess.Popen):
    """Poll `condition` until it returns something truthy; fail with the server log on timeout or exit."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"dg dev exited ({server.returncode}) waiting for {what}:\n{log_tail(log)}"
        try:
            if result := condition():
                return result
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    pytest.fail(f"timed out after {seconds:.0f}s waiting for {what}:\n{log_tail(log)}")


def start_dagster_dev(port: int, env: dict, log: Path) -> subprocess.Popen:
    """`dg dev` in the repository with the venv activated, as `make dev` runs it."""
    activated = {"VIRTUAL_ENV": str(VENV), "PATH": f"{VENV / 'bin'}{os.pathsep}{env['PATH']}"}
    with log.open("wb") as out:
        return subprocess.Popen(
            [VENV / "bin" / "dg", "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env={**env, **activated},
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_process_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=20)


def backfill_status(url: str, backfill_id: str, log: Path) -> str | None:
    """The backfill's status once it has ended; fails the test if it ended badly."""
    result = graphql(url, BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]
    assert result["__typename"] == "PartitionBackfill", result
    assert result["status"] not in ENDED_BADLY, f"backfill {result}:\n{log_tail(log)}"
    return result["status"] if result["status"] in SUCCEEDED else None


@dataclass
class DagsterDev:
    url: str
    home: Path
    root: Path
    log: Path
    server: subprocess.Popen
    webhook: WebhookServer


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    """One `dg dev` for the module, on a root with everything before generation materialized and alerts
    going to a webhook server on 127.0.0.1 through the secret's environment variable."""
    tmp = tmp_path_factory.mktemp("ui")
    home, root, log = tmp / "home", tmp / "root", tmp / "dagster-dev.log"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        upstream(build_definitions(tiny_profile(root)), instance)
    with serving(WebhookServer()) as webhook:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("EMONET_", "DAGSTER_")) and "proxy" not in k.lower()
        }
        env.update(
            DAGSTER_HOME=str(home),
            EMONET_ROOT=str(root),
            EMONET_ALERT_WEBHOOK_URL=webhook.url,
            OMP_NUM_THREADS="1",
            no_proxy="*",
        )
        port = free_port()
        server = start_dagster_dev(port, env, log)
        try:
            ui = DagsterDev(f"http://127.0.0.1:{port}", home, root, log, server, webhook)
            wait_for(lambda: answers(f"{ui.url}/server_info"), 180, "the webserver", log, server)
            wait_for(lambda: graphql(ui.url, ASSET_NODE)["assetNodes"], 180, "the code location", log, server)
            yield ui
        finally:
            stop_process_group(server)


@pytest.mark.timeout(600)
def test_backfill_of_a_shard_range_from_the_ui(dagster_dev):
    url, log, server = dagster_dev.url, dagster_dev.log, dagster_dev.server
    params = {"assetSelection": [{"path": ["generated_images"]}], "partitionNames": SHARDS, "fromFailure": False}
    launched = graphql(url, LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    assert backfill_id

    wait_for(lambda: backfill_status(url, backfill_id, log), 300, f"backfill {backfill_id}", log, server)

    runs_filter = {"tags": [{"key": "dagster/backfill", "value": backfill_id}]}
    runs = graphql(url, BACKFILL_RUNS, {"filter": runs_filter})["runsOrError"]
    assert runs["__typename"] == "Runs", runs
    assert len(runs["results"]) == 1, f"3 shards at up to 4 per run must be one run: {runs['results']}"
    run = runs["results"][0]
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert run["status"] == "SUCCESS", run
    assert tags["dagster/asset_partition_range_start"] == "shard-00001"
    assert tags["dagster/asset_partition_range_end"] == "shard-00003"

    with dg.DagsterInstance.from_config(str(dagster_dev.home)) as instance:
        assert instance.get_materialized_partitions(GENERATED) == set(SHARDS)
    manifests = dagster_dev.root / "tables" / "generated_images"
    assert sorted(p.name for p in manifests.glob("*.parquet")) == [f"{shard}.parquet" for shard in SHARDS]


def _run_failure_alerts(webhook: WebhookServer) -> list[dict]:
    alerts = [json.loads(body)["alert"] for body in webhook.bodies]
    return [alert for alert in alerts if alert["kind"] == "run_failure"]


@pytest.mark.timeout(600)
def test_a_run_failing_in_the_ui_is_alerted_by_the_daemon(dagster_dev):
    """fairness_report cannot run before the model has made predictions: the run fails, and the daemon's
    run failure sensor posts the alert with the step's error and a link back to the run."""
    url, log, server = dagster_dev.url, dagster_dev.log, dagster_dev.server
    selector = {
        "repositoryLocationName": "emonet_face",
        "repositoryName": "__repository__",
        "jobName": "__ASSET_JOB",
        "assetSelection": [{"path": [name]} for name in FAIRNESS_NODE],
        "assetCheckSelection": [],
    }
    launched = graphql(url, LAUNCH_RUN, {"executionParams": {"selector": selector}})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    [alert] = wait_for(lambda: _run_failure_alerts(dagster_dev.webhook), 240, "the run failure alert", log, server)
    assert alert["run_id"] == run_id and alert["run_url"].endswith(f"/runs/{run_id}")
    assert alert["asset"] == ", ".join(FAIRNESS_NODE) and alert["severity"] == "ERROR"
    assert "table 'model_test_predictions' has not been written" in alert["message"]


GROUPS = ("taxonomy", "design", "generation", "annotation", "consensus", "dataset", "model", "fairness")
LAUNCHED = re.compile(r"Launched run ([0-9a-f]{8})")
RUNS = """
query Runs { runsOrError(limit: 50) { __typename ... on Runs { results { runId status } } } }
"""


def _run_status(url: str, prefix: str) -> tuple[str, str] | None:
    runs = graphql(url, RUNS)["runsOrError"]["results"]
    return next(((r["runId"], r["status"]) for r in runs if r["runId"].startswith(prefix)), None)


def _open(page, url: str) -> None:
    """Go to `url`; a fresh instance greets visits with a newsletter dialog until it is skipped."""
    page.goto(url, wait_until="networkidle")
    skip = page.get_by_role("button", name="Skip")
    with contextlib.suppress(PlaywrightTimeout):
        skip.wait_for(timeout=3_000)
        skip.click()


@pytest.mark.timeout(600)
def test_a_person_finds_every_group_an_assets_checks_and_materializes_it_in_the_browser(dagster_dev, tmp_path):
    url, log, server = dagster_dev.url, dagster_dev.log, dagster_dev.server
    with browser_page(1600, 1000) as (page, errors):
        _open(page, f"{url}/asset-groups")
        for group in GROUPS:
            page.get_by_text(group, exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "lineage.png"))

        _open(page, f"{url}/assets/emotion_rollups?view=checks")
        page.get_by_text("rollups_are_complete").first.wait_for(timeout=60_000)
        assert "This is a blocking asset check." in page.inner_text("body")

        page.get_by_text("Materialize", exact=True).first.click()
        toast = page.get_by_text(LAUNCHED).first
        toast.wait_for(timeout=60_000)
        prefix = LAUNCHED.search(toast.inner_text()).group(1)

        def finished():
            found = _run_status(url, prefix)
            assert found is None or found[1] not in ENDED_BADLY, f"run {found}:\n{log_tail(log)}"
            return found if found and found[1] == "SUCCESS" else None

        run_id, _ = wait_for(finished, 300, f"run {prefix}", log, server)
        _open(page, f"{url}/assets/emotion_rollups?view=checks")
        page.get_by_text("Passed").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "checks.png"))
        assert errors == []

    with dg.DagsterInstance.from_config(str(dagster_dev.home)) as instance:
        assert instance.get_latest_materialization_event(dg.AssetKey("emotion_rollups")).run_id == run_id
