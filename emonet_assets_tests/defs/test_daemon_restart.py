"""A backfill survives a restart of the daemon: webserver, daemon and code server as separate processes, the way
a deployment runs them, and the daemon killed while the backfill's runs are queued or running."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from emonet_assets.definitions import build_definitions
from emonet_assets_tests.defs.conftest import tiny_profile, upstream
from emonet_assets_tests.defs.test_ui import (
    BACKFILL_RUNS,
    LAUNCH_BACKFILL,
    REPO,
    answers,
    backfill_status,
    graphql,
    stop_process_group,
    wait_for,
)
from emonet_assets_tests.local_servers import free_port

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SHARDS = [f"shard-0000{i}" for i in range(5)]


def _start(command: list, env: dict, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=REPO, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT
        )


@pytest.mark.timeout(900)
def test_a_backfill_continues_after_the_daemon_is_restarted(tmp_path):
    home, root, log = tmp_path / "home", tmp_path / "root", tmp_path / "processes.log"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        upstream(build_definitions(tiny_profile(root)), instance)
    env = {"PATH": str(BIN) + ":/usr/bin:/bin", "HOME": str(tmp_path), "DAGSTER_HOME": str(home)}
    env |= {"EMONET_ROOT": str(root), "OMP_NUM_THREADS": "1", "no_proxy": "*"}
    code_port, web_port = free_port(), free_port()
    workspace = tmp_path / "workspace.yaml"
    server = {"host": "127.0.0.1", "port": code_port, "location_name": "emonet_face"}
    workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": server}]}))
    code = _start(
        [
            BIN / "dagster",
            "code-server",
            "start",
            "-h",
            "127.0.0.1",
            "-p",
            str(code_port),
            "-m",
            "emonet_assets.definitions",
            "-d",
            str(REPO),
        ],
        env,
        log,
    )
    web = _start([BIN / "dagster-webserver", "-h", "127.0.0.1", "-p", str(web_port), "-w", workspace], env, log)
    daemon = _start([BIN / "dagster-daemon", "run", "-w", workspace], env, log)
    url = f"http://127.0.0.1:{web_port}"
    try:
        wait_for(lambda: answers(f"{url}/server_info"), 240, "the webserver", log, web)
        params = {"assetSelection": [{"path": ["generated_images"]}], "partitionNames": SHARDS, "fromFailure": False}
        launched = wait_for(
            lambda: graphql(url, LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"],
            240,
            "the code location",
            log,
            web,
        )
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]
        runs_filter = {"filter": {"tags": [{"key": "dagster/backfill", "value": backfill_id}]}}

        def backfill_runs():
            return graphql(url, BACKFILL_RUNS, runs_filter)["runsOrError"]["results"]

        wait_for(backfill_runs, 240, "the backfill's first run", log, web)
        stop_process_group(daemon)
        assert not all(run["status"] == "SUCCESS" for run in backfill_runs()), "killed before the backfill ended"
        time.sleep(5)
        assert backfill_status(url, backfill_id, log) is None, "the backfill cannot end without a daemon"

        daemon = _start([BIN / "dagster-daemon", "run", "-w", workspace], env, log)
        wait_for(lambda: backfill_status(url, backfill_id, log), 600, f"backfill {backfill_id}", log, web)
        runs = backfill_runs()
        assert len(runs) == 2 and all(run["status"] == "SUCCESS" for run in runs), runs
    finally:
        for process in (daemon, web, code):
            stop_process_group(process)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("generated_images")) == set(SHARDS)
    assert sorted(p.stem for p in (root / "tables" / "generated_images").glob("*.parquet")) == SHARDS
