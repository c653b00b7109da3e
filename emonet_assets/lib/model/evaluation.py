"""Model evaluation on the test split: per-emotion and rollup metrics with bootstrap CIs, a permutation baseline,
the human ceiling beside the model, and a chart.

The bootstrap resamples images with `agreement.resample_indices`, so a model CI and a human-agreement CI computed
with the same seed come from the same image draws, and every emotion of one run shares each resample's images.
"""

from __future__ import annotations

import io
import warnings
from typing import NamedTuple

import numpy as np
import polars as pl

from emonet_assets.lib.consensus.agreement import draw_counts, resample_indices
from emonet_assets.lib.shared.rules import INTENSITY_MAX

CI_LEVEL = 0.95
_PERMUTATION_STREAM = 1
METRIC_SCHEMA = {
    "n_images": pl.Int64,
    "spearman": pl.Float64,
    "spearman_ci_low": pl.Float64,
    "spearman_ci_high": pl.Float64,
    "kappa_quadratic": pl.Float64,
    "presence_f1": pl.Float64,
    "mae": pl.Float64,
}
SUMMARY_SCHEMA = {
    "n_images": pl.Int64,
    "n_emotions": pl.Int64,
    "mean_spearman": pl.Float64,
    "mean_spearman_ci_low": pl.Float64,
    "mean_spearman_ci_high": pl.Float64,
    "mean_kappa_quadratic": pl.Float64,
    "mean_presence_f1": pl.Float64,
    "mean_mae": pl.Float64,
    "resamples": pl.Int64,
}


class Evaluation(NamedTuple):
    per_emotion: pl.DataFrame
    summary: pl.DataFrame


def to_scale(values: np.ndarray) -> np.ndarray:
    """Ratings as integers 0..7 for kappa and presence.

    numpy rounds half to even, so a 0.5 median (raters split between 0 and 1) stays 0, as the consensus `present`
    rule (median >= 1) has it.
    """
    return np.clip(np.rint(values), 0, INTENSITY_MAX).astype(np.int64)


class SpearmanColumns(NamedTuple):
    """The observed items of each column of an images x columns pair of matrices, flattened in ascending order of x
    within each column, with their tie groups: x's as the position of each group's first item (`x_starts`, one
    more closing the last; column `columns[k]`'s are `x_starts[group_bounds[k]:group_bounds[k + 1]]`), y's as a
    number per item."""

    n_columns: int
    columns: np.ndarray
    group_bounds: np.ndarray
    x_starts: np.ndarray
    items: np.ndarray
    y_group: np.ndarray
    y_groups: np.ndarray

    @classmethod
    def of(cls, predicted: np.ndarray, truth: np.ndarray) -> SpearmanColumns:
        """NaN on either side leaves the item out of that column; equal values share a group, numbered in
        ascending order."""
        observed = ~(np.isnan(predicted) | np.isnan(truth))
        columns, starts, items, y_group, y_groups = [], [], [], [], []
        placed = 0
        for c in range(predicted.shape[1]):
            observed_items = np.flatnonzero(observed[:, c])
            if observed_items.size:
                x = predicted[observed_items, c]
                order = np.argsort(x)  # the order within a tie group does not change its sums
                x = x[order]
                values, group = np.unique(truth[observed_items[order], c], return_inverse=True)
                columns.append(c)
                starts.append(placed + np.flatnonzero(np.r_[True, x[1:] != x[:-1]]))
                items.append(observed_items[order])
                y_group.append(group)
                y_groups.append(values.size)
                placed += x.size

        def flat(arrays: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(arrays).astype(np.int64) if arrays else np.empty(0, np.int64)

        return cls(
            predicted.shape[1],
            np.asarray(columns, dtype=np.int64),
            np.r_[0, np.cumsum([s.size for s in starts], dtype=np.int64)].astype(np.int64),
            np.r_[flat(starts), placed].astype(np.int64),
            flat(items),
            flat(y_group),
            np.asarray(y_groups, dtype=np.int64),
        )

    def spearman(self, counts: np.ndarray) -> np.ndarray:
        """Rho of each column (rows) in each resample given as draw counts (resamples x images; columns)."""
        from emonet_assets.lib.model.rank_kernel import spearman_of_counts

        out = np.full((self.n_columns, counts.shape[0]), np.nan)
        kept = np.empty((self.columns.size, counts.shape[0]))
        groups = (self.group_bounds, self.x_starts, self.items, self.y_group, self.y_groups)
        spearman_of_counts(np.ascontiguousarray(counts.T), *groups, kept)  # one image's draws side by side
        out[self.columns] = kept
        return out


def spearman_draws(
    predicted: np.ndarray, truth: np.ndarray, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Point Spearman per column and its bootstrap draws (columns × resamples) for images × columns matrices, NaN
    where an image lacks that column; every column sees the same image draws, those of `resample_indices`."""
    columns = SpearmanColumns.of(predicted, truth)
    point = columns.spearman(np.ones((1, predicted.shape[0]), dtype=np.uint8))[:, 0]
    chunks = [
        columns.spearman(draw_counts(i, predicted.shape[0])) for i in resample_indices(len(truth), resamples, seed)
    ]
    return point, np.concatenate(chunks, axis=1) if chunks else np.full((predicted.shape[1], 0), np.nan)


def percentile_interval(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per row over the finite draws; NaN for a row without any."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(draws, [(1 - CI_LEVEL) / 2, (1 + CI_LEVEL) / 2], axis=-1)
    return low, high


def nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _joined(predictions: pl.DataFrame, consensus: pl.DataFrame, key: str) -> pl.DataFrame:
    """Consensus with the model's prediction; a test item the model did not score (or scored NaN) is an error, not
    a smaller test."""
    for name, frame in (("predictions", predictions), ("consensus", consensus)):
        duplicated = frame.select("image_id", key).is_duplicated().sum()
        if duplicated:
            raise ValueError(f"{name}: {duplicated} rows repeat an (image_id, {key}) pair")
    joined = (
        consensus.select("image_id", key, pl.col("median_rating").cast(pl.Float64).fill_nan(None), "present")
        .drop_nulls("median_rating")
        .join(predictions.select("image_id", key, "predicted"), on=["image_id", key], how="left")
        .with_columns(pl.col("predicted").cast(pl.Float64).fill_nan(None))
    )
    missing = joined.filter(pl.col("predicted").is_null())
    if missing.height:
        examples = missing.head(5).select("image_id", key).rows()
        raise ValueError(f"predictions lack {missing.height} test items, e.g. {examples}")
    return joined


def intensity_scores(predicted: np.ndarray, truth: np.ndarray, present: np.ndarray) -> tuple[float, float, float]:
    """(quadratic kappa after rounding to 0..7, presence F1, MAE) of one column's predicted intensities against the
    consensus median and its `present` flags; NaN where undefined."""
    from sklearn.metrics import cohen_kappa_score, f1_score  # seconds to import: only where scores are made

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kappa = cohen_kappa_score(
            to_scale(truth),
            to_scale(predicted),
            labels=range(INTENSITY_MAX + 1),
            weights="quadratic",
            replace_undefined_by=np.nan,
        )
        f1 = f1_score(present, to_scale(predicted) >= 1, zero_division=np.nan)
    mae = float(np.abs(predicted - truth).mean()) if predicted.size else np.nan
    return float(kappa), float(f1), mae


def _evaluate(joined: pl.DataFrame, key: str, resamples: int, seed: int) -> Evaluation:
    """Metrics per `key` value of consensus already joined to predictions (image_id, key, median_rating, present,
    predicted)."""
    images = joined["image_id"].unique().sort()
    columns = joined[key].unique().sort()
    cells = joined.join(images.to_frame().with_row_index("row"), on="image_id").join(
        columns.to_frame().with_row_index("column"), on=key
    )
    row, column = cells["row"].to_numpy(), cells["column"].to_numpy()
    predicted = np.full((images.len(), columns.len()), np.nan)
    truth = np.full_like(predicted, np.nan)
    predicted[row, column] = cells["predicted"].cast(pl.Float64).to_numpy()
    truth[row, column] = cells["median_rating"].cast(pl.Float64).to_numpy()
    present = np.zeros(predicted.shape, dtype=bool)
    present[row, column] = cells["present"].to_numpy()

    point, draws = spearman_draws(predicted, truth, resamples, seed)
    low, high = percentile_interval(draws)
    rows = []
    for c in range(columns.len()):
        observed = ~np.isnan(truth[:, c])
        scores = intensity_scores(predicted[observed, c], truth[observed, c], present[observed, c])
        rows.append((int(observed.sum()), point[c], low[c], high[c], *scores))
    per_emotion = pl.DataFrame(rows, schema=METRIC_SCHEMA, orient="row").select(columns.alias(key), pl.all())

    mean_low, mean_high = percentile_interval(nanmean(draws, axis=0))
    summary = pl.DataFrame(
        [
            (
                images.len(),
                int(np.isfinite(point).sum()),
                float(nanmean(point)),
                float(mean_low),
                float(mean_high),
                *(float(nanmean(per_emotion[m].to_numpy())) for m in ("kappa_quadratic", "presence_f1", "mae")),
                resamples,
            )
        ],
        schema=SUMMARY_SCHEMA,
        orient="row",
    )
    return Evaluation(per_emotion, summary)


def evaluate(predictions: pl.DataFrame, consensus: pl.DataFrame, resamples: int = 1000, seed: int = 42) -> Evaluation:
    """Per-emotion metrics and their summary from one bootstrap, so the summary's CI reuses the per-emotion draws."""
    return _evaluate(_joined(predictions, consensus, "emotion_id"), "emotion_id", resamples, seed)


def per_emotion_metrics(
    predictions: pl.DataFrame, consensus: pl.DataFrame, resamples: int = 1000, seed: int = 42
) -> pl.DataFrame:
    """emotion_id, n_images, spearman (with 95% bootstrap CI), kappa_quadratic, presence_f1, mae."""
    return evaluate(predictions, consensus, resamples, seed).per_emotion


def summary(predictions: pl.DataFrame, consensus: pl.DataFrame, resamples: int = 1000, seed: int = 42) -> pl.DataFrame:
    """One row: mean over emotions of each metric; the Spearman mean's CI is the mean within each resample, so it
    carries the correlation between emotions that share images."""
    return evaluate(predictions, consensus, resamples, seed).summary


def permuted_predictions(predictions: pl.DataFrame, consensus: pl.DataFrame, seed: int = 42) -> pl.DataFrame:
    """Each emotion's predictions shuffled across the test images.

    A shuffle keeps what the model says about an emotion overall (its intensity distribution, how often it calls
    the emotion present) and only breaks the link to the image, so the baseline's kappa, F1 and MAE are what that
    calibration earns without looking at faces; a uniform random predictor would be a straw man on those.
    """
    joined = _joined(predictions, consensus, "emotion_id").sort("emotion_id", "image_id")
    rng = np.random.default_rng([seed, _PERMUTATION_STREAM])
    shuffled = joined["predicted"].to_numpy().copy()
    starts = joined.with_row_index("i").group_by("emotion_id", maintain_order=True).agg(pl.col("i").min(), pl.len())
    for start, length in starts.select("i", "len").iter_rows():
        shuffled[start : start + length] = rng.permutation(shuffled[start : start + length])
    return joined.select("image_id", "emotion_id", predicted=pl.Series(shuffled))


def random_baseline(
    predictions: pl.DataFrame, consensus: pl.DataFrame, resamples: int = 1000, seed: int = 42
) -> Evaluation:
    """The metrics of `permuted_predictions`, bootstrapped over the same image draws as the model."""
    return evaluate(permuted_predictions(predictions, consensus, seed), consensus, resamples, seed)


def beside_human(metrics: pl.DataFrame, agreement: pl.DataFrame) -> pl.DataFrame:
    """Per-emotion metrics with the human ceiling; the ratio says how much of the achievable agreement the model
    reaches, and is null where humans do not agree above chance (a ratio against ~0 means nothing)."""
    repeated = agreement.filter(pl.col("emotion_id").is_duplicated())["emotion_id"].unique().sort().to_list()
    if repeated:
        raise ValueError(f"agreement has several rows for {repeated}; select one collection and scale first")
    human = agreement.select(
        "emotion_id",
        pl.col("human_ceiling_spearman").cast(pl.Float64).fill_nan(None),
        human_alpha_interval=pl.col("alpha_interval"),
        human_kappa_quadratic=pl.col("kappa_quadratic_mean"),
    )
    ceiling = pl.col("human_ceiling_spearman")
    return metrics.join(human, on="emotion_id", how="left").with_columns(
        model_to_human_ratio=pl.when(ceiling > 0).then(pl.col("spearman").fill_nan(None) / ceiling)
    )


def rollup_metrics(
    predictions: pl.DataFrame, consensus: pl.DataFrame, rollups: pl.DataFrame, resamples: int = 1000, seed: int = 42
) -> pl.DataFrame:
    """Metrics per (rollup, level), a level scoring an image by its strongest member emotion on both sides (max
    predicted, max median, present when any member is), with the same image draws as the per-emotion metrics."""
    joined = _joined(predictions, consensus, "emotion_id")
    members = rollups.select("rollup", "level", "emotion_id").drop_nulls().unique()
    frames = [pl.DataFrame(schema={"rollup": pl.String, "level": pl.String, **METRIC_SCHEMA})]
    for (rollup,), levels in members.group_by("rollup", maintain_order=True):
        per_level = (
            joined.join(levels.select("level", "emotion_id"), on="emotion_id")
            .group_by("image_id", "level")
            .agg(pl.col("median_rating").max(), pl.col("present").any(), pl.col("predicted").max())
        )
        metrics = _evaluate(per_level, "level", resamples, seed).per_emotion
        frames.append(
            metrics.select(pl.lit(rollup, pl.String).alias("rollup"), pl.col("level").cast(pl.String), *METRIC_SCHEMA)
        )
    return pl.concat(frames).sort("rollup", "level")


def beats_random(model_summary: pl.DataFrame, random_summary: pl.DataFrame, margin: float = 0.05) -> tuple[bool, str]:
    """Whether the model's mean Spearman, at the low end of its 95% CI, exceeds the permutation baseline's mean by
    more than `margin`; judging the CI bound keeps a lucky small test split from passing."""
    model, random = model_summary.row(0, named=True), random_summary.row(0, named=True)
    lead = model["mean_spearman_ci_low"] - random["mean_spearman"]
    passed = bool(np.isfinite(lead) and lead > margin)
    message = (
        f"mean Spearman {model['mean_spearman']:.3f} (95% CI {model['mean_spearman_ci_low']:.3f} to "
        f"{model['mean_spearman_ci_high']:.3f}) vs random baseline {random['mean_spearman']:.3f} "
        f"(95% CI {random['mean_spearman_ci_low']:.3f} to {random['mean_spearman_ci_high']:.3f}); CI low leads by "
        f"{lead:.3f}, margin {margin:.3f}; mean quadratic kappa {model['mean_kappa_quadratic']:.3f} vs "
        f"{random['mean_kappa_quadratic']:.3f}, mean presence F1 {model['mean_presence_f1']:.3f} vs "
        f"{random['mean_presence_f1']:.3f}"
    )
    return passed, ("model beats random: " if passed else "model does not beat random: ") + message


def evaluation_chart(per_emotion_with_human: pl.DataFrame) -> bytes:
    """PNG of each emotion's Spearman with its CI beside the human ceiling, best first, so the emotions where the
    model falls furthest short of people stand out. Labels use the `emotion` column when present."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    label = "emotion" if "emotion" in per_emotion_with_human.columns else "emotion_id"
    table = per_emotion_with_human.sort(pl.col("spearman").fill_nan(None), descending=True, nulls_last=True)
    rho, low, high = (
        table[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
        for c in ("spearman", "spearman_ci_low", "spearman_ci_high")
    )
    rho = np.nan_to_num(rho)
    errors = np.nan_to_num(np.vstack([rho - low, high - rho])).clip(0, None)
    positions = np.arange(table.height)[::-1]
    figure = Figure(figsize=(8, max(3.0, 0.25 * table.height + 1.2)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.barh(positions, rho, xerr=errors, color="#4c72b0", ecolor="#333333", capsize=2, label="model (95% CI)")
    ceiling = table["human_ceiling_spearman"].cast(pl.Float64).fill_nan(None).to_numpy()
    axes.scatter(ceiling, positions, marker="|", s=120, color="#dd8452", zorder=3, label="human ceiling")
    axes.set_yticks(positions, table[label].cast(pl.String).to_list(), fontsize=7)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel("Spearman rho vs consensus median")
    axes.set_title("Model agreement per emotion beside the human ceiling")
    axes.legend(loc="lower right", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
