"""Krippendorff's alpha (interval and ordinal) from per-item sufficient statistics (dbt's int_agreement_item_stats)
and its item bootstrap, which dbt's agreement_bootstrap model runs.

Both alphas are sums over items of per-item quantities, so a bootstrap resample is a weighted sum: each pattern of
statistics counted as often as the resample drew it, one compiled pass per block of resamples, instead of
re-running alpha on a resampled matrix.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import duckdb
import numpy as np
import polars as pl

VALUES = 8
COUNT_COLUMNS = [f"c{v}" for v in range(VALUES)]
GROUP = ["collection", "scale"]
KEY = [*GROUP, "emotion_id"]
_POINT_CHUNK_ROWS = 1_000_000
_PATTERN = ["emotion_id", "m", "s1", "s2", *COUNT_COLUMNS]
_PAIR_LOW, _PAIR_HIGH = np.triu_indices(VALUES, k=1)
_RESAMPLE_CELLS = 10_000_000
# Resamples the alpha bootstrap's pass adds side by side (64 and 128 measured alike at 100k and 1M images).
_RESAMPLE_BLOCK = 64


def _features(stats: pl.DataFrame) -> np.ndarray:
    """Per-row terms whose (weighted) column sums determine both alphas: n, T1, T2, the within-item
    disagreement, the value counts, and the off-diagonal coincidences."""
    m = stats["m"].to_numpy().astype(np.float64)
    s1 = stats["s1"].to_numpy().astype(np.float64)
    s2 = stats["s2"].to_numpy().astype(np.float64)
    counts = stats.select(COUNT_COLUMNS).to_numpy().astype(np.float64)
    within = (m * s2 - s1 * s1) / (m - 1)
    coincidences = counts[:, _PAIR_LOW] * counts[:, _PAIR_HIGH] / (m - 1)[:, None]
    return np.column_stack([m, s1, s2, within, counts, coincidences])


def _one_minus(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, 1 - observed / expected, np.nan)


def _alphas(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval and ordinal alpha from feature sums (..., features); NaN where there is no expected disagreement."""
    n, t1, t2, within = (sums[..., k] for k in range(4))
    counts = sums[..., 4 : 4 + VALUES]
    coincidences = sums[..., 4 + VALUES :]
    interval = _one_minus((n - 1) * within, n * t2 - t1 * t1)
    low, high = counts[..., _PAIR_LOW], counts[..., _PAIR_HIGH]
    cumulative = np.cumsum(counts, axis=-1)
    between = cumulative[..., _PAIR_HIGH] - cumulative[..., _PAIR_LOW] + low
    delta = (between - (low + high) / 2) ** 2
    total = counts.sum(axis=-1)
    ordinal = _one_minus((total - 1) * (coincidences * delta).sum(axis=-1), (low * high * delta).sum(axis=-1))
    return interval, ordinal


def _point(stats: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Feature sums a chunk of items at a time: at a million images one group's feature matrix alone would be
    several GB, while the sums are a few dozen numbers."""
    pairable = stats.filter(pl.col("m") >= 2)
    starts = range(0, max(pairable.height, 1), _POINT_CHUNK_ROWS)
    return _alphas(
        np.sum([_features(pairable.slice(start, _POINT_CHUNK_ROWS)).sum(axis=0) for start in starts], axis=0)
    )


def alpha_interval(stats: pl.DataFrame) -> float:
    """Interval alpha of one emotion's item statistics."""
    return float(_point(stats)[0])


def alpha_ordinal(stats: pl.DataFrame) -> float:
    """Ordinal alpha of one emotion's item statistics (Krippendorff's rank-mass metric over the 0..7 scale)."""
    return float(_point(stats)[1])


def resample_indices(n_images: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Image indices of the resamples, in chunks (resamples × n_images) that bound memory; resample r is the r-th
    draw of one generator whatever the chunk size, so any other implementation can replay it. A small group's
    resamples come in one chunk: the fairness report's many small groups paid per chunk more than per draw.

    The generator's draws under 2**32 are the same numbers as uint32 and as int64 (numpy draws both with the same
    32-bit method), so they come as uint32: half the memory. A chunk is one call, which draws the same numbers as a
    call per resample (numpy takes each value from the generator in turn, keeping nothing between calls), without
    a call's overhead per resample: the fairness report's small groups made a quarter million calls."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _RESAMPLE_CELLS // max(n_images, 1)))
    dtype = np.uint32 if n_images <= 2**32 else np.int64
    for start in range(0, resamples, chunk):
        yield rng.integers(0, n_images, (min(chunk, resamples - start), n_images), dtype=dtype)


def draw_counts(indices: np.ndarray, n_images: int) -> np.ndarray:
    """How often each image was drawn in each resample of `indices` (resamples x images of draws), in bytes unless
    an image was drawn 255 times or more in one resample."""
    from emonet_assets.lib.consensus.draw_kernel import count_draws

    indices = np.ascontiguousarray(indices)
    counts = np.zeros((indices.shape[0], n_images), np.uint8)
    if not count_draws(indices, counts):
        counts = np.zeros((indices.shape[0], n_images), np.int64)
        count_draws(indices, counts)
    return counts


def image_draws(n_images: int, resamples: int, seed: int, block: int) -> Iterator[np.ndarray]:
    """`resample_indices`' resamples as draw counts, images x resamples, `block` resamples at a time (the last
    block may be narrower)."""
    pending: list[np.ndarray] = []
    for indices in resample_indices(n_images, resamples, seed):
        pending.append(draw_counts(indices, n_images))
        held = sum(len(counts) for counts in pending)
        if held >= block:
            counts = np.concatenate(pending)
            whole = held - held % block
            for start in range(0, whole, block):
                yield np.ascontiguousarray(counts[start : start + block].T)
            pending = [counts[whole:]]
    if sum(len(counts) for counts in pending):
        yield np.ascontiguousarray(np.concatenate(pending).T)


def _relation(stats: pl.DataFrame | duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """Item statistics as DuckDB reads them: a relation stays where it is (dbt's catalog), a frame is wrapped."""
    return duckdb.connect().from_arrow(stats.to_arrow()) if isinstance(stats, pl.DataFrame) else stats


class _Group(NamedTuple):
    """One (collection, scale)'s pairable items: the distinct statistics (patterns, numbered in the order of
    `_PATTERN`, emotion first) and, per item, its pattern and its image (numbered in the order of the image ids)."""

    collection: object
    scale: object
    patterns: pl.DataFrame
    pattern: np.ndarray
    image: np.ndarray


def _load_kernels() -> None:
    """numba's import and the first load of a cached kernel, which starts LLVM: 0.7 s on one core."""
    from emonet_assets.lib.consensus.draw_kernel import items_by_image

    items_by_image(np.zeros(1, np.int64), np.zeros(1, np.int64), np.array([0, 1], np.int64))


def _groups(stats: duckdb.DuckDBPyRelation) -> Iterator[_Group]:
    """Each (collection, scale)'s group, numbered by DuckDB so that only two integers per item reach Python: at a
    million images the items' statistics alone are 40M rows. The kernels load meanwhile: DuckDB leaves the GIL."""
    pattern = ", ".join(_PATTERN)
    numbered = (
        f"SELECT {pattern}, row_number() OVER (ORDER BY {pattern}) - 1 AS pattern FROM group_items GROUP BY {pattern}"
    )
    pairable = stats.filter(duckdb.ColumnExpression("m") >= duckdb.ConstantExpression(2))
    loading = ThreadPoolExecutor(1)
    kernels = loading.submit(_load_kernels)
    loading.shutdown(wait=False)
    for collection, scale in pairable.aggregate(", ".join(GROUP)).order(", ".join(GROUP)).fetchall():
        group = pairable.filter(
            (duckdb.ColumnExpression("collection") == duckdb.ConstantExpression(collection))
            & (duckdb.ColumnExpression("scale") == duckdb.ConstantExpression(scale))
        )
        patterns = group.query("group_items", f"{numbered} ORDER BY pattern").pl().drop("pattern")
        items = group.query(
            "group_items",
            f"""WITH patterns AS ({numbered}),
            images AS (SELECT image_id, row_number() OVER (ORDER BY image_id) - 1 AS image FROM group_items GROUP BY 1)
            SELECT pattern::INTEGER AS pattern, image::INTEGER AS image
            FROM group_items JOIN patterns USING ({pattern}) JOIN images USING (image_id)""",
        ).fetchnumpy()
        kernels.result()
        yield _Group(collection, scale, patterns, items["pattern"], items["image"])


def _bootstrap_group(group: _Group, resamples: int, seed: int):
    """Point alphas, item counts and per-resample alphas of every emotion of one (collection, scale).

    Items with identical statistics contribute identical features, so items are collapsed to distinct patterns
    (a few hundred per emotion) and a resample only needs how often each pattern was drawn: the items listed by
    image, so that `draw_kernel.pattern_totals` streams through them and adds into the small pattern totals.
    """
    import numba

    from emonet_assets.lib.consensus.draw_kernel import items_by_image, pattern_totals

    patterns = group.patterns
    n_images = int(group.image.max()) + 1
    per_image = np.bincount(group.image, minlength=n_images)
    image_starts = np.r_[0, np.cumsum(per_image)].astype(np.int64)
    item_patterns = items_by_image(group.image.astype(np.int64), group.pattern.astype(np.int64), image_starts)
    # A total is at most the draws (one per image) times the most items an image has.
    width = np.int32 if n_images * int(per_image.max()) < np.iinfo(np.int32).max else np.int64
    features = _features(patterns)
    bounds = (
        patterns.with_row_index("pattern")
        .group_by("emotion_id", maintain_order=True)
        .agg(start=pl.col("pattern").min(), stop=pl.col("pattern").max() + 1)
    )
    slices = [slice(start, stop) for start, stop in zip(bounds["start"], bounds["stop"], strict=True)]
    multiplicity = np.bincount(group.pattern, minlength=patterns.height).astype(np.float64)
    point = [_alphas(multiplicity[s] @ features[s]) for s in slices]
    draws = np.empty((len(slices), 2, resamples))
    done = 0
    for drawn in image_draws(n_images, resamples, seed, _RESAMPLE_BLOCK):
        partial = np.zeros((numba.get_num_threads(), patterns.height, drawn.shape[1]), width)
        pattern_totals(drawn, image_starts, item_patterns, partial)
        totals = partial.sum(axis=0).astype(np.float64)
        for e, s in enumerate(slices):
            draws[e, :, done : done + drawn.shape[1]] = _alphas(totals[s].T @ features[s])
        done += drawn.shape[1]
    items_per_emotion = [int(multiplicity[s].sum()) for s in slices]
    return bounds["emotion_id"].to_list(), point, items_per_emotion, draws


def alpha_draws(stats: pl.DataFrame | duckdb.DuckDBPyRelation, resamples: int = 1000, seed: int = 42) -> pl.DataFrame:
    """Every resample's alphas, long: collection, scale, emotion_id, resample, alpha_interval, alpha_ordinal."""
    frames = []
    for group in _groups(_relation(stats)):
        emotions, _, _, draws = _bootstrap_group(group, resamples, seed)
        collection, scale = group.collection, group.scale
        frames.append(
            pl.DataFrame(
                {
                    "emotion_id": np.repeat(emotions, resamples),
                    "resample": np.tile(np.arange(resamples), len(emotions)),
                    "alpha_interval": draws[:, 0, :].ravel(),
                    "alpha_ordinal": draws[:, 1, :].ravel(),
                }
            ).select(pl.lit(collection).alias("collection"), pl.lit(scale).alias("scale"), pl.all())
        )
    return pl.concat(frames).sort(*KEY, "resample")


def _percentile_interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    finite = draws[~np.isnan(draws)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap_alpha(
    stats: pl.DataFrame | duckdb.DuckDBPyRelation, resamples: int = 1000, seed: int = 42, level: float = 0.95
) -> pl.DataFrame:
    """Point alphas with percentile intervals from resampling images, one row per (collection, scale, emotion).

    All emotions of a collection share each resample's images, as re-rating a resampled image set would. `stats`
    (int_agreement_item_stats' columns) may be a relation, which is read in DuckDB, never whole into Python.
    """
    relation = _relation(stats)
    rows = []
    for group in _groups(relation):
        emotions, point, items, draws = _bootstrap_group(group, resamples, seed)
        collection, scale = group.collection, group.scale
        for e, emotion in enumerate(emotions):
            interval_ci = _percentile_interval(draws[e, 0], level)
            ordinal_ci = _percentile_interval(draws[e, 1], level)
            rows.append(
                {
                    "collection": collection,
                    "scale": scale,
                    "emotion_id": emotion,
                    "alpha_interval": float(point[e][0]),
                    "alpha_ordinal": float(point[e][1]),
                    "alpha_interval_ci_low": interval_ci[0],
                    "alpha_interval_ci_high": interval_ci[1],
                    "alpha_ordinal_ci_low": ordinal_ci[0],
                    "alpha_ordinal_ci_high": ordinal_ci[1],
                    "bootstrap_items": items[e],
                    "resamples": resamples,
                }
            )
    schema = {
        **relation.project(", ".join(KEY)).limit(0).pl().schema,
        **{
            name: pl.Float64
            for name in (
                "alpha_interval",
                "alpha_ordinal",
                "alpha_interval_ci_low",
                "alpha_interval_ci_high",
                "alpha_ordinal_ci_low",
                "alpha_ordinal_ci_high",
            )
        },
        "bootstrap_items": pl.Int64,
        "resamples": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row").sort(KEY)


def item_statistics(ratings: pl.DataFrame, keys: Sequence[str] = KEY) -> pl.DataFrame:
    """dbt's int_agreement_item_stats from ratings in Python, for ratings dbt does not hold (a rollup's levels): per
    item (`keys` and image_id) rated at least twice, the number of ratings m, their sum s1 and sum of squares s2,
    and the count of each value."""
    value = pl.col("value").cast(pl.Int64)
    return (
        ratings.group_by([*keys, "image_id"])
        .agg(
            m=pl.len().cast(pl.Int64),
            s1=value.sum(),
            s2=(value * value).sum(),
            **{c: (value == v).sum().cast(pl.Int64) for v, c in enumerate(COUNT_COLUMNS)},
        )
        .filter(pl.col("m") >= 2)
        .sort([*keys, "image_id"])
    )


def reliability_matrix(ratings: pl.DataFrame, emotion_id: str, image_ids: Sequence[str] | None = None) -> np.ndarray:
    """Raters × images with NaN where missing, the `krippendorff` package's input; columns follow `image_ids`
    when given (images nobody rated become all-NaN columns), else the sorted rated images."""
    rated = ratings.filter(pl.col("emotion_id") == emotion_id)
    annotators = rated.select(pl.col("annotator").unique().sort()).with_row_index("row")
    images = pl.Series("image_id", image_ids) if image_ids is not None else rated["image_id"].unique().sort()
    columns = images.to_frame().with_row_index("column")
    cells = rated.join(annotators, on="annotator").join(columns, on="image_id")
    matrix = np.full((annotators.height, columns.height), np.nan)
    matrix[cells["row"].to_numpy(), cells["column"].to_numpy()] = cells["value"].to_numpy()
    return matrix


def _krippendorff(matrix: np.ndarray, level_of_measurement: str) -> float:
    import krippendorff

    try:
        return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level_of_measurement))
    except ValueError:
        return float("nan")


def naive_bootstrap_alpha(
    ratings: pl.DataFrame, resamples: int, seed: int = 42, level_of_measurement: str = "interval"
) -> dict[str, list[float]]:
    """The baseline the closed form replaces: `krippendorff.alpha` on each resampled reliability matrix, per
    emotion, for ratings (image_id, annotator, emotion_id, value) of one collection and scale; it replays
    `bootstrap_alpha`'s resamples over the images with a pairable item."""
    pairs = ratings.group_by("emotion_id", "image_id").len()
    images = pairs.filter(pl.col("len") >= 2)["image_id"].unique().sort()
    emotions = ratings["emotion_id"].unique().sort().to_list()
    matrices = {emotion: reliability_matrix(ratings, emotion, images) for emotion in emotions}
    draws: dict[str, list[float]] = {emotion: [] for emotion in emotions}
    for chunk in resample_indices(len(images), resamples, seed):
        for indices in chunk:
            for emotion, matrix in matrices.items():
                draws[emotion].append(_krippendorff(matrix[:, indices], level_of_measurement))
    return draws
