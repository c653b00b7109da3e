"""Model performance, data balance and rater agreement per demographic group, their disparities, and a gate.

An image is one row with its emotions as columns, so each metric is `evaluation`'s per-emotion metric on a group's
images, averaged over emotions: the values fairlearn's `MetricFrame` gives (`metric_frame`), computed beside the
group's resamples instead of by a second pass that also scores the whole test set once per grouping. Confidence
intervals resample a group's images with `agreement.resample_indices`, the same unit: an image's emotions are rated
together, so resampling (image, emotion) pairs would understate the spread.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:  # fairlearn brings scikit-learn and pandas: seconds, paid only by the report itself
    import duckdb
    from fairlearn.metrics import MetricFrame

from emonet_assets.lib.consensus.agreement import draw_counts, resample_indices
from emonet_assets.lib.model.evaluation import CI_LEVEL, SpearmanColumns, spearman_draws, to_scale
from emonet_assets.lib.shared.catalog import quote_literal, read_columns, render_sql
from emonet_assets.lib.shared.rules import GENERATED_INTENSITY, GENERATED_INTENSITY_SQL, SPLITS
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table

ATTRIBUTES = ("age", "gender", "ethnicity_group")
MISSING = "missing"
SEPARATOR = " x "
# Gaps equal to this many decimals are a tie (the report prints three).
GAP_DECIMALS = 9
HIGHER_IS_BETTER = {"mean_spearman": True, "mean_mae": False, "mean_presence_f1": True}
SINGLE_GROUP = "single group: no comparison"
TOO_FEW_RANKED = "fewer than two groups large enough to rank: no comparison"
GROUP_SCHEMA = {
    "attribute": pl.String,
    "group": pl.String,
    "n_images": pl.Int64,
    "metric": pl.String,
    "value": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "too_small": pl.Boolean,
}
DISPARITY_SCHEMA = {
    "attribute": pl.String,
    "metric": pl.String,
    "best_group": pl.String,
    "worst_group": pl.String,
    "best_value": pl.Float64,
    "worst_value": pl.Float64,
    "difference": pl.Float64,
    "ratio": pl.Float64,
    "n_groups_ranked": pl.Int64,
    "groups_too_small": pl.List(pl.String),
    "note": pl.String,
}
BALANCE_SCHEMA = {
    "attribute": pl.String,
    "group": pl.String,
    "n_generated": pl.Int64,
    "qc_passed": pl.Int64,
    "qc_pass_share": pl.Float64,
    **{split: pl.Int64 for split in SPLITS},
}
EMOTION_GROUP_SCHEMA = {"emotion_id": pl.String, "group": pl.String, "n_images": pl.Int64, "spearman": pl.Float64}
GATE_SCHEMA = {"metric": pl.String, "max_difference": pl.Float64, "passed": pl.Boolean, "message": pl.String}


def _nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


class _Cells(NamedTuple):
    """The test items as images × emotions matrices (NaN where a pair is absent), with each image's groups."""

    groups: pl.DataFrame
    emotions: list[str]
    truth: np.ndarray
    predicted: np.ndarray
    present: np.ndarray


def _mean_mae(truth: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean over emotions of each emotion's MAE, per row of image weights (resamples × images)."""
    observed = ~np.isnan(truth)
    error = np.where(observed, np.abs(predicted - truth), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_emotion = (weights @ error) / (weights @ observed)
    return _nanmean(per_emotion, axis=1)


def _mean_f1(present: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean over emotions of presence F1 (predicted rounds to >= 1 vs consensus present), per row of image weights;
    an emotion called present on neither side is NaN, as sklearn's `zero_division=np.nan`."""
    observed = ~np.isnan(predicted)
    called = observed & (to_scale(np.nan_to_num(predicted)) >= 1)
    actual = observed & (present == 1)
    true_positive = weights @ (called & actual)
    denominator = 2 * true_positive + weights @ (called ^ actual)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_emotion = np.where(denominator > 0, 2 * true_positive / denominator, np.nan)
    return _nanmean(per_emotion, axis=1)


def _image_count(y_true: np.ndarray, y_pred: np.ndarray) -> int:
    return len(y_true)


def _mean_spearman(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(_nanmean(spearman_draws(y_pred, y_true, 0, 0)[0]))


def _mean_mae_metric(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(_mean_mae(y_true, y_pred, np.ones((1, len(y_true))))[0])


def _presence_f1_metric(present: np.ndarray):
    """MetricFrame only splits 1-D sample parameters, so each group's presence rows are looked up by image row."""

    def mean_presence_f1(y_true: np.ndarray, y_pred: np.ndarray, image: np.ndarray) -> float:
        return float(_mean_f1(present[image], y_pred, np.ones((1, len(image))))[0])

    return mean_presence_f1


def _demographics(demographics: pl.DataFrame, id_column: str, attributes: Sequence[str]) -> pl.DataFrame:
    table = demographics.select(pl.col("image_id").alias(id_column), *attributes).unique()
    repeated = table.filter(pl.col(id_column).is_duplicated())
    if repeated.height:
        raise ValueError(f"demographics: {repeated[id_column].n_unique()} images have conflicting values")
    return table


def _labelled(
    frame: pl.DataFrame, id_column: str, demographics: pl.DataFrame, attributes: Sequence[str]
) -> pl.DataFrame:
    """`frame` with each attribute as text, taken from its own columns where it has them and from `demographics`
    otherwise; an absent value becomes the explicit MISSING group so that it is counted, not dropped."""
    absent = [a for a in attributes if a not in frame.columns]
    if absent:
        frame = frame.join(
            _demographics(demographics, id_column, absent), on=id_column, how="left", maintain_order="left"
        )
    return frame.with_columns(pl.col(a).cast(pl.String).fill_null(MISSING) for a in attributes)


def _cells(
    predictions: pl.DataFrame, consensus: pl.DataFrame, demographics: pl.DataFrame, attributes: Sequence[str]
) -> _Cells:
    """Predictions define the evaluated images, so consensus may cover every split; an image is one row, the unit
    MetricFrame groups and the bootstrap resamples."""
    joined = (
        predictions.select("image_id", "emotion_id", pl.col("predicted").cast(pl.Float64).fill_nan(None))
        .join(
            consensus.select(
                "image_id", "emotion_id", pl.col("median_rating").cast(pl.Float64).fill_nan(None), "present"
            ),
            on=["image_id", "emotion_id"],
        )
        .drop_nulls(["predicted", "median_rating", "present"])
        .with_columns(
            row=pl.col("image_id").rank("dense").cast(pl.Int64) - 1,
            column=pl.col("emotion_id").rank("dense").cast(pl.Int64) - 1,
        )
    )
    images = joined.select("row", "image_id").unique().sort("row")
    emotions = joined.select("column", "emotion_id").unique().sort("column")
    row, column = joined["row"].to_numpy(), joined["column"].to_numpy()
    matrices = []
    for name in ("median_rating", "predicted", "present"):
        matrix = np.full((images.height, emotions.height), np.nan)
        matrix[row, column] = joined[name].cast(pl.Float64).to_numpy()
        matrices.append(matrix)
    groups = _labelled(images.drop("row"), "image_id", demographics, attributes)
    return _Cells(groups, emotions["emotion_id"].cast(pl.String).to_list(), *matrices)


def _metric_frame(cells: _Cells, attributes: Sequence[str]) -> MetricFrame:
    import pandas as pd
    from fairlearn.metrics import MetricFrame

    return MetricFrame(
        metrics={
            "n_images": _image_count,
            "mean_spearman": _mean_spearman,
            "mean_mae": _mean_mae_metric,
            "mean_presence_f1": _presence_f1_metric(cells.present),
        },
        y_true=cells.truth,
        y_pred=cells.predicted,
        sensitive_features=pd.DataFrame({a: cells.groups[a].to_list() for a in attributes}),
        sample_params={"mean_presence_f1": {"image": np.arange(cells.groups.height)}},
    )


def metric_frame(
    predictions: pl.DataFrame, consensus: pl.DataFrame, demographics: pl.DataFrame, attributes: Sequence[str]
) -> MetricFrame:
    """fairlearn's MetricFrame (n_images and the three metrics) over the given attributes, their intersection when
    several, for its own difference/ratio/group_min; `group_metrics` adds image-level CIs and the size flag."""
    cells = _cells(predictions, consensus, demographics, attributes)
    if cells.groups.is_empty():
        raise ValueError("no predictions joined to consensus: nothing to group")
    return _metric_frame(cells, attributes)


def _percentile(draws: np.ndarray) -> tuple[float, float]:
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [(1 - CI_LEVEL) / 2, (1 + CI_LEVEL) / 2])
    return float(low), float(high)


def _values_and_intervals(
    cells: _Cells, rows: np.ndarray, resamples: int, seed: int
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Each metric of the group's images, as MetricFrame computes it (`metric_frame`, the tests' reference), and its
    percentile CI from resampling the images (none when `resamples` is 0). The value and every draw share one
    `SpearmanColumns`, and every metric sees the same draws, those `evaluation.spearman_draws` makes with this seed,
    drawn once."""
    truth, predicted, present = cells.truth[rows], cells.predicted[rows], cells.present[rows]
    columns = SpearmanColumns.of(predicted, truth)
    ones = np.ones((1, rows.size), np.uint8)
    values = {
        "mean_spearman": float(_nanmean(columns.spearman(ones)[:, 0])),
        "mean_mae": float(_mean_mae(truth, predicted, ones.astype(np.float64))[0]),
        "mean_presence_f1": float(_mean_f1(present, predicted, ones.astype(np.float64))[0]),
    }
    if not resamples:
        return values, {}
    spearman, mae, f1 = [], [], []
    for indices in resample_indices(rows.size, resamples, seed):
        counts = draw_counts(indices, rows.size)
        spearman.append(_nanmean(columns.spearman(counts), axis=0))
        weights = counts.astype(np.float64)
        mae.append(_mean_mae(truth, predicted, weights))
        f1.append(_mean_f1(present, predicted, weights))
    return values, {
        metric: _percentile(np.concatenate(draws))
        for metric, draws in zip(HIGHER_IS_BETTER, (spearman, mae, f1), strict=True)
    }


def _combinations(attributes: Sequence[str]) -> list[tuple[str, ...]]:
    return [c for k in range(1, len(attributes) + 1) for c in itertools.combinations(attributes, k)]


def _rows_by_group(cells: _Cells, attributes: Sequence[str]) -> dict[tuple[str, ...], np.ndarray]:
    indexed = cells.groups.with_row_index("row").group_by(attributes).agg("row")
    return {key[:-1]: np.asarray(key[-1], dtype=np.int64) for key in indexed.select(*attributes, "row").rows()}


def group_metrics(
    predictions: pl.DataFrame,
    consensus: pl.DataFrame,
    demographics: pl.DataFrame,
    attributes: Sequence[str] = ATTRIBUTES,
    min_group_size: int = 20,
    resamples: int = 1000,
    seed: int = 42,
) -> pl.DataFrame:
    """Long table (attribute, group, n_images, metric, value, ci_low, ci_high, too_small) for every attribute and
    every intersection of them, groups in MetricFrame's order (sorted). Too-small groups keep their point value but
    get no CI: an interval from a handful of images would look more certain than it is."""
    cells = _cells(predictions, consensus, demographics, attributes)
    if cells.groups.is_empty():
        return pl.DataFrame(schema=GROUP_SCHEMA)
    records = []
    # The resamples' small matrix products alternate with the parallel Spearman kernel: BLAS threads left spinning
    # after each product took cores from the kernel (a third of its time on two cores).
    with threadpool_limits(limits=1, user_api="blas"):
        for combination in _combinations(attributes):
            by_group = _rows_by_group(cells, combination)
            for key in sorted(by_group):
                rows = by_group[key]
                too_small = rows.size < min_group_size
                values, intervals = _values_and_intervals(cells, rows, 0 if too_small else resamples, seed)
                label = (SEPARATOR.join(combination), SEPARATOR.join(key))
                for metric, value in values.items():
                    low, high = intervals.get(metric, (None, None))
                    records.append((*label, rows.size, metric, value, low, high, too_small))
    return pl.DataFrame(records, schema=GROUP_SCHEMA, orient="row")


def emotion_by_group(
    predictions: pl.DataFrame, consensus: pl.DataFrame, demographics: pl.DataFrame, attribute: str = "ethnicity_group"
) -> pl.DataFrame:
    """Spearman per (emotion, group), for the heatmap that shows which emotions a group's gap comes from."""
    cells = _cells(predictions, consensus, demographics, [attribute])
    records = []
    for (group,), rows in sorted(_rows_by_group(cells, [attribute]).items()):
        point = spearman_draws(cells.predicted[rows], cells.truth[rows], 0, 0)[0]
        counts = (~np.isnan(cells.truth[rows])).sum(axis=0)
        records += [(e, group, int(n), float(rho)) for e, n, rho in zip(cells.emotions, counts, point, strict=True)]
    return pl.DataFrame(records, schema=EMOTION_GROUP_SCHEMA, orient="row").sort("emotion_id", "group")


def _disparity(attribute: str, metric: str, part: pl.DataFrame) -> dict:
    too_small = part.filter(pl.col("too_small"))["group"].to_list()
    ranked = part.filter(~pl.col("too_small") & pl.col("value").is_finite()).sort("value", "group")
    row = {
        "attribute": attribute,
        "metric": metric,
        "n_groups_ranked": ranked.height,
        "groups_too_small": too_small,
        "note": SINGLE_GROUP if part.height == 1 else TOO_FEW_RANKED if ranked.height < 2 else None,
    }
    if ranked.height >= 2:
        low, high = ranked.row(0, named=True), ranked.row(-1, named=True)
        best, worst = (high, low) if HIGHER_IS_BETTER.get(metric, True) else (low, high)
        row |= {
            "best_group": best["group"],
            "worst_group": worst["group"],
            "best_value": best["value"],
            "worst_value": worst["value"],
            "difference": high["value"] - low["value"],
            "ratio": low["value"] / high["value"] if high["value"] > 0 else None,
        }
    return row


def disparities(group_table: pl.DataFrame) -> pl.DataFrame:
    """Per (attribute, metric): best and worst group, max - min and min / max over the groups large enough to rank
    (fairlearn's between-groups difference and ratio), and the groups left out for size."""
    rows = [
        _disparity(attribute, metric, part)
        for (attribute, metric), part in group_table.group_by("attribute", "metric", maintain_order=True)
    ]
    return pl.DataFrame(rows, schema=DISPARITY_SCHEMA)


def data_balance(
    splits: pl.DataFrame, qc: pl.DataFrame, demographics: pl.DataFrame, attributes: Sequence[str] = ATTRIBUTES
) -> pl.DataFrame:
    """Per attribute and group: generated images, how many passed QC and the share, and images per split; a group
    QC removes more often, or a split under-represents, shows here before it shows in the model."""
    generated = _labelled(qc.select("image_sha256", "passed"), "image_sha256", demographics, attributes)
    assigned = _labelled(splits, "image_sha256", demographics, attributes)
    frames = [pl.DataFrame(schema=BALANCE_SCHEMA)]
    for attribute in attributes:
        passing = generated.group_by(group=attribute).agg(
            n_generated=pl.len().cast(pl.Int64), qc_passed=pl.col("passed").sum().cast(pl.Int64)
        )
        per_split = assigned.group_by(group=attribute).agg(
            (pl.col("split") == split).sum().cast(pl.Int64).alias(split) for split in SPLITS
        )
        frames.append(
            passing.join(per_split, on="group", how="full", coalesce=True)
            .with_columns(pl.col("n_generated", "qc_passed", *SPLITS).fill_null(0))
            .select(
                pl.lit(attribute).alias("attribute"),
                "group",
                "n_generated",
                "qc_passed",
                pl.when(pl.col("n_generated") > 0)
                .then(pl.col("qc_passed") / pl.col("n_generated"))
                .alias("qc_pass_share"),
                *SPLITS,
            )
            .sort("group")
        )
    return pl.concat(frames)


def _interval_alpha(n: list[int], t1: list[int], t2: list[int], d: list[int], m: list[int]) -> float:
    """Interval alpha from integer sums per number of ratings m, in exact rational arithmetic: the within-item
    disagreement is d / (m - 1) summed over m, so no float sum over items (whose order would change its last
    bits) is made."""
    if not m:
        return float("nan")
    within = sum((Fraction(dm, mm - 1) for dm, mm in zip(d, m, strict=True)), Fraction(0))
    total, first, second = sum(n), sum(t1), sum(t2)
    expected = total * second - first * first
    return float(1 - (total - 1) * within / expected) if expected > 0 else float("nan")


def agreement_by_group(
    items: pl.DataFrame | str,
    demographics: pl.DataFrame,
    min_group_size: int = 20,
    attributes: Sequence[str] = ATTRIBUTES,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pl.DataFrame:
    """Interval alpha per (collection, scale, attribute, group), all emotions pooled, from dbt's per-item statistics
    (int_agreement_item_stats, a frame or a relation `con` reads, such as its Parquet files): if raters agree less
    on one group's faces, its consensus labels are noisier and the model's gap there is partly the labels'. Summed
    in DuckDB per image once, then per group with images as integer codes; only a few integers per group come
    back."""
    import duckdb

    con = con or duckdb.connect()
    if isinstance(items, pl.DataFrame):
        con.register("agreement_items", items.select("collection", "scale", "image_id", "m", "s1", "s2").to_arrow())
        items = "agreement_items"
    coded = _demographics(demographics, "image_id", attributes).with_row_index("image_code")
    con.execute(render_sql("fairness/agreement_per_image", items=items))
    records = []
    for attribute in attributes:
        groups = coded.select("image_code", "image_id", grp=pl.col(attribute).cast(pl.String))
        con.register("demographics", groups.to_arrow())
        sql = render_sql("fairness/agreement_sums", missing=quote_literal(MISSING))
        for collection, scale, group, n_images, n_items, m, n, t1, t2, d in con.execute(sql).fetchall():
            alpha = _interval_alpha(n or [], t1 or [], t2 or [], d or [], m or [])
            records.append((collection, scale, attribute, group, n_images, n_items, alpha, n_images < min_group_size))
    schema = {
        "collection": pl.String,
        "scale": pl.String,
        "attribute": pl.String,
        "group": pl.String,
        "n_images": pl.Int64,
        "n_items": pl.Int64,
        "alpha_interval": pl.Float64,
        "too_small": pl.Boolean,
    }
    return pl.DataFrame(records, schema=schema, orient="row").sort("collection", "scale", "attribute", "group")


def gate(disparity_table: pl.DataFrame, metric: str, max_difference: float) -> tuple[bool, str]:
    """Whether every attribute's between-group difference in `metric` stays within `max_difference`; the message
    names the widest gap's attribute, groups and numbers, and says so when nothing could be compared."""
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r}; choose from {list(HIGHER_IS_BETTER)}")
    # Equal gaps (an intersection inherits its attribute's gap; float sums may differ in the last bits) are named
    # by the attribute with the fewest parts: a gap that shows on gender alone is gender's.
    compared = (
        disparity_table.filter(pl.col("metric") == metric, pl.col("difference").is_not_null())
        .with_columns(
            _gap=pl.col("difference").round(GAP_DECIMALS),
            _parts=pl.col("attribute").str.count_matches(SEPARATOR, literal=True),
        )
        .sort("_gap", "_parts", "attribute", descending=[True, False, False])
        .drop("_gap", "_parts")
    )
    if compared.is_empty():
        return True, f"{metric}: no attribute has two groups large enough to compare; nothing to gate"
    widest = compared.row(0, named=True)
    over = compared.filter(pl.col("difference") > max_difference)
    gap = (
        f"{metric} differs by {widest['difference']:.3f} across {widest['attribute']} (best {widest['best_group']} "
        f"{widest['best_value']:.3f}, worst {widest['worst_group']} {widest['worst_value']:.3f})"
    )
    if over.is_empty():
        return True, f"fairness gate passed: {gap}, within {max_difference:.3f}"
    others = [f"{r['attribute']} {r['difference']:.3f}" for r in over.slice(1).iter_rows(named=True)]
    also = f"; also over: {', '.join(others)}" if others else ""
    return False, f"fairness gate failed: {gap}, above {max_difference:.3f}{also}"


def gate_table(disparity_table: pl.DataFrame, thresholds: Mapping[str, float]) -> pl.DataFrame:
    """One `gate` per metric threshold, as the report and the asset check show them."""
    rows = [(metric, float(limit), *gate(disparity_table, metric, limit)) for metric, limit in thresholds.items()]
    return pl.DataFrame(rows, schema=GATE_SCHEMA, orient="row")


def fairness_notes(group_table: pl.DataFrame, disparity_table: pl.DataFrame) -> list[str]:
    """Plain sentences for the degenerate cases a reader could otherwise mistake for a result, each said once: values
    missing from the demographics and attributes with a single group. Groups too small to rank are not notes: the
    report says once how many there are and why, and counts them per attribute."""
    if group_table.is_empty():
        return ["no test predictions joined to consensus: no group metrics or disparities, so gates compare nothing"]
    said = []
    groups = group_table.select("attribute", "group", "n_images").unique(maintain_order=True)
    for (attribute,), part in groups.group_by("attribute", maintain_order=True):
        missing = part.filter(pl.col("group") == MISSING)
        if missing.height and SEPARATOR not in attribute:
            said.append(f"{attribute}: {missing['n_images'][0]} images lack a value, reported as group '{MISSING}'")
    single = disparity_table.filter(pl.col("note") == SINGLE_GROUP)["attribute"].unique(maintain_order=True)
    return said + [f"{attribute}: {SINGLE_GROUP}" for attribute in single]


@dataclass(frozen=True)
class FairnessReport:
    tables: dict[str, pl.DataFrame]
    notes: list[str]


def image_demographics(manifest: pl.DataFrame, prompts: pl.DataFrame) -> pl.DataFrame:
    """Each generated image's designed demographics: the prompt is the ground truth of who was asked for."""
    return (
        manifest.select("image_sha256", "prompt_id")
        .join(prompts.select("prompt_id", *ATTRIBUTES), on="prompt_id", how="left")
        .select(image_id="image_sha256", **{a: a for a in ATTRIBUTES})
    )


def read_scored(
    con: duckdb.DuckDBPyConnection, store: Store, images: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The intensity consensus of the scored `images` (image_id) and every generated image's demographics, read by
    DuckDB on `con`: only the columns and rows the report uses (the consensus is 40M rows at a million images)."""
    con.register("evaluated", images.select("image_id").unique().to_arrow())
    consensus = read_columns(
        con,
        store,
        Table.CONSENSUS_LABELS,
        ["image_id", "emotion_id", "median_rating", "present"],
        f"{GENERATED_INTENSITY_SQL} AND image_id IN (SELECT image_id FROM evaluated)",
    )
    demographics = image_demographics(
        read_columns(con, store, Table.GENERATED_IMAGES, ["image_sha256", "prompt_id"]),
        read_columns(con, store, Table.PROMPT_DESIGN, ["prompt_id", *ATTRIBUTES]),
    )
    return consensus, demographics


def build_fairness_report(
    predictions: pl.DataFrame,
    consensus: pl.DataFrame,
    demographics: pl.DataFrame,
    splits: pl.DataFrame,
    qc: pl.DataFrame,
    item_table: pl.DataFrame | str,
    max_gap: Mapping[str, float],
    min_group_size: int = 20,
    resamples: int = 1000,
    seed: int = 42,
    con: duckdb.DuckDBPyConnection | None = None,
) -> FairnessReport:
    """Model side (metrics by group and intersection, disparities, gates) beside the data side (balance per split,
    QC, expert agreement per group from dbt's per-item statistics), with the plain-language notes the report leads
    with. `item_table` may be a relation `con` reads (the statistics' Parquet files): they are only summed there."""
    groups = group_metrics(predictions, consensus, demographics, ATTRIBUTES, min_group_size, resamples, seed)
    gaps = disparities(groups)
    if isinstance(item_table, pl.DataFrame):
        rated = item_table.filter(GENERATED_INTENSITY)
    else:
        rated = f"(SELECT * FROM {item_table} WHERE {GENERATED_INTENSITY_SQL})"
    tables = {
        "group_metrics": groups,
        "disparities": gaps,
        "gates": gate_table(gaps, max_gap),
        "data_balance": data_balance(splits, qc, demographics),
        "agreement": agreement_by_group(rated, demographics, min_group_size, con=con),
        "emotion_by_group": emotion_by_group(predictions, consensus, demographics),
    }
    return FairnessReport(tables, fairness_notes(groups, gaps))
