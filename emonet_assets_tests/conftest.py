"""Fixtures shared by every test package."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from emonet_assets_tests.local_servers import SmtpServer, WebhookServer, serving

S3_TEST_KEY = "testing"
S3_TEST_SECRET = "testing"
S3_TEST_REGION = "us-east-1"
REPO = Path(__file__).resolve().parents[1]
EMONET = Path(sys.executable).parent / "emonet"


def run_emonet(args: list, tmp_path: Path, emonet: tuple = (EMONET,), **env) -> subprocess.CompletedProcess:
    """`emonet ARGS` from the repository, as a user runs it, with its own Dagster home under `tmp_path`."""
    environment = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "COLUMNS": "140", **env}
    if "EMONET_PROFILE" not in env:
        environment.pop("EMONET_PROFILE", None)
    return subprocess.run([*emonet, *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)


def small_profile_file(folder: Path, **design) -> Path:
    """The tiny profile as a file in `folder`, with its design settings replaced (say total=8, shard_size=2), for
    commands that must generate real images and stay quick; EMONET_PROFILE names it."""
    import yaml

    settings = yaml.safe_load((REPO / "emonet_assets" / "profiles" / "tiny.yaml").read_text(encoding="utf-8"))
    budget = {"total", "n_per_cell"}  # a design sets one of them
    kept = {k: v for k, v in settings["design"].items() if not (k in budget and budget & set(design))}
    settings["design"] = {**kept, **design}
    path = folder / "small.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


@dataclass(frozen=True)
class DemoRun:
    """What `emonet demo` printed and left: `root` is the storage root, `folder` holds its Dagster home, and
    `table_access` the tables each step read and wrote (emonet_assets_tests.table_access)."""

    folder: Path
    root: Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def table_access(self) -> dict:
        return json.loads((self.folder / "table_access.json").read_text(encoding="utf-8"))


def _run_demo_once(shared: Path) -> DemoRun:
    """`emonet demo` under `shared`, unless a process of this test session already ran it: the first to take the
    lock runs it, the others wait for it and read its result. It runs with the table accesses recorded, so the
    lineage test judges this same run."""
    folder, result_file = shared / "demo", shared / "demo.json"
    with FileLock(str(shared / "demo.lock")):
        if not result_file.exists():
            (folder / "home").mkdir(parents=True, exist_ok=True)
            traced = (sys.executable, "-m", "emonet_assets_tests.table_access", str(folder / "table_access.json"))
            result = run_emonet(["demo"], folder, emonet=traced, EMONET_ROOT=str(folder / "root"))
            outcome = {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}
            result_file.write_text(json.dumps(outcome))
    return DemoRun(folder=folder, root=folder / "root", **json.loads(result_file.read_text()))


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, worker_id) -> DemoRun:
    """`emonet demo` on the tiny profile, run once for the whole test session and shared by the pytest-xdist
    workers. Read its root, or copy it before changing anything."""
    base = tmp_path_factory.getbasetemp()
    return _run_demo_once(base if worker_id == "master" else base.parent)


@dataclass(frozen=True)
class MotoS3:
    """A running moto S3 server on localhost with one empty bucket; no environment variables needed."""

    endpoint_url: str
    bucket: str

    @property
    def storage_options(self) -> dict:
        """fsspec/s3fs options for `Store(f"s3://{bucket}/prefix", storage_options)`; a fresh dict each time."""
        return {
            "endpoint_url": self.endpoint_url,
            "key": S3_TEST_KEY,
            "secret": S3_TEST_SECRET,
            "client_kwargs": {"region_name": S3_TEST_REGION},
        }

    def client(self):
        """A boto3 S3 client talking to the same server, for checking what landed where."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=S3_TEST_KEY,
            aws_secret_access_key=S3_TEST_SECRET,
            region_name=S3_TEST_REGION,
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under `prefix` in the bucket, sorted."""
        paginator = self.client().get_paginator("list_objects_v2")
        return sorted(
            obj["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
        )


def _clear_s3fs_instances() -> None:
    """fsspec caches filesystem instances (and their listing caches) by options; start each use clean."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def moto_s3():
    """An in-process moto S3 server (threaded, 127.0.0.1, free port) with the bucket `emonet-test`."""
    from moto.server import ThreadedMotoServer

    werkzeug_log = logging.getLogger("werkzeug")
    previous_level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)  # one INFO line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        _, port = server.get_host_and_port()
        s3 = MotoS3(endpoint_url=f"http://127.0.0.1:{port}", bucket="emonet-test")
        s3.client().create_bucket(Bucket=s3.bucket)
        _clear_s3fs_instances()
        yield s3
    finally:
        _clear_s3fs_instances()
        server.stop()
        werkzeug_log.setLevel(previous_level)


def pytest_collection_modifyitems(config, items):
    """Order test files for pytest-xdist, which hands them out in this order: slow files first, so the longest never
    start last and leave one core idle, and within each, files that need the shared demo after those that do not.
    A worker also starts the demo in the background as soon as it knows a test needs it, so the demo runs beside
    the first files instead of a worker waiting for it."""
    files: dict[str, tuple[bool, bool]] = {}
    for item in items:
        slow, needs_demo = files.get(item.path, (False, False))
        files[item.path] = (slow or item.get_closest_marker("slow") is not None, needs_demo or _needs_demo(item))
    items.sort(key=lambda item: (not files[item.path][0], files[item.path][1]))
    if hasattr(config, "workerinput") and any(needs_demo for _, needs_demo in files.values()):
        shared = Path(config.option.basetemp).parent
        threading.Thread(target=_run_demo_once, args=(shared,), name="demo", daemon=True).start()


def _needs_demo(item) -> bool:
    return "demo_run" in getattr(item, "fixturenames", ())


def pytest_configure(config):
    """Tests compare pixels across runs: float sums differ with the thread split, so fix it at one. The processes
    tests start (emonet commands, dbt, Dagster's servers) inherit one OpenMP thread: the test workers already fill
    every core, and idle OpenMP threads spin (the shared demo's CPU time halved with one thread). The pytest-xdist
    controller runs no test: it does not import torch."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    controller = not hasattr(config, "workerinput")
    if not (controller and getattr(config.option, "numprocesses", None)):
        import torch

        torch.set_num_threads(1)
    if controller:
        # No test runs on a manifest older than the dbt project: prepared once, before any worker loads the defs.
        from emonet_assets.defs.consensus.project import prepare_manifest

        prepare_manifest()


@pytest.fixture(autouse=True, scope="session")
def absl_logs_to_the_real_stderr():
    """absl's log handler (mlcroissant imports absl) keeps the stderr of the moment it was made: pytest's capture.
    A Dagster run on an instance with a dagster.yaml applies logging.config.dictConfig, which closes every handler,
    and absl's close() closes that stream when it is not the current sys.stderr, as inside a CliRunner call: pytest's
    capture would then fail on a closed file. The real stderr is one that absl never closes."""
    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__


@pytest.fixture(scope="module")
def offline_single_thread():
    """No network, and one thread so outputs compared bit for bit do not depend on how work is split."""
    import huggingface_hub.constants
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_proxy(monkeypatch):
    """urllib honours *_proxy variables; requests to the local test servers must not leave the machine."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def webhook_server():
    with serving(WebhookServer()) as server:
        yield server


@pytest.fixture
def smtp_server():
    with serving(SmtpServer()) as server:
        yield server
