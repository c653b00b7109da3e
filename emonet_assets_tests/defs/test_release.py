"""The benchmark release of the tiny graph: loaded by `datasets` offline, its card in a browser, its checks,
refusals, `emonet verify-release`, and the same on an s3:// root."""

import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import yaml
from huggingface_hub import DatasetCard
from markdown_it import MarkdownIt
from PIL import Image

from emonet_assets.definitions import build_definitions
from emonet_assets.lib.release.manifest import latest_release
from emonet_assets.lib.release.schema import CARD, CROISSANT, MANIFEST
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table
from emonet_assets.runner import materialize_step
from emonet_assets_tests.browser import view
from emonet_assets_tests.defs.conftest import tiny_profile

REPO = Path(__file__).resolve().parents[2]
EMONET = Path(sys.executable).parent / "emonet"
RELEASE = dg.AssetKey("benchmark_release")


def release_folder(root: Path) -> Path:
    return root / latest_release(Store(str(root)))


def release(root, profile=None):
    profile = profile or tiny_profile(root)
    return materialize_step(build_definitions(profile), dg.DagsterInstance.ephemeral(), [RELEASE])


def verify_cli(path: str, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "COLUMNS": "200", **env}
    return subprocess.run(
        [EMONET, "verify-release", path], cwd=REPO, env=environment, capture_output=True, text=True, timeout=300
    )


def test_datasets_loads_the_release_offline_with_splits_rows_and_images(materialized_root, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    folder = release_folder(materialized_root)
    loaded = datasets.load_dataset("parquet", data_dir=str(folder), cache_dir=str(tmp_path / "hf" / "datasets"))
    splits = Store(str(materialized_root)).read_table("splits")
    expected = dict(splits.group_by("split").len().iter_rows())
    assert {name: part.num_rows for name, part in loaded.items()} == expected
    assert len(list((folder / "data").glob("train-*-of-*.parquet"))) > 1, "the tiny budget makes several shards"
    test = loaded["test"]
    assert isinstance(test.features["image"], datasets.Image)
    row = test[0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (64, 64)
    raw = test.cast_column("image", datasets.Image(decode=False))[0]["image"]["bytes"]
    assert hashlib.sha256(raw).hexdigest() == row["image_sha256"]
    assert len(row["intensity_median"]) == 40 and len(row["consensus"]) == 40 and row["ratings"]
    assert row["license"] == "MIT" and row["qc_passed"] and row["annotation_batch_ids"]
    assert set(loaded["train"]["split"]) == {"train"}


def test_manifest_lists_every_file_and_provenance(materialized_root):
    folder = release_folder(materialized_root)
    listed = json.loads((folder / MANIFEST).read_text())
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    assert sorted(f["path"] for f in listed["files"]) == on_disk
    assert folder.name == listed["release_id"]
    source = listed["provenance"]
    assert source["profile"]["name"] == "tiny" and source["profile"]["release"]["license"] == "cc-by-4.0"
    assert "storage" not in source["profile"] and "source" not in source["profile"]["design"]
    assert source["library_versions"]["datasets"] == "5.2.0"
    assert set(source["model_fingerprints"]) == {"emotion_model", "embedding_backbone"}
    assert source["generation_models"][0]["license"] == "MIT"


def test_card_has_the_hub_header_and_renders_in_headless_chromium(materialized_root, tmp_path):
    folder = release_folder(materialized_root)
    card = DatasetCard((folder / CARD).read_text())
    header = card.data.to_dict()
    for key in ("license", "annotations_creators", "language", "size_categories", "task_categories", "task_ids"):
        assert header[key], key
    assert [c["split"] for c in header["configs"][0]["data_files"]] == ["train", "validation", "test"]
    assert {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]}["test"] >= 1
    assert yaml.safe_load((folder / CARD).read_text().split("---")[1])["pretty_name"]
    body = MarkdownIt("commonmark").enable("table").render(card.text)
    page_file = tmp_path / "card.html"
    page_file.write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>card</title></head><body>{body}</body></html>"
    )
    page = view(page_file.as_uri(), tmp_path / "card.png")
    assert page.console_errors == []
    for heading in (
        "Splits",
        "Demographic cells",
        "Emotions, rater agreement and model results",
        "Fairness",
        "Generation models",
        "Datasheet",
        "Motivation",
        "Maintenance",
        "Provenance",
    ):
        assert heading in page.text, heading
    assert "data/models/tiny-sd" in page.text and "MIT" in page.text and "Elation" in page.text
    shot = np.asarray(Image.open(page.screenshot).convert("L"))
    assert shot.shape[0] > 900 and shot.std() > 10, "a long page with content, not a blank one"


def test_the_card_and_the_fairness_report_name_the_data_by_one_value(materialized_root):
    report = (materialized_root / "reports/fairness/report.html").read_text()
    [version] = re.findall(r"<td>data</td><td>([0-9a-f]{16})</td>", report)
    card = (release_folder(materialized_root) / CARD).read_text()
    assert f"on data `{version}`" in card and f"data `{version}`" in card.split("## Fairness")[1]
    assert f"data `{tiny_profile(materialized_root).release.version}`" not in card


def test_croissant_hashes_match_the_files_and_mlcroissant_reads_the_test_split(materialized_root):
    folder = release_folder(materialized_root)
    meta = json.loads((folder / CROISSANT).read_text())
    objects = [d for d in meta["distribution"] if d["@type"] == "cr:FileObject"]
    assert objects and all(
        hashlib.sha256((folder / d["contentUrl"]).read_bytes()).hexdigest() == d["sha256"] for d in objects
    )
    assert meta["rai:dataBiases"] and meta["rai:personalSensitiveInformation"] and meta["rai:dataCollection"]
    import mlcroissant  # here, not in every pytest-xdist worker at collection

    dataset = mlcroissant.Dataset(jsonld=folder / CROISSANT)
    assert not dataset.metadata.ctx.issues.errors
    records = list(dataset.records("test"))
    manifest = json.loads((folder / MANIFEST).read_text())
    assert len(records) == manifest["rows"]["test"] > 0
    assert {r["test/image"].size for r in records} == {(64, 64)}
    assert min(len(r["test/ratings"]) for r in records) >= 40 * 3, "every emotion with at least 3 expert ratings"


def test_verify_release_cli_passes_then_names_a_changed_a_missing_and_an_extra_file(materialized_root, tmp_path):
    import shutil

    original = release_folder(materialized_root)
    copy = tmp_path / original.name
    shutil.copytree(original, copy)
    ok = verify_cli(str(copy))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(f"OK release {copy.name}: ") and len(ok.stdout.strip().splitlines()) == 1
    shards = sorted((copy / "data").glob("train-*.parquet"))
    shards[0].write_bytes(shards[0].read_bytes() + b"x")
    shards[1].unlink()
    (copy / "data" / "extra.parquet").write_bytes(b"x")
    bad = verify_cli(str(copy))
    assert bad.returncode != 0
    assert f"changed data/{shards[0].name}" in bad.stdout and f"missing data/{shards[1].name}" in bad.stdout
    assert "unexpected data/extra.parquet" in bad.stdout and "3 difference(s)" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_the_same_data_gives_the_same_release_id(root_copy):
    before = release_folder(root_copy).name
    report = release(root_copy)
    assert report.success, report.error
    assert release_folder(root_copy).name == before
    assert [p.name for p in (root_copy / "releases").iterdir() if p.is_dir()] == [before]


def test_a_tampered_release_fails_the_manifest_check_naming_the_file(root_copy):
    shard = next((release_folder(root_copy) / "data").glob("test-*.parquet"))
    shard.write_bytes(b"not parquet")
    report = release(root_copy)
    [failure] = [c for c in report.checks_failed if c.startswith("release_matches_manifest")]
    assert f"changed data/{shard.name}" in failure


def test_a_non_commercial_model_fails_the_license_check_naming_it_and_latest_stays_put(root_copy):
    before = release_folder(root_copy).name
    store = Store(str(root_copy))
    for shard in store.table_partitions(Table.GENERATED_IMAGES):
        table = store.read_table(Table.GENERATED_IMAGES, [shard])
        store.write_table(
            Table.GENERATED_IMAGES,
            table.with_columns(license=pl.lit("sai-nc-community"), model=pl.lit("models/sdxl-turbo")),
            shard,
        )
    report = release(root_copy)
    [failure] = [c for c in report.checks_failed if c.startswith("release_license_compatible")]
    assert "licenses that forbid a cc-by-4.0 release: models/sdxl-turbo (sai-nc-community, 180 images)" in failure
    assert not failure.startswith("warning: ")
    rejected = [p.name for p in (root_copy / "releases").iterdir() if p.is_dir() and p.name != before]
    assert len(rejected) == 1 and (root_copy / "releases" / rejected[0] / MANIFEST).exists()
    assert release_folder(root_copy).name == before, "latest.json must not point at a release that failed its check"


def test_a_release_that_fails_while_writing_leaves_no_staging_files(root_copy, monkeypatch):
    def broken(inputs):
        raise RuntimeError("croissant broke")

    before = release_folder(root_copy).name
    monkeypatch.setattr("emonet_assets.lib.release.dataset_card.croissant", broken)
    report = release(root_copy)
    assert not report.success and "croissant broke" in report.error
    assert sorted(p.name for p in (root_copy / "releases").iterdir() if p.is_dir()) == [before]
    assert release_folder(root_copy).name == before


def test_a_release_over_missing_consensus_is_refused_with_counts_and_examples(root_copy):
    store = Store(str(root_copy))
    victim = store.read_table("splits")["image_sha256"].sort()[0]
    consensus = store.read_table("consensus_labels")
    store.write_table("consensus_labels", consensus.filter(pl.col("image_id") != victim))
    report = release(root_copy)
    assert not report.success
    assert "release refused: 1 of 180 split images lack intensity consensus" in report.error
    assert f"{victim[:12]}" in report.error and "40 missing" in report.error


def test_a_release_over_too_many_failed_qc_images_is_refused(root_copy):
    store = Store(str(root_copy))
    qc = store.read_table("image_qc")
    store.write_table("image_qc", qc.with_columns(passed=pl.int_range(pl.len()) >= 60, reasons=pl.lit(["blank"])))
    report = release(root_copy)
    assert not report.success
    assert (
        "60 of 240 generated images (25.0%) failed QC, above the profile's release.max_failed_qc_share" in report.error
    )


@pytest.fixture
def s3_env(moto_s3, monkeypatch):
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "EMONET_S3_ENDPOINT_URL": moto_s3.endpoint_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_a_release_on_an_s3_root_is_written_and_verified(materialized_root, moto_s3, s3_env, tmp_path):
    root = f"s3://{moto_s3.bucket}/release-root"
    store = Store(root, {"endpoint_url": moto_s3.endpoint_url})
    for folder in ("tables", "images"):
        store.fs.put(str(materialized_root / folder), f"{moto_s3.bucket}/release-root/", recursive=True)
    profile = tiny_profile(root)
    profile = profile.model_copy(
        update={"storage": profile.storage.model_copy(update={"catalog": str(tmp_path / "catalog.duckdb")})}
    )
    report = release(root, profile)
    assert report.success, report.error
    assert report.checks_failed == [] and report.checks_passed == 2
    folder = latest_release(store)
    assert folder == latest_release(Store(str(materialized_root))), "the same data on s3 gives the same release id"
    keys = moto_s3.keys(f"release-root/{folder}/")
    assert f"release-root/{folder}/{MANIFEST}" in keys and any("/data/test-00000-of-" in k for k in keys)
    assert not moto_s3.keys("release-root/releases/.staging-")
    ok = verify_cli(store.url(folder), **s3_env)
    assert ok.returncode == 0 and ok.stdout.startswith("OK release "), ok.stdout + ok.stderr
    key = next(k for k in keys if k.endswith(CARD))
    moto_s3.client().put_object(Bucket=moto_s3.bucket, Key=key, Body=io.BytesIO(b"# edited").getvalue())
    bad = verify_cli(store.url(folder), **s3_env)
    assert bad.returncode != 0 and f"changed {CARD}" in bad.stdout
