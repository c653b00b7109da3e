"""The ratings suite batch by batch plus one SQL key test gives the whole-table GX suite's verdict and counts."""

import polars as pl

from emonet_assets.lib.annotation import rating_checks
from emonet_assets.lib.annotation.rating_checks import check_ratings
from emonet_assets.lib.shared.expectations import rating_expectations, validate
from emonet_assets.lib.shared.storage import Store

EMOTIONS = ["anger", "elation", "fear"]


def _batch(batch: str, images: list[str], value: int = 3) -> pl.DataFrame:
    rows = [(i, a, e) for i in images for a in ("ann", "bea") for e in EMOTIONS]
    return pl.DataFrame(
        {
            "batch_id": batch,
            "source_file": f"{batch}.csv",
            "source_row": list(range(1, len(rows) + 1)),
            "collection": "generated",
            "image_id": [r[0] for r in rows],
            "annotator": [r[1] for r in rows],
            "emotion_id": [r[2] for r in rows],
            "scale": "intensity",
            "value": pl.Series([value] * len(rows), dtype=pl.Int32),
            "imported_at": pl.Series([0] * len(rows)).cast(pl.Datetime("us", "UTC")),
        }
    )


def _whole_table(table: pl.DataFrame):
    """The check as it was: the whole table in pandas, the key rule a GX expectation among the others."""
    import great_expectations as gx  # here, not in every pytest-xdist worker at collection

    key = gx.expectations.ExpectCompoundColumnsToBeUnique(
        column_list=["collection", "image_id", "annotator", "emotion_id"]
    )
    return validate(table.drop("imported_at").to_pandas(), "annotations", [*rating_expectations(EMOTIONS), key])


def _counts(result) -> dict:
    return {(f["expectation"], f["column"]): f["unexpected_count"] for f in result.failures}


def test_clean_batches_pass_like_the_whole_table(tmp_path):
    store = Store(str(tmp_path))
    for batch, images in (("b1", ["i1", "i2"]), ("b2", ["i3"])):
        store.write_table("annotations", _batch(batch, images), batch)

    rows, ours = check_ratings(store, "annotations", EMOTIONS)
    expected = _whole_table(store.read_table("annotations"))

    assert ours.success and expected.success and rows == 18
    assert ours.evaluated == expected.evaluated


def test_bad_values_in_two_batches_and_a_key_across_batches_fail_with_the_whole_tables_counts(tmp_path):
    store = Store(str(tmp_path))
    first = _batch("b1", ["i1", "i2"]).with_columns(
        value=pl.when(pl.int_range(pl.len()) < 2).then(9).otherwise("value").cast(pl.Int32)
    )
    second = _batch("b2", ["i2", "i3"], value=8).with_columns(
        emotion_id=pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("joy")).otherwise("emotion_id"),
        annotator=pl.when(pl.int_range(pl.len()) == 8).then(None).otherwise("annotator"),
    )
    store.write_table("annotations", first, "b1")
    store.write_table("annotations", second, "b2")

    rows, ours = check_ratings(store, "annotations", EMOTIONS)
    expected = _whole_table(store.read_table("annotations"))

    assert not ours.success and not expected.success and rows == 24
    assert _counts(ours) == _counts(expected)
    assert ("expect_compound_columns_to_be_unique", None) in _counts(ours)
    examples = {(f["expectation"], f["column"]): f["examples"] for f in ours.failures}
    assert examples[("expect_column_values_to_be_in_set", "emotion_id")] == ["joy"]
    assert examples[("expect_column_values_to_be_between", "value")] == ["9", "9", "8", "8", "8"]
    assert ours.evaluated == expected.evaluated


def test_a_column_missing_from_the_table_fails_its_rules_by_name_like_the_whole_table(tmp_path):
    store = Store(str(tmp_path))
    store.write_table("annotations", _batch("b1", ["i1"]).drop("scale"), "b1")

    rows, ours = check_ratings(store, "annotations", EMOTIONS)
    expected = _whole_table(store.read_table("annotations"))

    assert not ours.success and not expected.success and rows == 6
    failed = {(f["expectation"], f["column"]) for f in ours.failures}
    assert failed == {(f["expectation"], f["column"]) for f in expected.failures}
    assert ("expect_column_values_to_not_be_null", "scale") in failed


def test_an_object_store_and_a_file_without_a_column_give_the_whole_tables_counts(tmp_path, moto_s3):
    first = _batch("b1", ["i1", "i2"]).with_columns(
        value=pl.when(pl.int_range(pl.len()) < 3).then(9).otherwise("value").cast(pl.Int32)
    )
    second = _batch("b2", ["i3"]).drop("annotator")  # its 6 rows read as null annotators, as DuckDB's union did
    expected = _whole_table(pl.concat([first, second], how="diagonal_relaxed"))
    for store in (Store(str(tmp_path)), Store(f"s3://{moto_s3.bucket}/checks", moto_s3.storage_options)):
        store.write_table("annotations", first, "b1")
        store.write_table("annotations", second, "b2")

        rows, ours = check_ratings(store, "annotations", EMOTIONS)

        assert not ours.success and rows == 18
        assert _counts(ours) == _counts(expected)
        assert _counts(ours)[("expect_column_values_to_not_be_null", "annotator")] == 6
        assert _counts(ours)[("expect_column_values_to_be_between", "value")] == 3


def test_worker_processes_give_the_results_of_one_process_in_file_order(tmp_path, monkeypatch):
    store = Store(str(tmp_path))
    for number in range(3):  # each file's values are out of scale, and its own: 8, 9, 10
        store.write_table("annotations", _batch(f"b{number}", [f"i{number}"], value=8 + number), f"b{number}")
    rows, alone = check_ratings(store, "annotations", EMOTIONS)
    monkeypatch.setattr(rating_checks, "PIECE_ROWS", 6)  # each file's 6 rows are a piece's worth: a worker each
    started, pool = [], rating_checks.ProcessPoolExecutor

    def recording(workers: int, **options):
        started.append(workers)
        return pool(workers, **options)

    monkeypatch.setattr(rating_checks, "ProcessPoolExecutor", recording)

    assert check_ratings(store, "annotations", EMOTIONS, workers=2) == (rows, alone)
    assert started == [2]  # at most the workers asked for
    failed = {(f["expectation"], f["column"]): f for f in alone.failures}
    assert failed[("expect_column_values_to_be_between", "value")]["unexpected_count"] == 18
    assert failed[("expect_column_values_to_be_between", "value")]["examples"] == ["8"] * 5
