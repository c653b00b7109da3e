"""Every registered model on the same evaluation images with the same statistics, beside the experts' own agreement
(the ceiling) and a random baseline.

One bootstrap per collection: `evaluation.spearman_draws` draws images with `agreement.resample_indices` from the
collection's images in one order, so every model sees the same draws and the difference of two models' means is
paired; a model's missing images are NaN in its matrix and drop out of each draw as they do out of the point.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import polars as pl

from emonet_assets.lib.consensus.agreement import COUNT_COLUMNS, alpha_interval
from emonet_assets.lib.model.evaluation import (
    intensity_scores,
    nanmean,
    percentile_interval,
    permuted_predictions,
    spearman_draws,
    to_scale,
)
from emonet_assets.lib.shared.rules import GENERATED, GENERATED_INTENSITY

RANKED_KINDS = ("heads", "predictions", "zero_shot", "vlm")
HUMAN_KEY, RANDOM_KEY = "human ceiling", "random baseline"
SUMMARY_SCHEMA = {
    "collection": pl.String,
    "rank": pl.Int64,
    "model_key": pl.String,
    "name": pl.String,
    "kind": pl.String,
    "coverage": pl.Float64,
    "n_images": pl.Int64,
    "n_emotions": pl.Int64,
    "mean_spearman": pl.Float64,
    "mean_spearman_ci_low": pl.Float64,
    "mean_spearman_ci_high": pl.Float64,
    "mean_kappa_quadratic": pl.Float64,
    "mean_presence_f1": pl.Float64,
    "mean_mae": pl.Float64,
    "diff_vs_best": pl.Float64,
    "diff_vs_best_ci_low": pl.Float64,
    "diff_vs_best_ci_high": pl.Float64,
    "p_vs_best": pl.Float64,
    "mean_panel_alpha": pl.Float64,
    "mean_alpha_with_model": pl.Float64,
    "resamples": pl.Int64,
    "note": pl.String,
}
EMOTION_SCHEMA = {
    "collection": pl.String,
    "model_key": pl.String,
    "kind": pl.String,
    "emotion_id": pl.String,
    "n_images": pl.Int64,
    "coverage": pl.Float64,
    "spearman": pl.Float64,
    "spearman_ci_low": pl.Float64,
    "spearman_ci_high": pl.Float64,
    "kappa_quadratic": pl.Float64,
    "presence_f1": pl.Float64,
    "mae": pl.Float64,
    "panel_alpha": pl.Float64,
    "alpha_with_model": pl.Float64,
}


@dataclass(frozen=True)
class Leaderboard:
    summary: pl.DataFrame
    per_emotion: pl.DataFrame


def evaluation_truth(consensus: pl.DataFrame, splits: pl.DataFrame, collections: list[str]) -> pl.DataFrame:
    """The images every model is scored on: the generated collection's test split and each collection declared for
    evaluation, with their consensus median and presence (collection, image_id, emotion_id, median_rating,
    present)."""
    test = splits.filter(pl.col("split") == "test")["image_sha256"].implode()
    wanted = (GENERATED_INTENSITY & pl.col("image_id").is_in(test)) | (
        pl.col("collection").is_in(collections) & (pl.col("scale") == "intensity")
    )
    return (
        consensus.filter(wanted)
        .select("collection", "image_id", "emotion_id", pl.col("median_rating").cast(pl.Float64), "present")
        .drop_nulls("median_rating")
        .sort("collection", "image_id", "emotion_id")
    )


@dataclass(frozen=True)
class _Grid:
    images: pl.DataFrame
    emotions: list[str]
    truth: np.ndarray
    present: np.ndarray

    @classmethod
    def of(cls, truth: pl.DataFrame) -> _Grid:
        images = truth.select("image_id").unique().sort("image_id").with_row_index("row")
        emotions = sorted(truth["emotion_id"].unique().to_list())
        matrix = cls._matrix(images, emotions, truth, "median_rating")
        present = cls._matrix(images, emotions, truth.with_columns(pl.col("present").cast(pl.Float64)), "present")
        return cls(images, emotions, matrix, present == 1)

    @staticmethod
    def _matrix(images: pl.DataFrame, emotions: list[str], frame: pl.DataFrame, value: str) -> np.ndarray:
        column = pl.DataFrame({"emotion_id": emotions}).with_row_index("column")
        cells = frame.join(images, on="image_id").join(column, on="emotion_id").drop_nulls(value)
        matrix = np.full((images.height, len(emotions)), np.nan)
        matrix[cells["row"].to_numpy(), cells["column"].to_numpy()] = cells[value].cast(pl.Float64).to_numpy()
        return matrix

    def scored(self, predictions: pl.DataFrame, value: str) -> np.ndarray:
        return self._matrix(self.images, self.emotions, predictions, value)


def alpha_with_model(item_stats: pl.DataFrame, scores: pl.DataFrame) -> pl.DataFrame:
    """ "As good as one more expert?": per emotion, the panel's interval alpha and the alpha with the model added as
    one more rater (its intensity rounded to 0..7), both over the items the panel pairs (`item_stats`, dbt's
    int_agreement_item_stats of one collection) that the model scored. An alpha that rises means the model agrees
    with the experts as well as they agree with each other."""
    rated = scores.drop_nulls("intensity").filter(pl.col("intensity").is_finite())
    rated = rated.select("image_id", "emotion_id", v=pl.Series(to_scale(rated["intensity"].to_numpy())))
    joined = item_stats.join(rated, on=["image_id", "emotion_id"])
    v = pl.col("v").cast(pl.Float64)
    with_model = joined.with_columns(
        m=pl.col("m") + 1,
        s1=pl.col("s1") + v,
        s2=pl.col("s2") + v * v,
        **{c: pl.col(c) + (pl.col("v") == k).cast(pl.Int64) for k, c in enumerate(COUNT_COLUMNS)},
    )
    rows = [
        (emotion, alpha_interval(part), alpha_interval(with_model.filter(pl.col("emotion_id") == emotion)))
        for (emotion,), part in joined.group_by("emotion_id", maintain_order=True)
    ]
    schema = {"emotion_id": pl.String, "panel_alpha": pl.Float64, "alpha_with_model": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row")


def _p_value(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a paired difference: twice the share of draws on the far side of zero."""
    finite = differences[np.isfinite(differences)]
    if not finite.size:
        return np.nan
    return float(min(1.0, 2 * min((finite <= 0).mean(), (finite >= 0).mean())))


def _score_model(grid: _Grid, scores: np.ndarray, intensities: np.ndarray, resamples: int, seed: int) -> dict:
    point, draws = spearman_draws(scores, grid.truth, resamples, seed)
    low, high = percentile_interval(draws)
    rated = ~np.isnan(grid.truth)
    rows = []
    for c, emotion in enumerate(grid.emotions):
        observed = rated[:, c] & ~np.isnan(scores[:, c])
        comparable = rated[:, c] & ~np.isnan(intensities[:, c])
        kappa, f1, mae = (
            intensity_scores(intensities[comparable, c], grid.truth[comparable, c], grid.present[comparable, c])
            if comparable.any()
            else (np.nan, np.nan, np.nan)
        )
        share = observed.sum() / rated[:, c].sum()
        rows.append((emotion, int(observed.sum()), share, point[c], low[c], high[c], kappa, f1, mae))
    per_emotion = pl.DataFrame(rows, schema=list(EMOTION_SCHEMA)[3:-2], orient="row").with_columns(
        panel_alpha=pl.lit(None, pl.Float64), alpha_with_model=pl.lit(None, pl.Float64)
    )
    mean_draws = nanmean(draws, axis=0)
    mean_low, mean_high = percentile_interval(mean_draws)
    covered = rated & ~np.isnan(scores)
    summary = {
        "coverage": float(covered.sum() / rated.sum()),
        "n_images": int(covered.any(axis=1).sum()),
        "n_emotions": int(np.isfinite(point).sum()),
        "mean_spearman": float(nanmean(point)),
        "mean_spearman_ci_low": float(mean_low),
        "mean_spearman_ci_high": float(mean_high),
        **{f"mean_{m}": float(nanmean(per_emotion[m].to_numpy())) for m in ("kappa_quadratic", "presence_f1", "mae")},
    }
    return {"summary": summary, "per_emotion": per_emotion, "mean_draws": mean_draws}


def _human_row(agreement: pl.DataFrame, collection: str) -> tuple[dict, pl.DataFrame]:
    """The experts' own agreement as the ceiling: each expert against the others' median (emotion_agreement)."""
    humans = agreement.filter((pl.col("collection") == collection) & (pl.col("scale") == "intensity"))
    per_emotion = humans.select(
        "emotion_id",
        n_images=pl.col("n_images").cast(pl.Int64),
        coverage=pl.lit(1.0),
        spearman=pl.col("human_ceiling_spearman").cast(pl.Float64).fill_nan(None),
        spearman_ci_low=pl.lit(None, pl.Float64),
        spearman_ci_high=pl.lit(None, pl.Float64),
        kappa_quadratic=pl.col("kappa_quadratic_mean").cast(pl.Float64),
        presence_f1=pl.lit(None, pl.Float64),
        mae=pl.lit(None, pl.Float64),
        panel_alpha=pl.col("alpha_interval").cast(pl.Float64),
        alpha_with_model=pl.lit(None, pl.Float64),
    )
    summary = {
        "coverage": 1.0,
        "n_images": int(humans["n_images"].max() or 0),
        "n_emotions": int(per_emotion["spearman"].drop_nulls().len()),
        "mean_spearman": per_emotion["spearman"].mean(),
        "mean_kappa_quadratic": per_emotion["kappa_quadratic"].mean(),
        "mean_panel_alpha": per_emotion["panel_alpha"].mean(),
        "note": "each expert vs the others' median (emotion_agreement)",
    }
    return summary, per_emotion


def build_leaderboard(
    predictions: pl.DataFrame,
    registry: pl.DataFrame,
    truth: pl.DataFrame,
    agreement: pl.DataFrame,
    resamples: int = 1000,
    seed: int = 42,
    min_coverage: float = 0.9,
    item_stats: pl.DataFrame | None = None,
) -> Leaderboard:
    """Per collection of `truth` (evaluation_truth): a summary row per registered model, the human ceiling and the
    random baseline (the consensus median shuffled across images per emotion), and their per-emotion metrics.

    `predictions` holds model_key, image_id, emotion_id, score and intensity. Models of a ranked kind whose coverage
    reaches `min_coverage` are ranked by mean Spearman; each row's paired bootstrap difference from the best model
    comes with its 95% CI and two-sided p-value. With `item_stats`, each model with intensities is also added to the
    panel as one more rater (alpha_with_model).
    """
    summaries, emotions = [], []
    models = registry.select("model_key", "name", "kind").unique("model_key", maintain_order=True)
    for (collection,), part in truth.group_by("collection", maintain_order=True):
        grid = _Grid.of(part)
        scored = {}
        for model in models.iter_rows(named=True):
            own = predictions.filter(pl.col("model_key") == model["model_key"])
            entry = model | _score_model(
                grid, grid.scored(own, "score"), grid.scored(own, "intensity"), resamples, seed
            )
            if item_stats is not None:
                panel = item_stats.filter((pl.col("collection") == collection) & (pl.col("scale") == "intensity"))
                alphas = alpha_with_model(panel, own)
                entry["per_emotion"] = (
                    entry["per_emotion"]
                    .drop("panel_alpha", "alpha_with_model")
                    .join(alphas, on="emotion_id", how="left")
                )
                entry["summary"] |= {
                    f"mean_{c}": float(nanmean(alphas[c].to_numpy())) if alphas.height else None
                    for c in ("panel_alpha", "alpha_with_model")
                }
            scored[model["model_key"]] = entry
        shuffled = permuted_predictions(
            part.select("image_id", "emotion_id", predicted="median_rating"), part.drop("collection"), seed
        )
        random = grid.scored(shuffled, "predicted")
        scored[RANDOM_KEY] = {"model_key": RANDOM_KEY, "name": RANDOM_KEY, "kind": "baseline"} | _score_model(
            grid, random, random, resamples, seed
        )
        eligible = {
            key: entry["summary"]["mean_spearman"]
            for key, entry in scored.items()
            if entry["kind"] in RANKED_KINDS
            and entry["summary"]["coverage"] >= min_coverage
            and np.isfinite(entry["summary"]["mean_spearman"])
        }
        order = sorted(eligible, key=lambda key: (-eligible[key], key))
        best = scored[order[0]] if order else None
        for key, entry in scored.items():
            summary = dict(entry["summary"])
            summary["rank"] = order.index(key) + 1 if key in eligible else None
            summary["note"] = _note(entry, min_coverage, key in eligible)
            if best is not None:
                differences = entry["mean_draws"] - best["mean_draws"]
                low, high = percentile_interval(differences)
                summary |= {
                    "diff_vs_best": summary["mean_spearman"] - best["summary"]["mean_spearman"],
                    "diff_vs_best_ci_low": float(low),
                    "diff_vs_best_ci_high": float(high),
                    "p_vs_best": 1.0 if key == best["model_key"] else _p_value(differences),
                }
            summaries.append(
                {"collection": collection, "model_key": key, "name": entry["name"], "kind": entry["kind"]}
                | summary
                | {"resamples": resamples}
            )
            emotions.append(
                entry["per_emotion"]
                .with_columns(collection=pl.lit(collection), model_key=pl.lit(key), kind=pl.lit(entry["kind"]))
                .select(*EMOTION_SCHEMA)
            )
        human, human_emotions = _human_row(agreement, collection)
        summaries.append(
            {"collection": collection, "model_key": HUMAN_KEY, "name": HUMAN_KEY, "kind": "human"}
            | human
            | {"resamples": resamples}
        )
        emotions.append(
            human_emotions.with_columns(
                collection=pl.lit(collection), model_key=pl.lit(HUMAN_KEY), kind=pl.lit("human")
            ).select(*EMOTION_SCHEMA)
        )
    summary = pl.DataFrame(summaries, schema=SUMMARY_SCHEMA)
    order = [pl.col("collection") != GENERATED, "collection", pl.col("mean_spearman").fill_nan(None), "rank"]
    summary = summary.sort(order, descending=[False, False, True, False], nulls_last=True)
    per_emotion = pl.concat(emotions).cast(EMOTION_SCHEMA) if emotions else pl.DataFrame(schema=EMOTION_SCHEMA)
    return Leaderboard(summary, per_emotion)


def _note(entry: dict, min_coverage: float, ranked: bool) -> str | None:
    summary = entry["summary"]
    if entry["kind"] not in RANKED_KINDS:
        return "each emotion's medians shuffled across images"
    if summary["coverage"] < min_coverage:
        return f"coverage {summary['coverage']:.0%} < {min_coverage:.0%}: not ranked"
    if not ranked:
        return "constant scores (no Spearman defined): not ranked"
    return None


def forest_plot(summary: pl.DataFrame) -> bytes:
    """PNG of each collection's rows: mean Spearman with its 95% CI, best first, the human ceiling as a line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    collections = summary["collection"].unique(maintain_order=True).to_list()
    figure = Figure(figsize=(8, 1.5 + 0.4 * summary.height), layout="constrained")
    FigureCanvasAgg(figure)
    for i, (collection, part) in enumerate(summary.group_by("collection", maintain_order=True), start=1):
        axes = figure.add_subplot(len(collections), 1, i)
        rows = part.filter(pl.col("kind") != "human")
        rho, low, high = (
            rows[c].fill_nan(None).fill_null(np.nan).to_numpy()
            for c in ("mean_spearman", "mean_spearman_ci_low", "mean_spearman_ci_high")
        )
        positions = np.arange(rows.height)[::-1]
        errors = np.nan_to_num(np.vstack([rho - low, high - rho])).clip(0, None)
        axes.errorbar(np.nan_to_num(rho), positions, xerr=errors, fmt="o", color="#4c72b0", capsize=3)
        ceiling = part.filter(pl.col("kind") == "human")["mean_spearman"].fill_nan(None).drop_nulls()
        if ceiling.len():
            axes.axvline(ceiling[0], color="#dd8452", linestyle="--", label="human ceiling")
            axes.legend(loc="lower right", fontsize=8)
        axes.set_yticks(positions, rows["model_key"].to_list(), fontsize=8)
        axes.axvline(0, color="black", linewidth=0.8)
        axes.set_title(f"{collection[0]}: mean Spearman vs consensus median (95% CI)", fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
