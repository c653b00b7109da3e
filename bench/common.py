"""Timing and memory helpers: ratios against a baseline run in the same process, peak RSS."""

import contextlib
import json
import multiprocessing
import resource
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil

TREE_SAMPLE_S = 0.2


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Fastest of a few runs: the least disturbed by the other core's work."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_process(fn: Callable[..., dict], *args) -> dict:
    """`fn(*args)` in a fresh process, so its peak RSS is its own; a worker the kernel kills raises here."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _tree_rss_mb() -> float:
    """The resident memory of this process and of every process under it, now."""
    here = psutil.Process()
    total = 0
    for process in [here, *here.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total / 2**20


def _measured(fn: Callable[..., dict], *args) -> dict:
    tree_peak, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.wait(TREE_SAMPLE_S):
            tree_peak[0] = max(tree_peak[0], _tree_rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    own, children = (
        resource.getrusage(who).ru_maxrss / 1024 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return result | {"stage_s": seconds, "stage_peak_mb": max(own, children, tree_peak[0])}


def stage(fn: Callable[..., dict], *args) -> dict:
    """`in_process`, with the stage's wall time and its peak RSS: the largest of its own process's, of the largest
    process it waited for (dbt runs as a child), and of the sum over it and the processes under it, sampled every
    TREE_SAMPLE_S (the ratings check's workers run side by side)."""
    return in_process(_measured, fn, *args)


def dbt_build(root: Path, select: str = "*", settings: dict | None = None) -> dict:
    """`dbt build` of the consensus project over the Parquet under `root`: wall time, each model's and the tests'
    time, what failed, and the dbt process's peak RSS; `settings` are DuckDB's (duckdb_threads, duckdb_memory_limit,
    duckdb_temp_directory), as the profile passes them."""
    from emonet_assets.lib.consensus.dbt_command import DBT_EXECUTABLE, DBT_PROJECT_DIR

    target = root / "dbt-target"
    dbt_vars = {"storage_root": str(root), "catalog_path": str(root / "catalog.duckdb"), **(settings or {})}
    started = time.perf_counter()
    subprocess.run(
        [DBT_EXECUTABLE, "build", "--select", *select.split(), "--vars", json.dumps(dbt_vars)]
        + ["--target-path", str(target), "--quiet"],
        cwd=DBT_PROJECT_DIR,
        check=True,
    )
    seconds = time.perf_counter() - started
    results = json.loads((target / "run_results.json").read_text())["results"]
    models = {
        r["unique_id"].split(".")[-1]: r["execution_time"] for r in results if r["unique_id"].startswith("model.")
    }
    tests = sum(r["execution_time"] for r in results if r["unique_id"].startswith("test."))
    failed = [r["unique_id"] for r in results if r["status"] not in ("success", "pass")]
    peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": seconds, "models": models, "tests_s": tests, "failed": failed, "peak_rss_mb": peak_child}
