"""The ratings check's key test (`annotation/duplicate_rating_keys.sql`), which groups by item with masks of the
raters' hashes before grouping on the keys, against a plain GROUP BY of the four key columns: the same repeated keys,
rows and examples, including items with more raters than a mask holds and null key columns."""

import duckdb
import numpy as np
import polars as pl

from emonet_assets.lib.shared.catalog import quote_literal, render_sql


def _write(folder, name: str, rows: list[tuple]) -> None:
    schema = {"collection": pl.String, "image_id": pl.String, "annotator": pl.String, "emotion_id": pl.String}
    pl.DataFrame(rows, schema=schema, orient="row").write_parquet(folder / f"{name}.parquet")


def _both(folder) -> tuple[tuple, tuple]:
    files = quote_literal(str(folder / "*.parquet"))
    with duckdb.connect() as con:
        ours = con.sql(render_sql("annotation/duplicate_rating_keys", files=files)).fetchone()
        plain = con.sql(
            "SELECT coalesce(sum(n), 0), count(*), list(concat_ws(' / ', collection, image_id, annotator, emotion_id) "
            "ORDER BY collection, image_id, annotator, emotion_id)[1:5] FROM (SELECT *, count(*) AS n "
            f"FROM read_parquet({files}, union_by_name = true) GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()
    return ours, plain


def test_it_reports_every_repeated_key_and_no_other(tmp_path):
    many = [("generated", "many", f"rater-{r}", "anger") for r in range(100)]  # more raters than a mask has bits
    _write(
        tmp_path,
        "first",
        [
            *many,
            *[("generated", "more", f"rater-{r}", "anger") for r in [*range(100), 50]],  # one of 100 raters twice
            ("generated", "plain", "ann", "fear"),
            ("generated", "nulls", None, "fear"),
            ("generated", "nulls", None, "fear"),  # a null rater twice
            ("generated", "single", "ann", "fear"),
        ],
    )
    null_item = (None, None, "ann", None)
    _write(tmp_path, "second", [("generated", "plain", "ann", "fear"), null_item, null_item])

    ours, plain = _both(tmp_path)

    assert ours == plain
    assert ours[:2] == (8, 4)  # (more, rater-50), (nulls, null rater), (plain, ann) across files, (null item, ann)


def test_it_matches_a_plain_group_by_on_random_keys(tmp_path):
    rng = np.random.default_rng(0)
    for part in range(2):
        images = rng.integers(0, 500, 20_000)
        raters = rng.integers(0, 300, 20_000)
        emotions = rng.integers(0, 4, 20_000)
        rows = [("generated", f"i{i}", f"r{r}", f"e{e}") for i, r, e in zip(images, raters, emotions, strict=True)]
        _write(tmp_path, f"part-{part}", rows)

    ours, plain = _both(tmp_path)

    assert ours == plain and ours[1] > 0
