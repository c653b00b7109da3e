"""Consensus, flags and the re-annotation queue do not depend on the order ratings arrive in or on DuckDB's thread
count: dbt builds them from the same ratings shuffled and split into other files, with 1 and with 2 threads. Some
items are re-annotated: their ratings came in two or three batches."""

import json
import statistics
from datetime import UTC, datetime

import duckdb
import numpy as np
import polars as pl
import pytest

from emonet_assets.defs.consensus.project import dbt_resource
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy
from emonet_assets.profiles import AnnotationSettings

MODELS = ("consensus_labels", "emotion_agreement", "annotator_quality", "reannotation_queue", "int_emotion_alpha")
# Sample standard deviations: {0,0,2,3} is exactly 1.5, the default max_item_std, and must not be flagged;
# stddev_samp gives 1.4999999999999998 or 1.5 for it depending on arrival order.
AT_THRESHOLD, ABOVE, BELOW = (0, 0, 2, 3), (0, 0, 2, 4), (1, 1, 2, 3)
IMPORTED = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))


def ratings(seed: int = 0) -> pl.DataFrame:
    """A panel of 4 experts on 60 images x 6 emotions, plus items planted at, above and below the spread limit. The
    first 30 images came in one batch; later images were re-annotated, experts 2 and 3 rating them in a second batch,
    and from image 45 expert 3 in a third, but for the first emotion of images 30 to 44, which all experts rated in the
    first batch. The third batch was imported first, and the other two at one moment."""
    rng = np.random.default_rng(seed)
    emotions = [e.id for e in load_taxonomy().emotions[:6]]
    rows = []
    for image in range(60):
        for emotion in emotions:
            truth = rng.integers(0, 8) if rng.random() < 0.3 else 0
            values = np.clip(truth + rng.integers(-2, 3, 4), 0, 7)
            if image < 15:
                values = np.array([AT_THRESHOLD, ABOVE, BELOW][image % 3])
            rows += [(f"img-{image:03d}", emotion, f"expert-{k}", int(v)) for k, v in enumerate(values)]
    frame = pl.DataFrame(rows, schema=["image_id", "emotion_id", "annotator", "value"], orient="row")
    image, expert = pl.col("image_id").str.slice(4).cast(pl.Int32), pl.col("annotator").str.slice(7).cast(pl.Int32)
    in_first = (image < 30) | ((image < 45) & (pl.col("emotion_id") == emotions[0]))
    batch = pl.when(in_first).then(0).otherwise((expert >= 2).cast(pl.Int32) + ((image >= 45) & (expert == 3)))
    return frame.with_row_index("source_row").with_columns(
        batch_id=pl.format("{}", batch).str.pad_end(64, "b"),
        source_file=pl.lit("panel.csv"),
        collection=pl.lit("generated"),
        scale=pl.lit("intensity"),
        imported_at=pl.when(batch == 2).then(IMPORTED[0]).otherwise(IMPORTED[1]),
    )


def build(tmp_path, name: str, batches: list[pl.DataFrame], threads: int) -> dict[str, pl.DataFrame]:
    """dbt build of the consensus models over `batches` (one Parquet file each) with `threads` DuckDB threads."""
    root = tmp_path / name
    store = Store(str(root))
    store.write_table("taxonomy", load_taxonomy().table())
    for number, batch in enumerate(batches):
        store.write_table("annotations", batch, partition=f"batch-{number:02d}")
    catalog = root / "catalog.duckdb"
    dbt_vars = {
        **AnnotationSettings().dbt_vars(),
        "storage_root": str(root),
        "catalog_path": str(catalog),
        "duckdb_threads": threads,
    }
    args = [
        "build",
        "--select",
        "+reannotation_queue +annotator_quality",
        "--vars",
        json.dumps(dbt_vars),
        "--target",
        "local",
    ]
    invocation = dbt_resource().cli(args, target_path=tmp_path / f"target-{name}", raise_on_error=False)
    invocation.wait()
    assert invocation.is_successful(), invocation.get_error()
    with duckdb.connect(str(catalog), read_only=True) as con:
        return {model: con.sql(f"select * from {model} order by all").pl() for model in MODELS}


@pytest.fixture(scope="module")
def build_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("consensus_exact")


@pytest.fixture(scope="module")
def built(build_folder):
    panel = ratings()
    shuffled = panel.sample(fraction=1.0, shuffle=True, seed=3)
    thirds = [shuffled.slice(start, panel.height // 3 + 1) for start in range(0, panel.height, panel.height // 3 + 1)]
    return build(build_folder, "ordered", [panel], threads=1), build(build_folder, "shuffled", thirds, threads=2)


@pytest.mark.parametrize("model", MODELS)
def test_shuffled_ratings_on_two_threads_give_identical_tables(built, model):
    ordered, shuffled = built
    assert ordered[model].height > 0
    assert ordered[model].equals(shuffled[model])


def test_each_item_counts_the_batches_its_ratings_came_in(built):
    consensus = built[0]["consensus_labels"].select("image_id", "emotion_id", "n_batches")
    expected = ratings().group_by("image_id", "emotion_id").agg(expected=pl.col("batch_id").n_unique())
    joined = consensus.join(expected, on=["image_id", "emotion_id"], how="full")
    assert joined.height == 60 * 6
    assert joined["n_batches"].to_list() == joined["expected"].to_list()
    assert set(joined["n_batches"]) == {1, 2, 3}
    # Items rated in one batch although their image was re-annotated: counted, not assumed, as one batch.
    reannotated_images = joined.filter(pl.col("image_id") >= "img-030")
    assert reannotated_images.filter(pl.col("n_batches") == 1).height == 15


def test_drift_runs_from_the_first_imported_batch_to_the_last_with_ties_in_id_order(built):
    """Each annotator's bias per batch (mean of rating less the others' median) against one computed rating by
    rating. Expert 3's batches by import time are 2, 0, 1 (0 and 1 at one moment, so in id order); expert 2's 0, 1."""
    panel = ratings()
    items = panel.group_by("image_id", "emotion_id").agg(item_values=pl.col("value"))
    rows = panel.join(items, on=["image_id", "emotion_id"]).iter_rows(named=True)
    biases: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        others = list(row["item_values"])
        others.remove(row["value"])
        biases.setdefault((row["annotator"], row["batch_id"][0]), []).append(row["value"] - statistics.median(others))
    bias = {key: sum(values) / len(values) for key, values in biases.items()}
    quality = {row["annotator"]: row for row in built[0]["annotator_quality"].iter_rows(named=True)}
    expected = {"expert-0": None, "expert-1": None, "expert-2": ("0", "1"), "expert-3": ("2", "1")}
    assert set(quality) == set(expected)
    for annotator, ends in expected.items():
        found = quality[annotator]
        if ends is None:
            assert found["drift"] is None
            continue
        first, last = (bias[annotator, batch] for batch in ends)
        assert found["first_batch_bias"] == pytest.approx(first, abs=1e-12)
        assert found["last_batch_bias"] == pytest.approx(last, abs=1e-12)
        assert found["drift"] == pytest.approx(last - first, abs=1e-12)
        assert first != last


def test_a_spread_exactly_at_the_limit_is_not_disputed_and_one_above_it_is(built):
    consensus, queue = built[0]["consensus_labels"], built[0]["reannotation_queue"]
    for planted, reason in ((0, None), (1, "high_disagreement"), (2, None)):
        images = [f"img-{i:03d}" for i in range(planted, 15, 3)]
        items = consensus.filter(pl.col("image_id").is_in(images))
        assert items.height == len(images) * 6
        assert items["low_confidence_reason"].to_list() == [reason] * items.height
        assert items["is_confident"].to_list() == [reason is None] * items.height
    at_limit = consensus.filter(pl.col("image_id") == "img-000")
    assert at_limit["std_rating"].to_list() == [1.5] * 6
    disputed = set(queue.filter(pl.col("reason") == "high_disagreement")["image_id"])
    assert disputed & {f"img-{i:03d}" for i in range(15)} == {f"img-{i:03d}" for i in range(1, 15, 3)}


def test_the_uniqueness_test_reports_exactly_the_repeated_keys_a_plain_group_by_finds(built, build_folder, tmp_path):
    """`unique_combination` groups rows by a hash of their columns before grouping the few rows whose hash repeats by
    value: with repeated keys planted (one a key with a null column) it reports what GROUP BY ... HAVING reports."""
    nodes = json.loads((build_folder / "target-ordered" / "manifest.json").read_text())["nodes"].values()
    [test_sql] = [n["compiled_code"] for n in nodes if n["name"].startswith("unique_combination_consensus_labels_")]
    catalog = tmp_path / "catalog.duckdb"  # the compiled test names its database by the file's stem
    catalog.write_bytes((build_folder / "ordered" / "catalog.duckdb").read_bytes())
    key = "collection, scale, image_id, emotion_id"
    with duckdb.connect(str(catalog)) as con:
        assert con.sql(test_sql).fetchall() == []
        # The model is a view, which takes no inserts: a table of the same rows replaces it and takes the planted rows.
        con.execute("create table labels as select * from consensus_labels")
        con.execute("drop view consensus_labels")
        con.execute("alter table labels rename to consensus_labels")
        con.execute("insert into consensus_labels select * from consensus_labels order by all limit 2")
        con.execute(
            "insert into consensus_labels select c.* replace (null as image_id) "
            "from (select * from consensus_labels order by all limit 1) as c, range(3)"
        )
        con.execute(
            "insert into consensus_labels select * replace ('another' as emotion_id) from consensus_labels limit 1"
        )
        found = con.sql(f"select * from ({test_sql}) order by all").fetchall()
        expected = con.sql(
            f"select {key}, count(*) as n_rows from consensus_labels group by {key} having count(*) > 1 order by all"
        ).fetchall()
    assert found == expected
    assert sorted(row[-1] for row in found) == [2, 2, 3]
    assert any(row[2] is None for row in found)
