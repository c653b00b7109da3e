import shutil

import dagster as dg
import polars as pl
import pytest
from filelock import FileLock

from emonet_assets.definitions import build_definitions
from emonet_assets.lib.demo_panel import land_demo_panel
from emonet_assets.lib.fairness import image_demographics
from emonet_assets.lib.storage import Store
from emonet_assets.lib.taxonomy import load_taxonomy
from emonet_assets.profiles import load_profile
from emonet_assets.runner import materialize_all, materialize_step, plan, run_sensor


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


def _materialize_tiny_graph(root) -> None:
    profile = tiny_profile(root)
    defs, instance = build_definitions(profile), dg.DagsterInstance.ephemeral()

    def import_panel():
        land_demo_panel(Store(str(root)), profile.annotation.landing, load_taxonomy())
        return run_sensor(defs, instance, "annotation_landing_sensor")

    reports = materialize_all(defs, instance, handlers={dg.AssetKey("annotation_batches"): import_panel})
    assert all(r.success for r in reports), [r.error for r in reports]
    assert all(c.startswith("warning: ") for r in reports for c in r.checks_failed), [r.checks_failed for r in reports]


@pytest.fixture(scope="session")
def materialized_root(tmp_path_factory, worker_id):
    """The tiny profile's whole graph with the demo panel's annotations, materialized once for the whole run (the
    first pytest-xdist worker to ask builds it, the others wait and share it), as `make demo` does; read it only,
    or copy it (root_copy) before changing anything. Only warning checks may fail (tiny cannot fill every cell)."""
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent
    root, done = shared / "tiny-graph" / "root", shared / "tiny-graph.done"
    with FileLock(str(shared / "tiny-graph.lock")):
        if not done.exists():
            shutil.rmtree(root.parent, ignore_errors=True)
            _materialize_tiny_graph(root)
            done.touch()
    return root


@pytest.fixture
def root_copy(materialized_root, tmp_path):
    target = tmp_path / "root"
    shutil.copytree(materialized_root, target)
    return target
