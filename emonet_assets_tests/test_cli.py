"""The console script as a user runs it: a fresh root, the demo, then status."""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from click.testing import CliRunner

from emonet_assets.cli import main
from emonet_assets_tests.conftest import EMONET, REPO
from emonet_assets_tests.conftest import run_emonet as run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(demo_run):
    return demo_run.folder, demo_run.root, demo_run


def test_demo_materializes_every_asset_and_says_where_outputs_are(demo):
    tmp, root, result = demo
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for asset in ("taxonomy", "emotion_rollups", "prompt_design", "design_cells", "prompt_shards"):
        assert asset in out
        assert (root / "tables" / asset / "all.parquet").exists()
    assert "FAIL" not in out
    assert str(root) in out
    assert "make dev" in out and "127.0.0.1:3000" in out
    assert (root / "catalog.duckdb").exists()
    assert "the sensor imports them" in out
    assert "per_emotion_spearman.png" in out and "emonet predict IMAGE" in out
    for table in ("splits", "image_embeddings", "emotion_model", "model_evaluation"):
        assert list((root / "tables" / table).glob("*.parquet")), table
    for table in ("annotations", "consensus_labels", "emotion_agreement", "annotator_quality", "reannotation_queue"):
        assert list((root / "tables" / table).glob("*.parquet")), table
    assert (root / "reports" / "fairness" / "report.html").exists() and "reports/fairness/report.html" in out


def test_demo_pairs_each_table_with_its_rows_and_shortens_batch_hashes(demo):
    _, root, result = demo
    lines = result.stdout.splitlines()
    assert not re.search(r"\b[0-9a-f]{64}\b", result.stdout), "a full sha256 in the demo's output"
    batches = [line for line in lines if line.lstrip().startswith("ok   annotation_batches [")]
    assert batches and all(re.search(r"annotation_batches \[[0-9a-f]{12}\]", line) for line in batches)
    design = lines[lines.index(next(line for line in lines if "design_cells, prompt_design" in line)) + 1]
    rows = {
        name: pl.read_parquet(root / "tables" / name / "all.parquet").height
        for name in ("design_cells", "prompt_design")
    }
    assert design.split() == [
        "rows:",
        "design_cells",
        f"{rows['design_cells']:,},",
        "prompt_design",
        f"{rows['prompt_design']:,}",
    ]


def test_demo_records_an_alert_for_each_warned_check(demo):
    _, root, result = demo
    warned = sum(line.lstrip().startswith("check warned") for line in result.stdout.splitlines())
    alerts = pl.read_parquet(root / "tables" / "alerts" / "all.parquet")
    assert warned >= 1 and alerts.height == warned
    assert f"alerts        {warned} check{'s' if warned > 1 else ''} warned; alerts are recorded in" in result.stdout
    assert "failed" not in next(line for line in result.stdout.splitlines() if line.startswith("alerts"))
    assert alerts["kind"].unique().to_list() == ["check_failure"] and set(alerts["severity"]) == {"WARN"}
    assert all(url.startswith("http://127.0.0.1:3000/runs/") for url in alerts["run_url"])


def test_demo_writes_a_release_and_prints_its_path_and_id_that_verify_accepts(demo):
    tmp, root, result = demo
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("release       "))
    path = line.split()[1]
    release_id = Path(path).name
    assert path == str(root / "releases" / release_id) and f"release id {release_id}" in line
    assert f"verify        emonet verify-release {path}" in result.stdout
    verified = run(["verify-release", path], tmp)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"OK release {release_id}: ")


def test_status_reports_assets_with_rows(demo):
    tmp, root, _ = demo
    result = run(["status"], tmp, EMONET_ROOT=str(root))
    assert result.returncode == 0, result.stderr
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 4}
    assert "40" in lines["taxonomy"].split("│")[3]
    assert "240" in lines["prompt_design"].split("│")[3]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", lines["prompt_shards"].split("│")[5].strip())
    for asset in ("benchmark_release", "fairness_report", "reannotation_tasks"):
        assert int(lines[asset].split("│")[2]) > 0 and lines[asset].split("│")[3].strip() == "-", asset


def test_status_on_an_empty_root(tmp_path):
    result = run(["status"], tmp_path, EMONET_ROOT=str(tmp_path / "empty"))
    assert result.returncode == 0
    assert "Nothing materialized" in result.stdout


def test_catalog_views_answer_queries(demo):
    import duckdb

    _, root, _ = demo
    con = duckdb.connect(str(root / "catalog.duckdb"), read_only=True)
    try:
        assert con.execute("select count(*) from taxonomy").fetchone() == (40,)
        assert con.execute("select count(distinct shard) from prompt_design").fetchone() == (15,)
        rows = con.execute(
            "select level, count(*) from emotion_rollups where rollup = 'valence' group by 1 order by 1"
        ).fetchall()
        assert sum(n for _, n in rows) == 40
    finally:
        con.close()


def test_profiles_lists_each_profile_and_what_it_sets(tmp_path):
    result = run(["profiles"], tmp_path)
    assert result.returncode == 0
    for text in (
        "tiny  (active)",
        "sdxl-turbo",
        "flux-schnell",
        "240 prompts in total",
        "2 per cell",
        "robustness",
    ):
        assert text in result.stdout


def test_unknown_profile_is_a_clear_error(tmp_path):
    result = run(["--profile", "nope", "status"], tmp_path)
    assert result.returncode != 0
    assert "unknown profile 'nope'" in result.stderr and "tiny" in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_root_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run(["demo"], tmp_path, EMONET_ROOT=str(blocker / "root"))
    assert result.returncode != 0
    assert f"storage root {blocker / 'root'} cannot be written" in result.stderr
    assert "Traceback" not in result.stderr


def _blocked_on_gpu(instance) -> list[str]:
    return [
        run.run_id
        for run in instance.get_runs()
        if any("blocked by limit for pool gpu" in (e.message or "") for e in instance.all_logs(run.run_id))
    ]


def test_the_same_shard_started_twice_at_once_waits_for_the_gpu_slot_without_duplicates(demo, tmp_path):
    """The instance settings `make dev` uses give the `gpu` pool one slot. A third party holds it while both
    runs start, so both are seen waiting; once it is free they take turns and the shard is written once."""
    demo_tmp, demo_root, result = demo
    assert result.returncode == 0, result.stdout + result.stderr
    home = shutil.copytree(demo_tmp / "home", tmp_path / "home")
    shutil.copy(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    root = shutil.copytree(demo_root, tmp_path / "root")
    manifest = root / "tables" / "generated_images" / "shard-00001.parquet"
    manifest.unlink()
    environment = {**os.environ, "DAGSTER_HOME": str(home), "EMONET_ROOT": str(root)}
    environment.pop("EMONET_PROFILE", None)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        slots = instance.event_log_storage
        slots.initialize_concurrency_limit_to_default("gpu")
        assert slots.claim_concurrency_slot("gpu", "holder", "holder_step").is_claimed
        command = [EMONET, "generate", "shard-00001"]
        both = [
            subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, text=True) for _ in range(2)
        ]
        deadline = time.monotonic() + 300
        while len(_blocked_on_gpu(instance)) < 2 and time.monotonic() < deadline:
            assert all(process.poll() is None for process in both)
            time.sleep(1)
        assert len(_blocked_on_gpu(instance)) == 2 and not manifest.exists()
        slots.free_concurrency_slot_for_step("holder", "holder_step")
        outputs = [process.communicate(timeout=600)[0] for process in both]
        assert [process.returncode for process in both] == [0, 0], outputs
        assert all(run.is_success for run in instance.get_runs(limit=2))

    rows = pl.read_parquet(manifest)
    assert rows.height == 16 and rows["prompt_id"].n_unique() == 16 and rows["image_sha256"].n_unique() == 16


def test_ctrl_c_stops_generate_and_names_the_shards_left_to_run(tmp_path):
    """SIGINT lands while `emonet generate --missing --per-run 1` works through two shards: the command stops
    instead of going on with the next run, says which shards finished, and the command it prints does the rest."""
    import signal

    from emonet_assets.definitions import build_definitions
    from emonet_assets.profiles import load_profile
    from emonet_assets_tests.conftest import small_profile_file
    from emonet_assets_tests.defs.conftest import upstream

    root = tmp_path / "root"
    manifests = root / "tables" / "generated_images"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "EMONET_ROOT": str(root),
        "EMONET_PROFILE": str(small_profile_file(tmp_path, total=4, shard_size=2)),
        "COLUMNS": "200",
    }
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        upstream(build_definitions(load_profile(env=env)), instance)
    process = subprocess.Popen(
        [EMONET, "generate", "--missing", "--per-run", "1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (manifests / "shard-00000.parquet").exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 130, output
    assert "Traceback" not in output

    complete = sorted(p.stem for p in manifests.glob("*.parquet") if pl.read_parquet(p).height == 2)
    assert complete == ["shard-00000"], output  # it stopped: the next shard never started
    assert "interrupted: 1 of 2 shards finished (shard-00000)" in output, output
    command = "emonet generate --per-run 1 shard-00001"
    assert f"re-run the rest: {command}\n" in output, output

    # The printed command, in-process: only the interrupted run needs a process of its own.
    settings = {name: env[name] for name in ("DAGSTER_HOME", "EMONET_ROOT", "EMONET_PROFILE")}
    rerun = CliRunner().invoke(main, command.split()[1:], env=settings)
    assert rerun.exit_code == 0, rerun.output
    assert sorted(p.stem for p in manifests.glob("*.parquet")) == ["shard-00000", "shard-00001"]
    assert pl.read_parquet(manifests).height == 4
