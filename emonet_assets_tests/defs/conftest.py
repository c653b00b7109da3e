import shutil

import dagster as dg
import polars as pl
import pytest

from emonet_assets.lib.fairness.fairness import image_demographics
from emonet_assets.lib.shared.storage import Store
from emonet_assets.profiles import load_profile
from emonet_assets.runner import materialize_step, plan


def tiny_profile(root, generation=None, qc=None, **design):
    """The tiny profile on `root`, with design, generation or QC settings overridden."""
    profile = load_profile("tiny", env={"EMONET_ROOT": str(root)})
    update = {}
    if design:
        update["design"] = profile.design.__class__(**{**profile.design.__dict__, **design})
    if generation:
        update["generation"] = profile.generation.model_copy(update=generation)
    if qc:
        update["qc"] = profile.qc.model_copy(update=qc)
    return profile.model_copy(update=update)


def plant_gender_disparity(store: Store) -> str:
    """Rewrite the model's predictions so one gender's are inverted (7 - consensus) and the rest exact; returns
    that gender. The predictions cover every rated generated image, not only the test split, so every gender has
    all its images whatever the split dealt it (and whatever pixels this machine generated): any fairness gate
    on gender must then fail."""
    fingerprint = store.read_table("model_test_predictions")["model_fingerprint"][0]
    demographics = image_demographics(store.read_table("generated_images"), store.read_table("prompt_design"))
    consensus = store.read_table("consensus_labels").filter(
        (pl.col("collection") == "generated") & (pl.col("scale") == "intensity")
    )
    rated = consensus.select("image_id", "emotion_id", "median_rating").join(demographics, on="image_id")
    target = rated.group_by("gender").agg(images=pl.col("image_id").n_unique()).sort("images", "gender")["gender"][-1]
    planted = rated.select(
        "image_id",
        "emotion_id",
        model_fingerprint=pl.lit(fingerprint),
        predicted=pl.when(pl.col("gender") == target)
        .then(7 - pl.col("median_rating"))
        .otherwise(pl.col("median_rating")),
    )
    store.write_table("model_test_predictions", planted)
    return target


def upstream(defs, instance):
    """Everything before generation, so shard partitions exist in `instance`."""
    graph = defs.resolve_asset_graph()
    for keys in plan(defs):
        if graph.get(keys[0]).partitions_def is not None:
            break
        report = materialize_step(defs, instance, keys)
        assert report.success, report.error


@pytest.fixture
def instance(tmp_path):
    """SQLite storage, as `make dev` and `make demo` use: its event log is sharded by run, and schedules reach
    it by reference, as the daemon's do."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


@pytest.fixture(scope="session")
def materialized_root(demo_run):
    """The tiny profile's whole graph with the demo panel's annotations: the root `emonet demo` materialized, shared
    by every test of the session; read it only, or copy it (root_copy) before changing anything. Only warning checks
    may fail (tiny cannot fill every cell)."""
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    assert "FAIL" not in demo_run.stdout, demo_run.stdout
    return demo_run.root


@pytest.fixture
def root_copy(materialized_root, tmp_path):
    target = tmp_path / "root"
    shutil.copytree(materialized_root, target)
    return target
