import krippendorff
import numpy as np
import polars as pl
import pytest

from emonet_assets.lib.consensus import agreement
from emonet_assets.lib.consensus.agreement import (
    alpha_draws,
    alpha_interval,
    alpha_ordinal,
    bootstrap_alpha,
    draw_counts,
    item_statistics,
    naive_bootstrap_alpha,
    reliability_matrix,
    resample_indices,
)

COLUMNS = ["collection", "scale", "emotion_id", "image_id", "annotator", "value"]


def _ratings(seed: int, raters: int, images: int = 40, missing: float = 0.45, collection: str = "c") -> pl.DataFrame:
    """Three emotions: correlated 0..7 intensities, binary, and one using only 0, 3 and 7 (so most values never
    occur); with this much missing data some items get a single rating and some images none for an emotion."""
    rng = np.random.default_rng(seed)
    rows = []
    for image in range(images):
        truth = rng.integers(0, 8)
        for annotator in range(raters):
            candidates = {
                "intensity": int(np.clip(truth + rng.integers(-2, 3), 0, 7)),
                "binary": int(truth >= 4) if rng.random() < 0.8 else int(rng.integers(0, 2)),
                "sparse": int(rng.choice([0, 3, 7])),
            }
            for emotion, value in candidates.items():
                if rng.random() >= missing:
                    rows.append((collection, "intensity", emotion, f"img-{image:03d}", f"a{annotator}", value))
    return pl.DataFrame(rows, schema=COLUMNS, orient="row")


@pytest.mark.parametrize("seed, raters", [(0, 3), (1, 4), (2, 5), (3, 6), (4, 4)])
def test_closed_forms_equal_krippendorff(seed, raters):
    ratings = _ratings(seed, raters)
    per_item = ratings.group_by("emotion_id", "image_id").len()
    assert (per_item["len"] == 1).any()
    stats = item_statistics(ratings)
    for emotion in ["intensity", "binary", "sparse"]:
        matrix = reliability_matrix(ratings, emotion)
        one = stats.filter(pl.col("emotion_id") == emotion)
        for level, ours in [("interval", alpha_interval(one)), ("ordinal", alpha_ordinal(one))]:
            expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)
            assert ours == pytest.approx(expected, abs=1e-9), (emotion, level)


def test_alpha_summed_a_few_items_at_a_time_equals_krippendorff(monkeypatch):
    """At scale the point estimate sums item features in chunks; chunks of 7 items must not change it."""
    monkeypatch.setattr("emonet_assets.lib.consensus.agreement._POINT_CHUNK_ROWS", 7)
    ratings = _ratings(5, 4, images=60)
    one = item_statistics(ratings).filter(pl.col("emotion_id") == "intensity")
    assert one.height > 7 * 3
    matrix = reliability_matrix(ratings, "intensity")
    for level, ours in [("interval", alpha_interval(one)), ("ordinal", alpha_ordinal(one))]:
        expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)
        assert ours == pytest.approx(expected, abs=1e-9), level


def test_item_stats_are_the_sufficient_statistics_of_pairable_items():
    ratings = pl.DataFrame(
        [
            ("c", "intensity", "joy", "i1", "a", 2),
            ("c", "intensity", "joy", "i1", "b", 5),
            ("c", "intensity", "joy", "i1", "c", 5),
            ("c", "intensity", "joy", "i2", "a", 1),
        ],
        schema=COLUMNS,
        orient="row",
    )
    stats = item_statistics(ratings)
    assert stats.height == 1
    row = stats.row(0, named=True)
    assert (row["image_id"], row["m"], row["s1"], row["s2"]) == ("i1", 3, 12.0, 54.0)
    assert [row[f"c{v}"] for v in range(8)] == [0, 0, 1, 0, 0, 2, 0, 0]


def test_reliability_matrix_is_raters_by_images_with_nan_for_missing():
    ratings = pl.DataFrame(
        [("c", "s", "joy", "i2", "b", 3), ("c", "s", "joy", "i1", "a", 1), ("c", "s", "fear", "i1", "b", 6)],
        schema=COLUMNS,
        orient="row",
    )
    matrix = reliability_matrix(ratings, "joy", image_ids=["i1", "i2", "i3"])
    np.testing.assert_array_equal(matrix, [[1, np.nan, np.nan], [np.nan, 3, np.nan]])


def test_bootstrap_draws_equal_krippendorff_on_the_resampled_matrices():
    ratings = _ratings(seed=11, raters=4, images=25)
    stats = item_statistics(ratings)
    draws = alpha_draws(stats, resamples=30, seed=5)
    for level in ["interval", "ordinal"]:
        bare = ratings.select("image_id", "annotator", "emotion_id", "value")
        naive = naive_bootstrap_alpha(bare, resamples=30, seed=5, level_of_measurement=level)
        for emotion, expected in naive.items():
            ours = draws.filter(pl.col("emotion_id") == emotion).sort("resample")[f"alpha_{level}"].to_numpy()
            np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-9, err_msg=f"{emotion} {level}")


def test_draw_counts_are_each_resamples_histogram_of_images():
    indices = np.concatenate(list(resample_indices(37, 300, 5)))
    counts = draw_counts(indices, 40)
    assert counts.dtype == np.uint8 and counts.shape == (300, 40)
    np.testing.assert_array_equal(counts, [np.bincount(drawn, minlength=40) for drawn in indices])
    assert (counts[:, 37:] == 0).all() and (counts.sum(axis=1) == 37).all()


@pytest.mark.parametrize(
    ("parts", "width", "counted"), [(1, np.int32, np.uint8), (2, np.int64, np.int64), (3, np.int32, np.int64)]
)
def test_pattern_totals_count_each_drawn_images_items_however_the_images_are_shared(parts, width, counted):
    from emonet_assets.lib.consensus.draw_kernel import items_by_image, pattern_totals

    rng = np.random.default_rng(parts)
    n_images, n_patterns = 37, 11
    items = rng.integers(0, 5, n_images)  # an image with no items too
    image_starts = np.r_[0, np.cumsum(items)].astype(np.int64)
    item_image = rng.permutation(np.repeat(np.arange(n_images), items))
    patterns = rng.integers(0, n_patterns, int(items.sum())).astype(np.int64)
    item_patterns = items_by_image(item_image, patterns, image_starts)
    for image in range(n_images):
        listed = item_patterns[image_starts[image] : image_starts[image + 1]]
        np.testing.assert_array_equal(listed, patterns[item_image == image])
    indices = rng.integers(0, n_images, (7, n_images)).astype(np.int64)
    expected = np.zeros((n_patterns, 7))
    for r, drawn in enumerate(indices):
        for image in drawn:
            np.add.at(expected[:, r], patterns[item_image == image], 1)
    partial = np.zeros((parts, n_patterns, 7), width)
    drawn = np.ascontiguousarray(draw_counts(indices, n_images).T, dtype=counted)  # int64 past 254 draws of an image
    pattern_totals(drawn, image_starts, item_patterns, partial)
    np.testing.assert_array_equal(partial.sum(axis=0), expected)
    assert expected.sum() > 0


def test_image_draws_are_the_resamples_draw_counts_a_block_at_a_time(monkeypatch):
    """Blocks cut across the chunks resample_indices bounds memory with, and the last block is the remainder."""
    monkeypatch.setattr(agreement, "_RESAMPLE_CELLS", 3 * 50)
    counts = np.concatenate([draw_counts(i, 50) for i in resample_indices(50, 23, 4)])
    blocks = list(agreement.image_draws(50, 23, 4, block=8))
    assert [b.shape for b in blocks] == [(50, 8), (50, 8), (50, 7)]
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), counts.T)


def test_resample_is_a_replayable_draw_of_the_seeded_generator():
    ratings = _ratings(seed=12, raters=4, images=20)
    stats = item_statistics(ratings)
    images = stats["image_id"].unique().sort().to_list()
    first = np.random.default_rng(9).integers(0, len(images), len(images))
    np.testing.assert_array_equal(next(resample_indices(len(images), 3, 9))[0], first)
    matrix = reliability_matrix(ratings, "intensity", image_ids=images)[:, first]
    draw = alpha_draws(stats, resamples=3, seed=9).filter(pl.col("emotion_id") == "intensity", pl.col("resample") == 0)
    assert draw["alpha_interval"].item() == pytest.approx(krippendorff.alpha(reliability_data=matrix), abs=1e-9)


@pytest.mark.parametrize("n_images", [1, 7, 50, 333])
def test_resample_indices_are_one_call_per_resample_whatever_the_chunking(monkeypatch, n_images):
    """The replayable definition: resample r is the generator's r-th call for n_images integers (int64), for odd
    and even sizes, in one chunk or several."""
    whole = list(resample_indices(n_images, 250, 3))
    assert [chunk.shape for chunk in whole] == [(250, n_images)]
    monkeypatch.setattr(agreement, "_RESAMPLE_CELLS", 100 * n_images)
    chunks = list(resample_indices(n_images, 250, 3))
    assert [chunk.shape for chunk in chunks] == [(100, n_images), (100, n_images), (50, n_images)]
    rng = np.random.default_rng(3)
    per_resample = [rng.integers(0, n_images, n_images) for _ in range(250)]
    np.testing.assert_array_equal(np.concatenate(chunks), per_resample)
    np.testing.assert_array_equal(whole[0], per_resample)
    monkeypatch.undo()
    assert max(chunk.shape[0] for chunk in resample_indices(1_000_000, 30, 3)) == 10


def _groups_in_polars(stats: pl.DataFrame):
    """The grouping as it was, the whole statistics in polars: patterns and images by dense rank."""
    pairable = stats.filter(pl.col("m") >= 2)
    for collection, scale in pairable.select("collection", "scale").unique().sort("collection", "scale").iter_rows():
        group = pairable.filter(pl.col("collection") == collection, pl.col("scale") == scale).select(
            *agreement._PATTERN,
            image=pl.col("image_id").rank("dense").cast(pl.Int64) - 1,
            pattern=pl.struct(agreement._PATTERN).rank("dense").cast(pl.Int64) - 1,
        )
        yield collection, scale, group


def test_groups_numbered_by_duckdb_equal_the_polars_ranks():
    """Patterns, per-item pattern and image numbers as the polars ranks gave them, item for item: two collections,
    string ids, single-rated items left out."""
    ratings = pl.concat([_ratings(31, 4, images=60, missing=0.3), _ratings(32, 5, 50, 0.3, "other")])
    stats = item_statistics(ratings)
    stats = pl.concat([stats, stats.head(1).with_columns(image_id=pl.lit("img-999"), m=pl.lit(1, pl.Int64))])
    ours = list(agreement._groups(agreement._relation(stats)))
    expected = list(_groups_in_polars(stats))
    assert (
        [(g.collection, g.scale) for g in ours]
        == [(c, s) for c, s, _ in expected]
        == [
            ("c", "intensity"),
            ("other", "intensity"),
        ]
    )
    for group, (_, _, reference) in zip(ours, expected, strict=True):
        patterns = reference.unique("pattern").sort("pattern").select(agreement._PATTERN)
        assert group.patterns.equals(patterns)
        numbered = pl.DataFrame({"pattern": group.pattern.astype(np.int64), "image": group.image.astype(np.int64)})
        key = ["image", "pattern"]
        assert numbered.select(key).sort(key).equals(reference.select(key).sort(key))
        assert group.pattern.size == reference.height and group.image.max() + 1 == reference["image"].n_unique()
    assert sum(group.pattern.size for group in ours) == stats.height - 1


def test_bootstrap_is_deterministic_and_its_interval_brackets_the_estimate():
    stats = item_statistics(pl.concat([_ratings(21, 4, images=80, missing=0.1), _ratings(22, 5, 60, 0.1, "other")]))
    first = bootstrap_alpha(stats, resamples=200, seed=1)
    assert first.equals(bootstrap_alpha(stats, resamples=200, seed=1))
    assert not first.equals(bootstrap_alpha(stats, resamples=200, seed=2))
    assert first.height == 6
    assert first["resamples"].to_list() == [200] * 6
    items = stats.group_by("collection", "emotion_id").len()
    joined = first.join(items, on=["collection", "emotion_id"])
    assert (joined["bootstrap_items"] == joined["len"]).all()
    for level in ["interval", "ordinal"]:
        point = first[f"alpha_{level}"]
        assert (first[f"alpha_{level}_ci_low"] < point).all()
        assert (point < first[f"alpha_{level}_ci_high"]).all()
    one = stats.filter(pl.col("collection") == "other", pl.col("emotion_id") == "sparse")
    row = first.filter(pl.col("collection") == "other", pl.col("emotion_id") == "sparse")
    assert row["alpha_interval"].item() == pytest.approx(alpha_interval(one), abs=1e-12)
    assert row["alpha_ordinal"].item() == pytest.approx(alpha_ordinal(one), abs=1e-12)


def test_interval_narrows_with_a_lower_level():
    stats = item_statistics(_ratings(31, 4, images=80, missing=0.1))
    wide = bootstrap_alpha(stats, resamples=300, level=0.95)
    narrow = bootstrap_alpha(stats, resamples=300, level=0.5)
    assert (narrow["alpha_interval_ci_high"] - narrow["alpha_interval_ci_low"]).max() < (
        wide["alpha_interval_ci_high"] - wide["alpha_interval_ci_low"]
    ).min()


def test_degenerate_data_gives_nan_not_an_exception():
    constant = item_statistics(
        pl.DataFrame(
            [("c", "s", "joy", f"i{k}", a, 4) for k in range(5) for a in "ab"]
            + [("c", "s", "fear", "i0", "a", 2), ("c", "s", "fear", "i1", "a", 5)],
            schema=COLUMNS,
            orient="row",
        )
    )
    assert np.isnan(alpha_interval(constant.filter(pl.col("emotion_id") == "joy")))
    assert np.isnan(alpha_ordinal(constant.filter(pl.col("emotion_id") == "joy")))
    assert np.isnan(alpha_interval(constant.filter(pl.col("emotion_id") == "fear")))
    result = bootstrap_alpha(constant, resamples=20)
    assert result["emotion_id"].to_list() == ["joy"]
    assert result.select(pl.exclude("collection", "scale", "emotion_id", "bootstrap_items", "resamples")).row(0) == (
        pytest.approx((np.nan,) * 6, nan_ok=True)
    )
    assert bootstrap_alpha(constant.clear(), resamples=20).height == 0
