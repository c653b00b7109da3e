"""The console script as a user runs it: a fresh root, the demo, then status."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EMONET = Path(sys.executable).parent / "emonet"


def run(args, tmp_path, **env):
    environment = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "COLUMNS": "140", **env}
    environment.pop("EMONET_PROFILE", None) if "EMONET_PROFILE" not in env else None
    return subprocess.run([EMONET, *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "home").mkdir()
    root = tmp / "root"
    return tmp, root, run(["demo"], tmp, EMONET_ROOT=str(root))


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


def test_status_reports_assets_with_rows(demo):
    tmp, root, _ = demo
    result = run(["status"], tmp, EMONET_ROOT=str(root))
    assert result.returncode == 0, result.stderr
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 4}
    assert "40" in lines["taxonomy"].split("│")[3]
    assert "80" in lines["prompt_design"].split("│")[3]
    assert "UTC" in lines["prompt_shards"]


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
        assert con.execute("select count(distinct shard) from prompt_design").fetchone() == (5,)
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
        "80 prompts in total",
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
