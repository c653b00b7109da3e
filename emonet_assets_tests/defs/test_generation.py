"""Generation as users run it: partitioned by shard, reproducible, resumable after a kill, repairable."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from click.testing import CliRunner

from emonet_assets.cli import main
from emonet_assets.definitions import build_definitions
from emonet_assets.lib.shared.storage import Store
from emonet_assets.profiles import load_profile
from emonet_assets.runner import materialize_step
from emonet_assets_tests.defs.conftest import tiny_profile, upstream

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EMONET = Path(sys.executable).parent / "emonet"
GENERATED = dg.AssetKey("generated_images")
VOLATILE = ["seconds"]


def manifest(root) -> pl.DataFrame:
    return Store(str(root)).read_table("generated_images").drop(VOLATILE).sort("position")


def test_demo_generates_every_shard_with_a_manifest_row_per_prompt(materialized_root):
    store = Store(str(materialized_root))
    rows = store.read_table("generated_images")
    prompts = store.read_table("prompt_design")
    assert sorted(store.table_partitions("generated_images")) == sorted(prompts["shard"].unique())
    assert rows.height == prompts.height
    assert set(rows["prompt_id"]) == set(prompts["prompt_id"])
    assert rows.select("prompt_id", "model_fingerprint").is_duplicated().sum() == 0
    for row in rows.head(5).iter_rows(named=True):
        assert store.is_intact(row["image_path"])
        assert (
            row["image_path"]
            == f"images/{row['image_sha256'][:2]}/{row['image_sha256'][2:4]}/{row['image_sha256']}.png"
        )
        assert (row["width"], row["height"], row["device"], row["dtype"]) == (64, 64, "cpu", "float32")
        assert row["license"] == "MIT" and row["torch_version"] and row["diffusers_version"]
    joined = rows.join(prompts.select("prompt_id", "seed"), on="prompt_id", suffix="_design")
    assert (joined["seed"] == joined["seed_design"]).all()


def test_same_design_and_model_give_the_same_pixels_in_another_root(tmp_path):
    """Both roots are generated in this process: pixels are compared only between runs on the same processor and
    thread count, as float kernels round differently elsewhere."""
    manifests = []
    for name in ("one", "other"):
        defs = build_definitions(tiny_profile(tmp_path / name))
        instance = dg.DagsterInstance.ephemeral()
        upstream(defs, instance)
        report = materialize_step(defs, instance, [GENERATED], partition="shard-00001")
        assert report.success, report.error
        manifests.append(manifest(tmp_path / name))
    assert manifests[0].height == 16
    assert manifests[1].equals(manifests[0])


def test_rerun_generates_nothing_and_changes_nothing(root_copy):
    defs = build_definitions(tiny_profile(root_copy))
    instance = dg.DagsterInstance.ephemeral()
    upstream(defs, instance)
    before = Store(str(root_copy)).read_table("generated_images", ["shard-00002"])
    report = materialize_step(defs, instance, [GENERATED], partition="shard-00002")
    assert report.success, report.error
    assert Store(str(root_copy)).read_table("generated_images", ["shard-00002"]).equals(before)
    event = instance.get_latest_materialization_event(GENERATED)
    metadata = event.asset_materialization.metadata
    assert metadata["images_generated"].value == 0 and metadata["images_already_present"].value == 16


def test_a_run_killed_mid_shard_resumes_to_exactly_a_clean_run(tmp_path):
    """Kill the generating process part-way through a shard, re-run it, compare with a clean run."""
    profile_file = tmp_path / "resume.yaml"
    profile_file.write_text(
        (REPO / "emonet_assets" / "profiles" / "tiny.yaml")
        .read_text()
        .replace("total: 240", "total: 16")
        .replace("batch_size: 8", "batch_size: 2")
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "EMONET_ROOT": str(tmp_path / "killed"),
        "EMONET_PROFILE": str(profile_file),
        "OMP_NUM_THREADS": "1",
    }
    (tmp_path / "home").mkdir()
    defs_killed = build_definitions(load_profile(env=env))
    instance = dg.DagsterInstance.from_config(str(tmp_path / "home"))
    upstream(defs_killed, instance)
    shard_file = tmp_path / "killed" / "tables" / "generated_images" / "shard-00000.parquet"

    process = subprocess.Popen(
        [EMONET, "generate", "shard-00000"],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 300
    while not shard_file.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    partial = pl.read_parquet(shard_file)
    assert 0 < partial.height < 16, "the kill must land mid-shard"
    assert not list((tmp_path / "killed").rglob("*.tmp-*"))

    # Only the killed run needs a process of its own: the resumed and the clean run are the same command in-process.
    settings = {name: env[name] for name in ("DAGSTER_HOME", "EMONET_ROOT", "EMONET_PROFILE")}
    resumed = CliRunner().invoke(main, ["generate", "shard-00000"], env=settings)
    assert resumed.exit_code == 0, resumed.output

    clean_env = {**settings, "EMONET_ROOT": str(tmp_path / "clean"), "DAGSTER_HOME": str(tmp_path / "home2")}
    (tmp_path / "home2").mkdir()
    upstream(build_definitions(load_profile(env=clean_env)), dg.DagsterInstance.from_config(str(tmp_path / "home2")))
    clean = CliRunner().invoke(main, ["generate", "shard-00000"], env=clean_env)
    assert clean.exit_code == 0, clean.output

    assert manifest(tmp_path / "killed").equals(manifest(tmp_path / "clean"))
    killed_images = sorted(p.name for p in (tmp_path / "killed" / "images").rglob("*.png"))
    clean_images = sorted(p.name for p in (tmp_path / "clean" / "images").rglob("*.png"))
    assert killed_images == clean_images and len(clean_images) == 16


def test_unknown_shard_fails_with_a_clear_message(root_copy):
    defs = build_definitions(tiny_profile(root_copy))
    instance = dg.DagsterInstance.ephemeral()
    upstream(defs, instance)
    instance.add_dynamic_partitions("prompt_shards", ["shard-09999"])
    report = materialize_step(defs, instance, [GENERATED], partition="shard-09999")
    assert not report.success
    assert "shard 'shard-09999' has no prompts" in report.error


def test_corrupt_image_is_kept_until_repair_is_asked_for(root_copy):
    store = Store(str(root_copy))
    row = store.read_table("generated_images", ["shard-00003"]).row(0, named=True)
    path = root_copy / row["image_path"]
    path.write_bytes(b"not a png")
    defs = build_definitions(tiny_profile(root_copy))
    instance = dg.DagsterInstance.ephemeral()
    upstream(defs, instance)
    assert materialize_step(defs, instance, [GENERATED], partition="shard-00003").success
    assert path.read_bytes() == b"not a png"
    repair = {"ops": {"generated_images": {"config": {"repair_corrupt": True}}}}
    report = materialize_step(defs, instance, [GENERATED], partition="shard-00003", run_config=repair)
    assert report.success, report.error
    assert store.is_intact(row["image_path"])
    after = store.read_table("generated_images", ["shard-00003"]).drop(VOLATILE)
    assert after.filter(pl.col("prompt_id") == row["prompt_id"])["image_sha256"].to_list() == [row["image_sha256"]]


def test_long_prompts_are_truncated_and_recorded(tmp_path):
    long = "a face of a {gender} showing {cluster}, " + "with a great many extra descriptive words " * 30
    defs = build_definitions(tiny_profile(tmp_path / "root", templates={"long": long}, total=8, shard_size=8))
    instance = dg.DagsterInstance.ephemeral()
    upstream(defs, instance)
    report = materialize_step(defs, instance, [GENERATED], partition="shard-00000")
    assert report.success, report.error
    rows = Store(str(tmp_path / "root")).read_table("generated_images")
    assert rows.height == 8 and (rows["tokens_dropped"] > 0).all()


def test_unwritable_storage_fails_clearly_and_writes_nothing(root_copy):
    images = root_copy / "images"
    before = sorted(p.name for p in images.rglob("*"))
    os.rename(root_copy / "tables" / "generated_images", root_copy / "tables" / "generated_images.bak")
    (root_copy / "tables" / "generated_images").write_text("a file where the manifest folder should be")
    defs = build_definitions(tiny_profile(root_copy))
    instance = dg.DagsterInstance.ephemeral()
    upstream(defs, instance)
    report = materialize_step(defs, instance, [GENERATED], partition="shard-00000")
    assert not report.success
    assert "cannot write" in report.error and "generated_images" in report.error
    assert sorted(p.name for p in images.rglob("*")) == before
    assert not list(root_copy.rglob("*.tmp-*"))


def test_backfill_of_a_shard_range_from_the_cli(tmp_path):
    env = {"DAGSTER_HOME": str(tmp_path / "home"), "EMONET_ROOT": str(tmp_path / "root"), "EMONET_PROFILE": None}
    (tmp_path / "home").mkdir()
    upstream(build_definitions(tiny_profile(tmp_path / "root")), dg.DagsterInstance.from_config(str(tmp_path / "home")))
    result = CliRunner().invoke(main, ["generate", "shard-00001...shard-00003"], env=env)
    assert result.exit_code == 0, result.output
    assert "generated_images [shard-00001...shard-00003]" in result.stdout
    assert Store(str(tmp_path / "root")).table_partitions("generated_images") == [
        "shard-00001",
        "shard-00002",
        "shard-00003",
    ]
    instance = dg.DagsterInstance.from_config(str(tmp_path / "home"))
    materialized = instance.get_materialized_partitions(GENERATED)
    assert materialized == {"shard-00001", "shard-00002", "shard-00003"}
    bad = CliRunner().invoke(main, ["generate", "shard-00042"], env=env)
    assert bad.exit_code != 0 and "unknown shard 'shard-00042'" in bad.stderr


def test_dg_launch_materializes_one_shard(tmp_path):
    """The README's `dg launch` command, from the repository with the venv activated: the shard's images and
    partition recorded, no other shard's."""
    home, root = tmp_path / "home", tmp_path / "root"
    home.mkdir()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        upstream(build_definitions(tiny_profile(root)), instance)
    venv = Path(sys.prefix)
    env = {**os.environ, "DAGSTER_HOME": str(home), "EMONET_ROOT": str(root), "VIRTUAL_ENV": str(venv)}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
    command = ["dg", "launch", "--assets", "generated_images", "--partition", "shard-00002"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert Store(str(root)).table_partitions("generated_images") == ["shard-00002"]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_materialized_partitions(GENERATED) == {"shard-00002"}
