"""Release assembly, shard packing, licenses, release ids and verification on small synthetic tables."""

import dataclasses
import io
import json

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard
from PIL import Image

from emonet_assets.lib.annotation.annotation_batches import rating_sources
from emonet_assets.lib.fairness.fairness import disparities, gate_table, group_metrics
from emonet_assets.lib.release.dataset_card import CardInputs, croissant, render_card, size_category
from emonet_assets.lib.release.licenses import permits
from emonet_assets.lib.release.manifest import latest_release, manifest, mark_latest, publish, release_id
from emonet_assets.lib.release.rows import ReleaseRefused, ReleaseRows, license_conflicts, release_rows
from emonet_assets.lib.release.schema import CARD, CROISSANT, FEATURES, MANIFEST
from emonet_assets.lib.release.shards import image_chunks, pack_shards, write_shards
from emonet_assets.lib.release.verify import verify
from emonet_assets.lib.shared.catalog import scratch, scratch_on_disk
from emonet_assets.lib.shared.lineage import data_version
from emonet_assets.lib.shared.rules import SPLITS
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table
from emonet_assets_tests.lib.fairness.test_fairness import make_data as make_fairness_data
from emonet_assets_tests.lib.release.reference_rows import ReleaseTables, reference_rows

EMOTIONS = ["joy", "anger", "fear"]
SPLIT_OF = ["train"] * 6 + ["validation"] * 2 + ["test"] * 2


def png(seed: int, size: int = 16) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def make_tables(store: Store, n: int = 10, license_id: str = "MIT") -> ReleaseTables:
    """n generated images with prompts, QC, splits, consensus and ratings from three experts."""
    shas, paths = [], []
    for i in range(n):
        sha, path, _ = store.write_image(png(i))
        shas.append(sha)
        paths.append(path)
    prompt_ids = [f"p{i:03d}" for i in range(n)]
    generated = pl.DataFrame(
        {
            "prompt_id": prompt_ids,
            "shard": ["shard-00000"] * n,
            "image_sha256": shas,
            "image_path": paths,
            "seed": list(range(n)),
            "model": ["models/tiny"] * n,
            "model_fingerprint": ["fp-tiny"] * n,
            "license": [license_id] * n,
            "scheduler": ["DDIM"] * n,
            "steps": pl.Series([2] * n, dtype=pl.Int32),
            "guidance": [1.0] * n,
            "width": pl.Series([16] * n, dtype=pl.Int32),
            "height": pl.Series([16] * n, dtype=pl.Int32),
            "torch_version": ["2"] * n,
            "diffusers_version": ["0.4"] * n,
            "transformers_version": ["5"] * n,
        }
    )
    prompts = pl.DataFrame(
        {
            "prompt_id": prompt_ids,
            "prompt": [f"a photo of a person feeling {EMOTIONS[i % 3]}" for i in range(n)],
            "emotion_id": [EMOTIONS[i % 3] for i in range(n)],
            "emotion": [EMOTIONS[i % 3].title() for i in range(n)],
            "emotion_group": ["basic"] * n,
            "age": pl.Series([20 + 10 * (i % 7) for i in range(n)], dtype=pl.Int32),
            "gender": [["man", "woman", "non-binary person"][i % 3] for i in range(n)],
            "ethnicity": [["Asian", "White"][i % 2] for i in range(n)],
            "ethnicity_group": [["East Asian", "White"][i % 2] for i in range(n)],
            "occlusion": ["none"] * n,
            "lighting": ["studio"] * n,
            "pose": ["frontal"] * n,
            "template_id": ["release"] * n,
            "cell_id": [f"c{i % 4}" for i in range(n)],
            "design_seed": [7] * n,
            "design_version": ["design-1"] * n,
            "taxonomy_version": ["tax-1"] * n,
        }
    )
    qc = pl.DataFrame(
        {"image_sha256": shas, "passed": [True] * n, "reasons": [[]] * n, "phash": [f"{i:016x}" for i in range(n)]},
        schema_overrides={"reasons": pl.List(pl.String)},
    )
    splits = pl.DataFrame({"image_sha256": shas, "split": [SPLIT_OF[i % len(SPLIT_OF)] for i in range(n)]})
    ratings = [
        {
            "batch_id": f"batch-{a}",
            "source_row": i * 100 + j,
            "collection": "generated",
            "image_id": sha,
            "annotator": f"expert-{a}",
            "emotion_id": emotion,
            "scale": "intensity",
            "value": (i + j + a) % 8,
        }
        for i, sha in enumerate(shas)
        for j, emotion in enumerate(EMOTIONS)
        for a in range(3)
    ]
    annotations = pl.DataFrame(ratings, schema_overrides={"value": pl.Int32})
    return ReleaseTables(splits, generated, prompts, qc, consensus_of(annotations), annotations)


def consensus_of(annotations: pl.DataFrame) -> pl.DataFrame:
    return (
        annotations.group_by("collection", "scale", "image_id", "emotion_id")
        .agg(
            median_rating=pl.col("value").median().cast(pl.Float64),
            mean_rating=pl.col("value").mean(),
            std_rating=pl.col("value").std(),
            n_ratings=pl.len().cast(pl.Int64),
        )
        .with_columns(is_confident=pl.col("n_ratings") >= 3)
    )


TABLES = {
    "splits": Table.SPLITS,
    "generated": Table.GENERATED_IMAGES,
    "prompts": Table.PROMPT_DESIGN,
    "qc": Table.IMAGE_QC,
    "consensus": Table.CONSENSUS_LABELS,
    "annotations": Table.ANNOTATIONS,
}


def write_tables(store: Store, tables: ReleaseTables) -> None:
    """The tables written to the store as the platform writes them."""
    for field, table in TABLES.items():
        store.remove_tree(f"tables/{table}")
        store.write_table(table, getattr(tables, field))


def rows_of(store: Store, tables: ReleaseTables, emotions=EMOTIONS, max_failed_qc_share=0.1) -> ReleaseRows:
    """The tables written to the store, and the release's rows over them."""
    write_tables(store, tables)
    return release_rows(scratch(store), store, emotions, max_failed_qc_share)


def all_rows(rows: ReleaseRows) -> pa.Table:
    return pa.Table.from_batches([b for split in SPLITS for b in rows.split_rows(split, 4)])


def build_release(store: Store, tables: ReleaseTables, budget: int = 1 << 20, license_id: str = "cc-by-4.0") -> dict:
    rows = rows_of(store, tables)
    files = write_shards(store, rows, budget)
    source = {"profile": {"release": {"license": license_id}}, "model_fingerprints": {"generation": "fp-tiny"}}
    inputs = card_inputs(rows, files, source, license_id)
    files.add(store, CARD, render_card(inputs).encode())
    files.add(store, CROISSANT, json.dumps(croissant(inputs), sort_keys=True).encode())
    listed = manifest(files, source, "2025-01-01T00:00:00+00:00")
    folder = publish(store, files, listed)
    mark_latest(store, folder)
    return {"folder": folder, "manifest": listed, "rows": rows}


EXPERTS = [{"raters": "expert", "batches": 2, "annotators": 3, "ratings": 120}]


def card_inputs(rows: ReleaseRows, files, source, license_id="cc-by-4.0", sources=EXPERTS) -> CardInputs:
    empty = pl.DataFrame()
    return CardInputs(
        name="emonet-face-test",
        pretty_name="EmoNet-Face test",
        version="0.0.1",
        license=license_id,
        rows=rows.images,
        annotators=rows.annotators,
        batches=rows.batches,
        emotions=pl.DataFrame({"emotion_id": EMOTIONS, "emotion": [e.title() for e in EMOTIONS]}),
        data_files={n: (sha, size) for n, (_, sha, size) in files.files.items() if n.startswith("data/")},
        agreement=pl.DataFrame({"emotion_id": ["joy"], "alpha_interval": [0.5], "kappa_quadratic_mean": [0.4]}),
        evaluation=pl.DataFrame({"emotion_id": ["joy"], "spearman": [0.3], "model_to_human_ratio": [0.6]}),
        evaluation_summary=empty,
        fairness={},
        provenance={
            **source,
            "library_versions": {"datasets": "5.2.0"},
            "design_versions": ["design-1"],
            "taxonomy_versions": ["tax-1"],
        },
        rating_sources=sources,
    )


# Rows and refusals


def test_rows_carry_images_labels_ratings_and_lineage_in_split_order(tmp_path):
    store = Store(str(tmp_path))
    rows = rows_of(store, make_tables(store))
    table = all_rows(rows)
    assert table.num_rows == 10 and table.column_names == [n for n in FEATURES if n != "image"]
    assert table.column("split").to_pylist() == ["train"] * 6 + ["validation"] * 2 + ["test"] * 2
    assert rows.images["split"].to_list() == sorted(rows.images["split"].to_list())
    first = table.slice(0, 1).to_pylist()[0]
    assert [c["emotion_id"] for c in first["consensus"]] == EMOTIONS
    assert first["intensity_median"] == [c["median_rating"] for c in first["consensus"]]
    assert len(first["ratings"]) == 9 and first["annotation_batch_ids"] == ["batch-0", "batch-1", "batch-2"]
    assert first["license"] == "MIT" and first["model_fingerprint"] == "fp-tiny" and first["qc_passed"]
    assert (rows.annotators, rows.batches) == (3, 3)
    assert rows.rating_sources == [{"raters": "expert", "batches": 3, "annotators": 3, "ratings": 90}]


def varied_tables(store: Store, n: int = 60) -> ReleaseTables:
    """A panel with what the platform's tables hold besides the plain case: an image generated twice (the
    newest manifest row counts), QC reasons null or listed, ratings from other collections, scales and emotions
    outside the release, images rated by two of three experts, and rows in no particular order."""
    rng = np.random.default_rng(3)
    base = make_tables(store, n)
    emotions = [*EMOTIONS, "awe"]
    ratings = []
    for i, sha in enumerate(base.splits["image_sha256"]):
        for emotion in emotions:
            for a in range(3):
                if i % 5 == 0 and a == 2:
                    continue
                for scale, collection, image in (
                    ("intensity", "generated", sha),
                    ("binary", "generated", sha),
                    ("intensity", "external", f"ext-{i}"),
                ):
                    ratings.append(
                        {
                            "batch_id": f"batch-{(i + a) % 4}",
                            "source_row": int(rng.integers(0, 10**6)),
                            "collection": collection,
                            "image_id": image,
                            "annotator": f"expert-{a}",
                            "emotion_id": emotion,
                            "scale": scale,
                            "value": int(rng.integers(0, 8 if scale == "intensity" else 2)),
                        }
                    )
    annotations = pl.DataFrame(ratings, schema_overrides={"value": pl.Int32}).sample(fraction=1.0, shuffle=True, seed=1)
    older = base.generated.head(5).with_columns(seed=pl.col("seed") + 1000, model=pl.lit("models/older"))
    qc = base.qc.with_columns(
        reasons=pl.when(pl.int_range(pl.len()) % 3 == 0).then(None).otherwise(pl.lit(["soft"])),
    )
    return ReleaseTables(
        base.splits.sample(fraction=1.0, shuffle=True, seed=2),
        pl.concat([older, base.generated]),
        base.prompts,
        qc,
        consensus_of(annotations).sample(fraction=1.0, shuffle=True, seed=3),
        annotations,
    )


def assert_rows_equal(rows: ReleaseRows, reference: pl.DataFrame) -> None:
    """Every split's rows, read in small chunks and batches, equal the reference's (the image bytes aside)."""
    schema = pa.schema([FEATURES.arrow_schema.field(n) for n in FEATURES if n != "image"])
    for split in SPLITS:
        got = pa.Table.from_batches(list(rows.split_rows(split, 7, chunk_images=5))).cast(schema)
        expected = reference.filter(pl.col("split") == split).to_arrow().cast(schema)
        assert got.num_rows == expected.num_rows > 0
        assert got.equals(expected), split


def test_rows_equal_the_polars_reference_on_a_varied_panel(tmp_path):
    """The DuckDB rows against the polars assembly they replaced (kept in the tests as the reference)."""
    store = Store(str(tmp_path))
    tables = varied_tables(store)
    order = ["fear", "joy", "anger"]
    rows = rows_of(store, tables, order)
    reference = reference_rows(tables, order)
    assert_rows_equal(rows, reference)
    assert rows.images["model_fingerprint"].n_unique() == 1 and "models/older" not in rows.images["generation_model"]
    assert (
        rows.images["mean_n_ratings"].to_list()
        == reference.select(pl.col("consensus").list.eval(pl.element().struct.field("n_ratings")).list.mean())
        .to_series()
        .to_list()
    )
    exploded = reference.select("ratings").explode("ratings").unnest("ratings")
    assert (rows.annotators, rows.batches) == (exploded["annotator"].n_unique(), exploded["batch_id"].n_unique())
    released = tables.annotations.filter(pl.col("image_id").is_in(reference["image_sha256"].implode()))
    assert rows.rating_sources == rating_sources(released).to_dicts()


def test_rows_staged_in_a_database_file_equal_the_reference_and_the_file_goes_with_the_connection(tmp_path):
    """The release's connection: its staged tables live in a file in the spill folder, not in memory."""
    store = Store(str(tmp_path / "store"))
    tables = varied_tables(store)
    order = ["fear", "joy", "anger"]
    write_tables(store, tables)
    spill = tmp_path / "spill"
    with scratch_on_disk(store, {"temp_directory": str(spill), "threads": 2}) as con:
        rows = release_rows(con, store, order, 0.1)
        assert_rows_equal(rows, reference_rows(tables, order))
        (database,) = con.sql("SELECT path FROM duckdb_databases() WHERE NOT internal AND path IS NOT NULL").fetchone()
        stored = {t for (t,) in con.sql("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()}
        assert database.startswith(str(spill)) and {"release_ratings", "release_consensus", "release_images"} <= stored
    assert list(spill.iterdir()) == []


def test_missing_consensus_is_refused_naming_count_and_image(tmp_path):
    store = Store(str(tmp_path))
    tables = make_tables(store)
    victim = tables.splits["image_sha256"][3]
    dropped = tables.consensus.filter(~((pl.col("image_id") == victim) & (pl.col("emotion_id") == "fear")))
    with pytest.raises(ReleaseRefused, match=r"1 of 10 split images lack intensity consensus") as refused:
        rows_of(store, dataclasses.replace(tables, consensus=dropped))
    assert victim[:12] in str(refused.value) and "1 missing (fear)" in str(refused.value)


def test_a_failed_qc_share_above_the_threshold_is_refused(tmp_path):
    store = Store(str(tmp_path))
    tables = make_tables(store)
    qc = tables.qc.with_columns(
        passed=pl.int_range(pl.len()) >= 3,
        reasons=pl.when(pl.int_range(pl.len()) < 3).then(pl.lit(["blank"])).otherwise(pl.col("reasons")),
    )
    with pytest.raises(ReleaseRefused, match=r"3 of 10 generated images \(30.0%\) failed QC.*10.0%.*\(blank\)"):
        rows_of(store, dataclasses.replace(tables, qc=qc), max_failed_qc_share=0.1)
    with pytest.raises(ReleaseRefused, match=r"3 split images did not pass QC"):
        rows_of(store, dataclasses.replace(tables, qc=qc), max_failed_qc_share=0.5)


def test_split_images_without_a_generation_record_are_refused(tmp_path):
    store = Store(str(tmp_path))
    tables = make_tables(store)
    with pytest.raises(ReleaseRefused, match=r"1 split images have no row in the generation manifest"):
        rows_of(store, dataclasses.replace(tables, generated=tables.generated.slice(1)))


def test_a_release_over_an_unwritten_table_is_refused_naming_it(tmp_path):
    store = Store(str(tmp_path))
    rows_of(store, make_tables(store))
    store.remove_tree(f"tables/{Table.IMAGE_QC}")
    with pytest.raises(ReleaseRefused, match=r"tables not written under .*: image_qc"):
        release_rows(scratch(store), store, EMOTIONS, 0.1)


# Shards


def test_shards_refuse_split_images_that_are_missing_or_no_longer_match_their_sha256(tmp_path):
    store = Store(str(tmp_path))
    _, path, _ = store.write_image(b"image bytes")
    missing = store.image_path("0" * 64)
    rows = pa.RecordBatch.from_pydict({"source_image_path": [path, missing]})
    with pytest.raises(ReleaseRefused, match=r"1 split images cannot be read from .*; e\.g\. images/00/00/0{64}\.png"):
        next(image_chunks(store, [rows]))
    store.write_bytes(path, b"other bytes")
    rows = pa.RecordBatch.from_pydict({"source_image_path": [path]})
    with pytest.raises(ReleaseRefused, match=rf"1 split images no longer match their sha256 .*; e\.g\. {path}"):
        next(image_chunks(store, [rows]))


def _chunks(sizes: list[int], per_chunk: int = 4):
    rng = np.random.default_rng(0)
    schema = FEATURES.arrow_schema
    rows = [
        {
            "image": {"bytes": rng.bytes(size), "path": f"{i}.png"},
            "image_sha256": f"{i:064d}",
            "split": "train",
        }
        for i, size in enumerate(sizes)
    ]
    table = pa.Table.from_pylist(rows, schema=schema)
    return [table.slice(i, per_chunk) for i in range(0, table.num_rows, per_chunk)]


def test_a_small_budget_makes_several_shards_within_it_except_a_single_large_row():
    budget = 64 * 1024
    sizes = [6_000] * 30 + [150_000] + [6_000] * 10
    shards = list(pack_shards(_chunks(sizes), budget))
    assert len(shards) > 3
    assert sum(n for _, n in shards) == len(sizes)
    for data, n in shards:
        assert len(data) <= budget or n == 1
    assert [n for data, n in shards if len(data) > budget] == [1]
    read = pa.concat_tables(pq.read_table(io.BytesIO(d)) for d, _ in shards)
    assert read.column("image_sha256").to_pylist() == [f"{i:064d}" for i in range(len(sizes))]


def test_an_empty_split_still_gets_one_shard_with_the_schema():
    [(data, n)] = list(pack_shards([], 1024 * 1024))
    assert n == 0 and pq.read_schema(io.BytesIO(data)).names == list(FEATURES)


# Licenses


def test_license_table_forbids_non_commercial_models_under_cc_by_and_names_them(tmp_path):
    assert permits("MIT", "cc-by-4.0") and permits("apache-2.0", "cc-by-4.0")
    assert not permits("sai-nc-community", "cc-by-4.0") and permits("sai-nc-community", "cc-by-nc-4.0")
    assert not permits("some-new-license", "cc-by-nc-4.0"), "unknown licenses never pass"
    rows = pl.DataFrame(
        {
            "generation_model": ["tiny", "sdxl-turbo", "sdxl-turbo"],
            "model_fingerprint": ["a", "b", "b"],
            "license": ["MIT", "sai-nc-community", "sai-nc-community"],
        }
    )
    conflicts = license_conflicts(rows, "cc-by-4.0")
    assert conflicts.select("generation_model", "license", "images").rows() == [("sdxl-turbo", "sai-nc-community", 2)]
    assert license_conflicts(rows, "cc-by-nc-4.0").is_empty()


# Ids, manifests, verification


def test_release_id_is_a_deterministic_hash_of_content(tmp_path):
    files = {"data/train-00000-of-00001.parquet": "a" * 64, "README.md": "b" * 64}
    source = {"profile": {"name": "tiny"}}
    assert release_id(files, source) == release_id(dict(reversed(files.items())), source)
    assert release_id({**files, "README.md": "c" * 64}, source) != release_id(files, source)
    assert release_id(files, {"profile": {"name": "other"}}) != release_id(files, source)


def test_same_data_gives_the_same_release_and_verification_passes(tmp_path):
    store = Store(str(tmp_path / "root"))
    tables = make_tables(store)
    first = build_release(store, tables, budget=4096)
    second = build_release(store, tables, budget=4096)
    assert first["manifest"]["release_id"] == second["manifest"]["release_id"]
    assert latest_release(store) == first["folder"]
    assert first["manifest"]["shards"]["train"] > 1
    assert not [p for p, _, _ in store.list_files("releases") if ".staging-" in p]
    result = verify(store.child(first["folder"]))
    assert result.ok and result.files == len(first["manifest"]["files"])


@pytest.mark.parametrize("damage", ["changed", "missing", "unexpected", "manifest"])
def test_verification_names_every_changed_missing_or_unexpected_file(tmp_path, damage):
    store = Store(str(tmp_path / "root"))
    built = build_release(store, make_tables(store))
    folder = tmp_path / "root" / built["folder"]
    shard = next((folder / "data").glob("test-*.parquet"))
    if damage == "changed":
        shard.write_bytes(shard.read_bytes()[:-1] + b"!")
    elif damage == "missing":
        shard.unlink()
    elif damage == "unexpected":
        (folder / "data" / "notes.txt").write_text("extra")
    else:
        listed = json.loads((folder / MANIFEST).read_text())
        listed["files"][0]["sha256"] = "0" * 64
        (folder / MANIFEST).write_text(json.dumps(listed))
    result = verify(Store(str(folder)))
    assert not result.ok
    rel = shard.relative_to(folder).as_posix()
    expected = {
        "changed": [f"changed {rel}"],
        "missing": [f"missing {rel}"],
        "unexpected": ["unexpected data/notes.txt"],
    }.get(damage)
    if expected:
        assert result.differences() == expected
    else:
        assert len(result.problems) == 1 and "states release id" in result.problems[0]


def test_card_and_croissant_describe_the_files_and_splits(tmp_path):
    store = Store(str(tmp_path / "root"))
    built = build_release(store, make_tables(store))
    folder = tmp_path / "root" / built["folder"]
    card = (folder / CARD).read_text()
    assert card.startswith("---\n") and "license: cc-by-4.0" in card and "- split: validation" in card
    assert "| train | 6 |" in card and "| joy |" not in card and "| 0 | Joy | `joy` |" in card
    meta = json.loads((folder / CROISSANT).read_text())
    assert meta["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    for key in ("rai:dataCollection", "rai:dataBiases", "rai:personalSensitiveInformation", "rai:dataUseCases"):
        assert meta[key], key
    files = {d["contentUrl"]: d["sha256"] for d in meta["distribution"] if d["@type"] == "cr:FileObject"}
    listed = {f["path"]: f["sha256"] for f in built["manifest"]["files"] if f["path"].startswith("data/")}
    assert files == listed
    assert [r["@id"] for r in meta["recordSet"]] == ["train", "validation", "test"]
    assert size_category(10) == "n<1K" and size_category(20_000) == "10K<n<100K"


def test_croissant_validates_with_mlcroissant_and_reads_every_split_with_its_images(tmp_path):
    store = Store(str(tmp_path / "root"))
    built = build_release(store, make_tables(store), budget=4096)
    import mlcroissant  # here, not in every pytest-xdist worker at collection

    dataset = mlcroissant.Dataset(jsonld=tmp_path / "root" / built["folder"] / CROISSANT)
    issues = dataset.metadata.ctx.issues
    assert not issues.errors and not [w for w in issues.warnings if "@context" in w], issues.report()
    images = built["rows"].images
    for split in ("train", "validation", "test"):
        records = list(dataset.records(split))
        expected = images.filter(pl.col("split") == split)["image_sha256"].to_list()
        assert [r[f"{split}/image_sha256"].decode() for r in records] == expected
        assert {r[f"{split}/image"].size for r in records} == {(16, 16)}


def test_a_release_on_s3_verifies_and_names_a_tampered_object(moto_s3):
    store = Store(f"s3://{moto_s3.bucket}/lib-release", moto_s3.storage_options)
    built = build_release(store, make_tables(store))
    release = store.child(built["folder"])
    assert verify(release).ok
    prefix = f"lib-release/{built['folder']}/"
    key = next(k for k in moto_s3.keys(f"{prefix}data/") if "/train-" in k)
    moto_s3.client().put_object(Bucket=moto_s3.bucket, Key=key, Body=b"tampered")
    release.fs.invalidate_cache()
    result = verify(store.child(built["folder"]))
    assert result.differences() == [f"changed {key.removeprefix(prefix)}"]


# Who rated, and the data version


def release_inputs(tmp_path, sources, fairness=None):
    store = Store(str(tmp_path / "root"))
    rows = rows_of(store, make_tables(store))
    files = write_shards(store, rows, 1 << 20)
    inputs = card_inputs(rows, files, {"model_fingerprints": {"emotion_model": "fp-model"}}, sources=sources)
    return dataclasses.replace(inputs, fairness=fairness or {})


SIMULATED = [{"raters": "simulated", "batches": 3, "annotators": 4, "ratings": 9000}]


def test_a_card_of_simulated_ratings_says_so_and_never_calls_them_expert(tmp_path):
    inputs = release_inputs(tmp_path, SIMULATED)
    card = DatasetCard(render_card(inputs))
    assert card.data.annotations_creators == ["machine-generated"] and "simulated-annotations" in card.data.tags
    assert "expert-annotated" not in card.data.tags and "expert" not in card.text.replace("imitating expert raters", "")
    assert "Ratings: 4 simulated raters (a program imitating expert raters, not people) gave 9,000 ratings" in card.text
    assert "The ratings are simulated" in card.text
    collection = card.text.split("### Collection process")[1].split("###")[0]
    assert "4 simulated raters" in collection
    meta = croissant(inputs)
    assert "simulated" in meta["rai:dataAnnotationProtocol"] and meta["rai:annotatorDemographics"].startswith("None")
    assert "Manual Human Curator" not in meta["rai:dataCollectionType"]


def test_a_card_of_declared_raters_names_each_kind(tmp_path):
    sources = [EXPERTS[0], {"raters": "crowd", "batches": 1, "annotators": 20, "ratings": 500}]
    card = DatasetCard(render_card(release_inputs(tmp_path, sources)))
    assert card.data.annotations_creators == ["crowdsourced", "expert-generated"]
    assert "Ratings: 3 expert raters gave 120 ratings in 2 batches; 20 crowd raters gave 500 ratings in 1 batch." in (
        card.text
    )
    assert "simulated" not in card.text


def test_the_card_names_the_data_version_as_the_fairness_report_does(tmp_path):
    predictions, consensus, demographics = make_fairness_data(n_images=40)
    groups = group_metrics(predictions, consensus, demographics, min_group_size=5, resamples=10)
    found = disparities(groups)
    fairness = {"group_metrics": groups, "disparities": found, "gates": gate_table(found, {"mean_spearman": 0.5})}
    inputs = release_inputs(tmp_path, EXPERTS, fairness)
    card = render_card(inputs)
    version = data_version(inputs.rows.select("image_sha256", "split"))
    assert f"data `{version}`" in card.split("## Fairness")[1] and f"on data `{version}`" in card
    assert "data `0.0.1`" not in card and "Release version **0.0.1**" in card
    assert "reports/fairness/report.html" in card.split("## Fairness")[1]


def test_the_card_shows_the_leaderboard_with_the_difference_from_the_human_ceiling(tmp_path):
    inputs = release_inputs(tmp_path, EXPERTS)
    assert "No leaderboard: model_leaderboard had not been materialized" in render_card(inputs)
    board = pl.DataFrame(
        {
            "collection": ["generated", "generated"],
            "rank": [1, None],
            "model_key": ["mine@abc", "human ceiling"],
            "kind": ["predictions", "human"],
            "mean_spearman": [0.71, 0.62],
            "mean_spearman_ci_low": [0.65, 0.55],
            "mean_spearman_ci_high": [0.77, 0.68],
            "diff_vs_human": [0.09, 0.0],
            "diff_vs_human_ci_low": [0.02, 0.0],
            "diff_vs_human_ci_high": [0.15, 0.0],
            "p_vs_human": [0.0, 1.0],
            "coverage": [1.0, 1.0],
            "resamples": [1000, 1000],
        }
    )
    card = render_card(dataclasses.replace(inputs, leaderboard=board))
    section = card.split("## Leaderboard")[1].split("## Fairness")[0]
    assert (
        "| generated | 1 | `mine@abc` | predictions | 0.710 [0.650, 0.770] | +0.090 [0.020, 0.150] | <0.001 | 100% |"
        in (section)
    )
    assert "| generated | – | `human ceiling` | human | 0.620 [0.550, 0.680] | – | – | 100% |" in section
