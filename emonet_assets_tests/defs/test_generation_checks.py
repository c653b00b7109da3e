"""The generation gates: the manifest contract and the quarantine share, each made to fail."""

import dagster as dg
import polars as pl

from emonet_assets.definitions import build_definitions
from emonet_assets.defs.generation.checks import manifest_matches_shards, quarantine_within_limit
from emonet_assets.lib.shared.storage import Store
from emonet_assets.resources import ProfileResource, StorageResource
from emonet_assets.runner import materialize_step
from emonet_assets_tests.defs.conftest import tiny_profile

QC = dg.AssetKey("image_qc")


def profile_resource(root, **qc):
    return ProfileResource.from_profile(tiny_profile(root, qc=qc or None))


def test_generation_checks_pass_on_the_demo(materialized_root):
    storage = StorageResource(root=str(materialized_root))
    assert manifest_matches_shards(storage=storage).passed
    result = quarantine_within_limit(storage=storage, profile=profile_resource(materialized_root))
    assert result.passed and result.metadata["quarantined"].value == 0


def test_manifest_check_fails_on_a_missing_image_file(root_copy):
    store = Store(str(root_copy))
    path = store.read_table("generated_images", ["shard-00000"])["image_path"][0]
    (root_copy / path).unlink()
    result = manifest_matches_shards(storage=StorageResource(root=str(root_copy)))
    assert not result.passed and "1 × image file missing" in result.description


def test_manifest_check_fails_on_duplicate_rows_and_prompts_without_images(root_copy):
    store = Store(str(root_copy))
    rows = store.read_table("generated_images", ["shard-00001"])
    store.write_table("generated_images", pl.concat([rows.slice(1), rows.head(1), rows.head(1)]), "shard-00001")
    rows = store.read_table("generated_images", ["shard-00002"])
    store.write_table("generated_images", rows.slice(2), "shard-00002")
    result = manifest_matches_shards(storage=StorageResource(root=str(root_copy)))
    assert not result.passed
    assert result.metadata["by_problem"].value == {"duplicate row": 1, "prompt without an image": 2}


def test_qc_quarantines_corrupt_and_duplicate_images_and_the_gate_fails_above_its_limit(root_copy):
    store = Store(str(root_copy))
    first, second = store.read_table("generated_images", ["shard-00000"]).sort("position").head(2).iter_rows(named=True)
    (root_copy / first["image_path"]).write_bytes(b"\x89PNG truncated")
    rows = store.read_table("generated_images", ["shard-00001"]).sort("position")
    copied = rows.with_columns(
        image_sha256=pl.when(pl.col("position") == rows["position"][0])
        .then(pl.lit(second["image_sha256"]))
        .otherwise(pl.col("image_sha256")),
        image_path=pl.when(pl.col("position") == rows["position"][0])
        .then(pl.lit(second["image_path"]))
        .otherwise(pl.col("image_path")),
    )
    store.write_table("generated_images", copied, "shard-00001")

    profile = tiny_profile(root_copy, qc={"max_quarantine_share": 0.005})
    defs = build_definitions(profile)
    report = materialize_step(defs, dg.DagsterInstance.ephemeral(), [QC])
    assert not report.success
    assert report.checks_failed == ["quarantine_within_limit: 0.8% of images quarantined, above the 0.5% limit"]

    qc = store.read_table("image_qc")
    failed = {r["prompt_id"]: r["reasons"] for r in qc.filter(~pl.col("passed")).iter_rows(named=True)}
    assert failed[first["prompt_id"]][0].startswith("does not decode")
    duplicate_of = failed[rows["prompt_id"][0]]
    assert duplicate_of == [f"near-duplicate of {second['image_sha256']} (distance 0)"]
    assert qc.filter(pl.col("prompt_id") == second["prompt_id"])["passed"].to_list() == [True]
    assert (root_copy / first["image_path"]).exists(), "quarantined images stay in storage"
