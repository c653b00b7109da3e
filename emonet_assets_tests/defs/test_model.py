"""Splits, embeddings, the emotion model and its evaluation, as the demo materializes them on the tiny profile."""

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from PIL import Image

from emonet_assets.definitions import build_definitions
from emonet_assets.lib.model.modeling import latest_model_dir, predict_files
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy
from emonet_assets.profiles import RealPhotoSet
from emonet_assets.runner import materialize_step
from emonet_assets_tests.defs.conftest import tiny_profile

REPO = Path(__file__).resolve().parents[2]


def step(root, asset, profile=None):
    profile = profile or tiny_profile(root)
    return materialize_step(build_definitions(profile), dg.DagsterInstance.ephemeral(), [dg.AssetKey(asset)])


def test_splits_keep_rated_images_and_hit_the_ratios(materialized_root):
    store = Store(str(materialized_root))
    splits = store.read_table("splits")
    rated = store.read_table("consensus_labels").filter(
        (pl.col("collection") == "generated") & (pl.col("scale") == "intensity")
    )
    assert set(splits["image_sha256"]) == set(rated["image_id"])
    shares = splits.group_by("split").len().with_columns(share=pl.col("len") / pl.col("len").sum())
    assert dict(shares.select("split", "share").iter_rows()) == pytest.approx(
        {"train": 0.6, "validation": 0.2, "test": 0.2}, abs=0.05
    )


def test_model_is_saved_with_weights_config_and_card(materialized_root):
    store = Store(str(materialized_root))
    [row] = store.read_table("emotion_model").rows(named=True)
    for name in ("model.safetensors", "config.json", "MODEL_CARD.md"):
        assert store.exists(f"{row['path']}/{name}")
    config = json.loads(store.read_bytes(f"{row['path']}/config.json"))
    assert config["config"]["architecture"] == "heads"
    assert len(config["emotion_ids"]) == 40
    assert set(config["metadata"]["lineage"]) == {"splits", "embeddings", "consensus"}
    card = store.read_bytes(f"{row['path']}/MODEL_CARD.md").decode()
    assert config["metadata"]["lineage"]["consensus"] in card
    assert "Not validated on real photographs" in card


def test_evaluation_sits_beside_the_human_ceiling_and_a_random_baseline(materialized_root):
    store = Store(str(materialized_root))
    per_emotion = store.read_table("model_evaluation")
    assert per_emotion.height == 40
    assert per_emotion["human_ceiling_spearman"].null_count() < 40
    assert (per_emotion["spearman_ci_low"] <= per_emotion["spearman_ci_high"]).all()
    summary = store.read_table("model_evaluation_summary")
    assert summary["predictor"].to_list() == ["model", "random baseline"]
    rollups = store.read_table("model_evaluation_rollups")
    assert {"group", "valence"} <= set(rollups["rollup"])
    chart = store.read_bytes("reports/model_evaluation/per_emotion_spearman.png")
    assert chart.startswith(b"\x89PNG")


def test_training_again_gives_the_same_model(root_copy):
    store = Store(str(root_copy))
    before = store.read_table("emotion_model")["model_fingerprint"].to_list()
    report = step(root_copy, "emotion_model")
    assert report.success, report.error
    assert store.read_table("emotion_model")["model_fingerprint"].to_list() == before * 2


def test_embeddings_are_reused_and_undecodable_images_are_named(root_copy):
    store = Store(str(root_copy))
    profile = tiny_profile(root_copy)
    again = materialize_step(
        build_definitions(profile), dg.DagsterInstance.ephemeral(), [dg.AssetKey("image_embeddings")]
    )
    assert again.success and again.rows["image_embeddings"] == 180
    [partition] = store.table_partitions("image_embeddings")
    table = store.read_table("image_embeddings")
    victim = table["image_sha256"][0]
    store.write_table("image_embeddings", table.filter(pl.col("image_sha256") != victim), partition)
    path = store.read_table("generated_images").filter(pl.col("image_sha256") == victim)["image_path"][0]
    (root_copy / path).write_bytes(b"not a png at all")
    report = step(root_copy, "image_embeddings")
    assert report.success, report.error
    assert store.read_table("image_embeddings").height == 179
    assert victim not in set(store.read_table("image_embeddings")["image_sha256"])


def test_embeddings_of_another_backbone_are_refused_with_both_fingerprints(root_copy):
    store = Store(str(root_copy))
    [current] = store.table_partitions("image_embeddings")
    table = store.read_table("image_embeddings").with_columns(backbone_fingerprint=pl.lit("0123456789abcdef"))
    store.write_table("image_embeddings", table, "0123456789abcdef")
    (root_copy / "tables" / "image_embeddings" / f"{current}.parquet").unlink()
    report = step(root_copy, "emotion_model")
    assert not report.success
    assert "0123456789abcdef" in report.error and current in report.error


def resources(root):
    from emonet_assets.resources import ProfileResource, StorageResource

    return {"storage": StorageResource(root=str(root)), "profile": ProfileResource.from_profile(tiny_profile(root))}


def test_leakage_and_share_checks_fail_on_planted_splits(root_copy):
    from emonet_assets.defs.dataset.checks import cells_have_test_images, split_shares_on_target, splits_do_not_leak

    store = Store(str(root_copy))
    splits = store.read_table("splits")
    assert splits_do_not_leak(**resources(root_copy)).passed
    assert split_shares_on_target(**resources(root_copy)).passed
    test_prompt = splits.filter(pl.col("split") == "test")["prompt_id"][0]
    train_image = splits.filter(pl.col("split") == "train")["image_sha256"][0]
    leaked = splits.with_columns(
        prompt_id=pl.when(pl.col("image_sha256") == train_image).then(pl.lit(test_prompt)).otherwise("prompt_id")
    )
    store.write_table("splits", leaked)
    leak = splits_do_not_leak(**resources(root_copy))
    assert not leak.passed and leak.description == "1 prompt or near-duplicate groups span splits"
    thin = cells_have_test_images(**resources(root_copy))
    assert not thin.passed and thin.severity == dg.AssetCheckSeverity.WARN
    assert "cells below 1 test images" in thin.description
    store.write_table("splits", splits.with_columns(split=pl.lit("test")))
    skewed = split_shares_on_target(**resources(root_copy))
    assert not skewed.passed
    assert "train 0.000 vs target 0.60" in skewed.description


def test_random_baseline_check_reports_its_numbers(root_copy):
    from emonet_assets.defs.model.checks import model_beats_random_baseline

    store = Store(str(root_copy))
    summary = store.read_table("model_evaluation_summary")
    result = model_beats_random_baseline(**resources(root_copy))
    assert result.severity == dg.AssetCheckSeverity.WARN
    assert "mean Spearman" in result.description and "random baseline" in result.description
    strong = summary.with_columns(
        pl.when(pl.col("predictor") == "model").then(0.9).otherwise(pl.col(c)).alias(c)
        for c in ("mean_spearman", "mean_spearman_ci_low", "mean_spearman_ci_high")
    )
    store.write_table("model_evaluation_summary", strong)
    assert model_beats_random_baseline(**resources(root_copy)).passed
    weak = summary.with_columns(
        pl.when(pl.col("predictor") == "model").then(-0.5).otherwise(pl.col(c)).alias(c)
        for c in ("mean_spearman", "mean_spearman_ci_low", "mean_spearman_ci_high")
    )
    store.write_table("model_evaluation_summary", weak)
    assert not model_beats_random_baseline(**resources(root_copy)).passed


def test_real_photo_sets_are_scored_and_unmapped_classes_listed(root_copy, tmp_path):
    store = Store(str(root_copy))
    images = sorted((root_copy / "images").rglob("*.png"))[:9]
    for i, image in enumerate(images):
        folder = tmp_path / "photos" / ("happy", "sad", "neutral")[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        Image.open(image).convert("RGB").save(folder / f"{i}.jpg")
    profile = tiny_profile(root_copy)
    sets = [RealPhotoSet(name="demo-photos", path=str(tmp_path / "photos"))]
    profile = profile.model_copy(update={"model": profile.model.model_copy(update={"real_photo_sets": sets})})
    report = step(root_copy, "real_photo_evaluation", profile)
    assert report.success, report.error
    [row] = store.read_table("real_photo_evaluation").rows(named=True)
    assert row["set"] == "demo-photos" and row["images"] == 9 and 0 <= row["accuracy"] <= 1
    assert set(store.read_table("real_photo_per_class")["label"]) == {"happy", "sad", "neutral"}
    (tmp_path / "photos" / "bored").mkdir()
    Image.open(images[0]).save(tmp_path / "photos" / "bored" / "x.png")
    (tmp_path / "photos" / "smug").mkdir()
    Image.open(images[0]).save(tmp_path / "photos" / "smug" / "x.png")
    refused = step(root_copy, "real_photo_evaluation", profile)
    assert not refused.success
    assert "bored" in refused.error and "smug" in refused.error


def test_predict_scores_files_and_refuses_another_taxonomy(materialized_root, tmp_path):
    images = sorted((materialized_root / "images").rglob("*.png"))[:2]
    folder = latest_model_dir(Store(str(materialized_root)))
    scores, failed = predict_files(images, folder, load_taxonomy().version)
    assert scores.height == 80 and failed.is_empty()
    assert scores["predicted"].is_between(0, 7).all()
    with pytest.raises(ValueError, match="trained on taxonomy version .*; the current taxonomy is other-version"):
        predict_files(images, folder, "other-version")
    out = tmp_path / "scores.csv"
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG broken")
    result = subprocess.run(
        [
            Path(sys.executable).parent / "emonet",
            "predict",
            *map(str, images),
            str(bad),
            "--format",
            "csv",
            "--output",
            str(out),
        ],
        cwd=REPO,
        env={"EMONET_ROOT": str(materialized_root), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert f"skipped {bad}" in result.stderr and "1 of 3 image(s) could not be scored" in result.stderr
    wide = pl.read_csv(out)
    assert wide.height == 2 and wide.width == 41
    assert np.isfinite(wide.drop("path").to_numpy()).all()
