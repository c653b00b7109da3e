"""Every registered model on the same evaluation images with the same statistics, beside the experts' own agreement
(the ceiling) and a random baseline, per emotion and at every rollup level.

One bootstrap per collection: `evaluation.spearman_draws` draws images with `agreement.resample_indices` from the
collection's images in one order, so every model, the human ceiling and the baseline see the same draws and the
difference of any two rows' means is paired; a model's missing images are NaN in its matrix and drop out of each draw
as they do out of the point.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import polars as pl

from emonet_assets.lib.consensus.agreement import COUNT_COLUMNS, alpha_interval, item_statistics
from emonet_assets.lib.model.evaluation import (
    intensity_scores,
    nanmean,
    percentile_interval,
    permuted_predictions,
    spearman_draws,
    to_scale,
)
from emonet_assets.lib.shared.rules import GENERATED, GENERATED_INTENSITY, INTENSITY_MAX

RANKED_KINDS = ("heads", "predictions", "zero_shot", "vlm")
HUMAN_KEY, RANDOM_KEY = "human ceiling", "random baseline"
EMOTION_ROLLUP = "emotion"
SUMMARY_SCHEMA = {
    "collection": pl.String,
    "rollup": pl.String,
    "rank": pl.Int64,
    "model_key": pl.String,
    "name": pl.String,
    "kind": pl.String,
    "coverage": pl.Float64,
    "n_images": pl.Int64,
    "n_levels": pl.Int64,
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
    "diff_vs_human": pl.Float64,
    "diff_vs_human_ci_low": pl.Float64,
    "diff_vs_human_ci_high": pl.Float64,
    "p_vs_human": pl.Float64,
    "mean_panel_alpha": pl.Float64,
    "mean_alpha_with_model": pl.Float64,
    "resamples": pl.Int64,
    "note": pl.String,
}
LEVEL_SCHEMA = {
    "collection": pl.String,
    "rollup": pl.String,
    "level": pl.String,
    "model_key": pl.String,
    "kind": pl.String,
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
_METRICS = list(LEVEL_SCHEMA)[5:-2]


@dataclass(frozen=True)
class Leaderboard:
    """`summary`: one row per (collection, rollup, model); `per_level`: its metrics per emotion (rollup `emotion`)
    or per level of each rollup."""

    summary: pl.DataFrame
    per_level: pl.DataFrame


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


def leave_one_out(ratings: pl.DataFrame) -> pl.DataFrame:
    """Each intensity rating beside the median of the other ratings of its item, on items rated at least twice
    (collection, image_id, emotion_id, annotator, value, others_median): the basis of the human ceiling, as dbt's
    int_leave_one_out has it. The others' median comes from the item's value counts less the rating itself."""
    keys = ["collection", "image_id", "emotion_id"]
    rated = ratings.select(*keys, "annotator", pl.col("value").cast(pl.Int64))
    counts = rated.group_by(keys).agg(
        m=pl.len(), **{c: (pl.col("value") == v).sum() for v, c in enumerate(COUNT_COLUMNS)}
    )
    joined = rated.join(counts.filter(pl.col("m") >= 2), on=keys)
    values = joined["value"].to_numpy()
    others = joined.select(COUNT_COLUMNS).to_numpy() - (values[:, None] == np.arange(INTENSITY_MAX + 1))
    cumulative = np.cumsum(others, axis=1)
    n = joined["m"].to_numpy() - 1

    def value_at(rank: np.ndarray) -> np.ndarray:
        return (cumulative <= rank[:, None]).sum(axis=1)

    median = (value_at((n - 1) // 2) + value_at(n // 2)) / 2
    return joined.select(*keys, "annotator", "value", others_median=pl.Series(median, dtype=pl.Float64))


def rolled_up(frame: pl.DataFrame, members: pl.DataFrame, by: list[str], values: dict[str, pl.Expr]) -> pl.DataFrame:
    """`frame` at one rollup's levels: its rows joined to their level (members: level, emotion_id) and aggregated
    per `by` and level, the level standing in the emotion_id column so every later step reads one shape."""
    return (
        frame.join(members.select("level", "emotion_id"), on="emotion_id")
        .group_by(*by, "level")
        .agg(**values)
        .rename({"level": "emotion_id"})
    )


def panel_agreement(ratings: pl.DataFrame, min_pair_items: int) -> pl.DataFrame:
    """Per emotion (or level) of `ratings` (image_id, emotion_id, annotator, value): the panel's interval alpha and
    its mean quadratic kappa over the annotator pairs sharing at least `min_pair_items` items, computed as dbt's
    emotion_agreement computes them for the emotions (int_pairwise_kappa's integer sums, pairs added in order)."""
    rated = ratings.select("image_id", "emotion_id", "annotator", pl.col("value").cast(pl.Int64))
    pairs = (
        rated.join(rated, on=["image_id", "emotion_id"], suffix="_b")
        .filter(pl.col("annotator") < pl.col("annotator_b"))
        .group_by("emotion_id", "annotator", "annotator_b")
        .agg(
            n=pl.len(),
            observed=((pl.col("value") - pl.col("value_b")) ** 2).sum(),
            squares=(pl.col("value") ** 2).sum() + (pl.col("value_b") ** 2).sum(),
            a=pl.col("value").sum(),
            b=pl.col("value_b").sum(),
        )
        .filter(pl.col("n") >= min_pair_items)
    )
    expected = pl.col("squares").cast(pl.Float64) - 2.0 * pl.col("a") * pl.col("b") / pl.col("n")
    kappa = (
        pairs.with_columns(kappa=pl.when(expected != 0).then(1 - pl.col("observed") / expected))
        .sort("emotion_id", "annotator", "annotator_b")
        .group_by("emotion_id", maintain_order=True)
        .agg(kappa_quadratic_mean=pl.col("kappa").mean())
    )
    stats = item_statistics(rated, keys=["emotion_id"])
    alphas = pl.DataFrame(
        [(emotion, alpha_interval(part)) for (emotion,), part in stats.group_by("emotion_id", maintain_order=True)],
        schema={"emotion_id": pl.String, "alpha_interval": pl.Float64},
        orient="row",
    )
    emotions = rated.select("emotion_id").unique().sort("emotion_id")
    return emotions.join(kappa, on="emotion_id", how="left").join(alphas, on="emotion_id", how="left")


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
    for c, level in enumerate(grid.emotions):
        observed = rated[:, c] & ~np.isnan(scores[:, c])
        comparable = rated[:, c] & ~np.isnan(intensities[:, c])
        kappa, f1, mae = (
            intensity_scores(intensities[comparable, c], grid.truth[comparable, c], grid.present[comparable, c])
            if comparable.any()
            else (np.nan, np.nan, np.nan)
        )
        share = observed.sum() / rated[:, c].sum()
        rows.append((level, int(observed.sum()), share, point[c], low[c], high[c], kappa, f1, mae))
    per_level = pl.DataFrame(rows, schema=["level", *_METRICS], orient="row")
    covered = rated & ~np.isnan(scores)
    summary = {
        "coverage": float(covered.sum() / rated.sum()),
        "n_images": int(covered.any(axis=1).sum()),
        **{f"mean_{m}": float(nanmean(per_level[m].to_numpy())) for m in ("kappa_quadratic", "presence_f1", "mae")},
    }
    return {"summary": summary, "per_level": per_level} | _means(point, draws)


def _means(point: np.ndarray, draws: np.ndarray) -> dict:
    """The mean over levels of a row's point Spearman and of each of its draws, and the draws' 95% interval."""
    mean_draws = nanmean(draws, axis=0)
    low, high = percentile_interval(mean_draws)
    return {
        "mean_draws": mean_draws,
        "point": {
            "n_levels": int(np.isfinite(point).sum()),
            "mean_spearman": float(nanmean(point)),
            "mean_spearman_ci_low": float(low),
            "mean_spearman_ci_high": float(high),
        },
    }


def _human_entry(
    grid: _Grid, others: pl.DataFrame, agreement: pl.DataFrame | None, resamples: int, seed: int, min_items: int
) -> dict:
    """The experts' own agreement as the ceiling, on the grid's images and with its draws: per level, the mean over
    annotators (those with at least `min_items` rated items here) of Spearman between each annotator's ratings
    and the median of the others' (`leave_one_out`), as dbt's emotion_agreement computes it on the whole
    collection. Kappa and the panel's alpha come from `agreement` (the whole collection) where given."""
    columns = others.select("emotion_id", "annotator").unique().sort("emotion_id", "annotator").with_row_index("column")
    cells = others.join(grid.images, on="image_id").join(columns, on=["emotion_id", "annotator"])
    shape = (grid.images.height, columns.height)
    values, medians = np.full(shape, np.nan), np.full(shape, np.nan)
    at = cells["row"].to_numpy(), cells["column"].to_numpy()
    values[at] = cells["value"].to_numpy()
    medians[at] = cells["others_median"].to_numpy()
    point, draws = spearman_draws(values, medians, resamples, seed)
    enough = (~np.isnan(values)).sum(axis=0) >= min_items
    level_of = columns["emotion_id"].to_numpy()
    level_point, level_draws = np.full(len(grid.emotions), np.nan), np.full((len(grid.emotions), resamples), np.nan)
    for c, level in enumerate(grid.emotions):
        mine = enough & (level_of == level)
        if mine.any():
            level_point[c], level_draws[c] = nanmean(point[mine]), nanmean(draws[mine], axis=0)
    low, high = percentile_interval(level_draws)
    paired = ~np.isnan(medians)
    images = [int(paired[:, (level_of == level)].any(axis=1).sum()) for level in grid.emotions]
    per_level = pl.DataFrame(
        {
            "level": grid.emotions,
            "n_images": images,
            "coverage": 1.0,
            "spearman": level_point,
            "spearman_ci_low": low,
            "spearman_ci_high": high,
        }
    )
    if agreement is not None:
        per_level = per_level.join(
            agreement.select(
                level="emotion_id",
                kappa_quadratic=pl.col("kappa_quadratic_mean").cast(pl.Float64),
                panel_alpha=pl.col("alpha_interval").cast(pl.Float64),
            ),
            on="level",
            how="left",
        )
    per_level = per_level.with_columns(
        *(pl.lit(None, pl.Float64).alias(c) for c in ("kappa_quadratic", "panel_alpha") if c not in per_level.columns),
        presence_f1=pl.lit(None, pl.Float64),
        mae=pl.lit(None, pl.Float64),
        alpha_with_model=pl.lit(None, pl.Float64),
    )
    summary = {
        "coverage": 1.0,
        "n_images": int(paired.any(axis=1).sum()),
        "mean_kappa_quadratic": per_level["kappa_quadratic"].mean(),
        "mean_panel_alpha": per_level["panel_alpha"].mean(),
        "note": "each expert vs the others' median on these images",
    }
    entry = {"model_key": HUMAN_KEY, "name": HUMAN_KEY, "kind": "human"}
    return entry | {"summary": summary, "per_level": per_level} | _means(level_point, level_draws)


def _paired(entry: dict, reference: dict, name: str) -> dict:
    """A row's paired bootstrap difference from a reference row: point, 95% CI over the same draws, p-value."""
    differences = entry["mean_draws"] - reference["mean_draws"]
    low, high = percentile_interval(differences)
    same = entry["model_key"] == reference["model_key"]
    return {
        f"diff_vs_{name}": entry["point"]["mean_spearman"] - reference["point"]["mean_spearman"],
        f"diff_vs_{name}_ci_low": float(low),
        f"diff_vs_{name}_ci_high": float(high),
        f"p_vs_{name}": 1.0 if same else _p_value(differences),
    }


def build_leaderboard(
    predictions: pl.DataFrame,
    registry: pl.DataFrame,
    truth: pl.DataFrame,
    agreement: pl.DataFrame,
    ratings: pl.DataFrame,
    resamples: int = 1000,
    seed: int = 42,
    min_coverage: float = 0.9,
    item_stats: pl.DataFrame | None = None,
    rollups: pl.DataFrame | None = None,
    min_pair_items: int = 5,
) -> Leaderboard:
    """Per collection of `truth` (evaluation_truth), per emotion and at each rollup of `rollups` (emotion_rollups:
    rollup, level, emotion_id): a summary row per registered model, the human ceiling (from `ratings`, the
    annotations: collection, image_id, emotion_id, annotator, scale, value) and the random baseline (the consensus
    median shuffled across images per level), and their per-level metrics.

    `predictions` holds model_key, image_id, emotion_id, score and intensity. Models of a ranked kind whose coverage
    reaches `min_coverage` are ranked by mean Spearman; every row's paired bootstrap difference from the best model
    and from the human ceiling comes with its 95% CI and two-sided p-value. A level scores an image by its
    strongest member emotion on every side (max score, max median, max rating per annotator), as
    model_evaluation_rollups does. With `item_stats`, each model with intensities is also added to the panel as
    one more rater (alpha_with_model). The panel's kappa and alpha are the whole collection's: dbt's `agreement` and
    `item_stats` per emotion, and at a rollup's levels the same statistics of each annotator's strongest member
    rating (`panel_agreement`, `item_statistics`).
    """
    keys = truth.select("collection", "image_id").unique()
    panel_ratings = ratings.filter(pl.col("scale") == "intensity").join(
        keys.select("collection").unique(), on="collection"
    )
    rated = panel_ratings.join(keys, on=["collection", "image_id"])
    others = leave_one_out(rated)
    members = rollups.select("rollup", "level", "emotion_id").drop_nulls().unique() if rollups is not None else None
    rollup_names = members["rollup"].unique(maintain_order=True).sort().to_list() if members is not None else []
    summaries, levels = [], []
    for (collection,), part in truth.group_by("collection", maintain_order=True):
        images = part["image_id"].unique().implode()
        own = predictions.filter(pl.col("image_id").is_in(images))
        raters = others.filter(pl.col("collection") == collection)
        agreed = agreement.filter((pl.col("collection") == collection) & (pl.col("scale") == "intensity"))
        stats = (
            item_stats.filter((pl.col("collection") == collection) & (pl.col("scale") == "intensity"))
            if item_stats is not None
            else None
        )
        for rollup in [EMOTION_ROLLUP, *rollup_names]:
            if rollup == EMOTION_ROLLUP:
                inputs = (part, own, raters, agreed, stats)
            else:
                level = members.filter(pl.col("rollup") == rollup)
                panel = rolled_up(
                    panel_ratings.filter(pl.col("collection") == collection),
                    level,
                    ["collection", "image_id", "annotator"],
                    {"value": pl.max("value")},
                )
                inputs = (
                    rolled_up(
                        part,
                        level,
                        ["image_id"],
                        {"median_rating": pl.max("median_rating"), "present": pl.any("present")},
                    ),
                    rolled_up(
                        own,
                        level,
                        ["model_key", "image_id"],
                        {"score": pl.max("score"), "intensity": pl.max("intensity")},
                    ),
                    leave_one_out(panel.join(part.select("image_id").unique(), on="image_id")),
                    panel_agreement(panel, min_pair_items),
                    item_statistics(panel, keys=["emotion_id"]) if item_stats is not None else None,
                )
            summary, per_level = _board(*inputs, registry, resamples, seed, min_coverage, min_pair_items)
            tags = {"collection": pl.lit(collection), "rollup": pl.lit(rollup)}
            summaries.append(summary.with_columns(**tags))
            levels.append(per_level.with_columns(**tags))
    summary = (
        pl.concat(summaries, how="diagonal").select(*SUMMARY_SCHEMA)
        if summaries
        else pl.DataFrame(schema=SUMMARY_SCHEMA)
    )
    order = [
        pl.col("collection") != GENERATED,
        "collection",
        pl.col("rollup") != EMOTION_ROLLUP,
        "rollup",
        pl.col("mean_spearman").fill_nan(None),
        "rank",
    ]
    summary = summary.cast(SUMMARY_SCHEMA).sort(
        order, descending=[False, False, False, False, True, False], nulls_last=True
    )
    per_level = (
        pl.concat(levels).select(*LEVEL_SCHEMA).cast(LEVEL_SCHEMA) if levels else pl.DataFrame(schema=LEVEL_SCHEMA)
    )
    return Leaderboard(summary, per_level)


def _board(
    truth: pl.DataFrame,
    predictions: pl.DataFrame,
    others: pl.DataFrame,
    agreement: pl.DataFrame | None,
    item_stats: pl.DataFrame | None,
    registry: pl.DataFrame,
    resamples: int,
    seed: int,
    min_coverage: float,
    min_pair_items: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One collection at one rollup: summary rows and per-level rows of every model, the baseline and the ceiling."""
    grid = _Grid.of(truth)
    scored = {}
    for model in (
        registry.select("model_key", "name", "kind").unique("model_key", maintain_order=True).iter_rows(named=True)
    ):
        own = predictions.filter(pl.col("model_key") == model["model_key"])
        entry = model | _score_model(grid, grid.scored(own, "score"), grid.scored(own, "intensity"), resamples, seed)
        if item_stats is not None:
            alphas = alpha_with_model(item_stats, own).rename({"emotion_id": "level"})
            entry["per_level"] = entry["per_level"].join(alphas, on="level", how="left")
            entry["summary"] |= {
                f"mean_{c}": float(nanmean(alphas[c].to_numpy())) if alphas.height else None
                for c in ("panel_alpha", "alpha_with_model")
            }
        scored[model["model_key"]] = entry
    shuffled = permuted_predictions(truth.select("image_id", "emotion_id", predicted="median_rating"), truth, seed)
    random = grid.scored(shuffled, "predicted")
    scored[RANDOM_KEY] = {"model_key": RANDOM_KEY, "name": RANDOM_KEY, "kind": "baseline"} | _score_model(
        grid, random, random, resamples, seed
    )
    human = _human_entry(grid, others, agreement, resamples, seed, min_pair_items)
    scored[HUMAN_KEY] = human
    eligible = {
        key: entry["point"]["mean_spearman"]
        for key, entry in scored.items()
        if entry["kind"] in RANKED_KINDS
        and entry["summary"]["coverage"] >= min_coverage
        and np.isfinite(entry["point"]["mean_spearman"])
    }
    order = sorted(eligible, key=lambda key: (-eligible[key], key))
    best = scored[order[0]] if order else None
    summaries, levels = [], []
    for key, entry in scored.items():
        row = {"model_key": key, "name": entry["name"], "kind": entry["kind"], "resamples": resamples}
        row |= entry["summary"] | entry["point"] | _paired(entry, human, "human")
        row |= {"rank": order.index(key) + 1 if key in eligible else None}
        if entry["kind"] != "human":
            row["note"] = _note(entry, min_coverage, key in eligible)
        if best is not None:
            row |= _paired(entry, best, "best")
        summaries.append(row)
        columns = {
            c: pl.lit(None, pl.Float64)
            for c in ("panel_alpha", "alpha_with_model")
            if c not in entry["per_level"].columns
        }
        levels.append(entry["per_level"].with_columns(model_key=pl.lit(key), kind=pl.lit(entry["kind"]), **columns))
    schema = {k: v for k, v in SUMMARY_SCHEMA.items() if k not in ("collection", "rollup")}
    summary = pl.DataFrame([{c: row.get(c) for c in schema} for row in summaries], schema=schema)
    return summary, pl.concat(
        [frame.select(*(c for c in LEVEL_SCHEMA if c not in ("collection", "rollup"))) for frame in levels]
    )


def _note(entry: dict, min_coverage: float, ranked: bool) -> str | None:
    summary = entry["summary"]
    if entry["kind"] not in RANKED_KINDS:
        return "each level's consensus medians shuffled across images"
    if summary["coverage"] < min_coverage:
        return f"coverage {summary['coverage']:.0%} < {min_coverage:.0%}: not ranked"
    if not ranked:
        return "constant scores (no Spearman defined): not ranked"
    return None


def shown_board(summary: pl.DataFrame) -> pl.DataFrame:
    """The columns a person reads of leaderboard rows, rounded: what the UI, the fairness report and the dataset card
    show."""
    rounded = (
        "mean_spearman",
        "mean_spearman_ci_low",
        "mean_spearman_ci_high",
        "mean_kappa_quadratic",
        "mean_presence_f1",
        "mean_mae",
        "diff_vs_human",
        "p_vs_human",
        "p_vs_best",
    )
    return summary.select(
        "collection",
        "rollup",
        "rank",
        "model_key",
        "kind",
        pl.col("coverage").round(3),
        *(pl.col(c).fill_nan(None).round(3) for c in rounded),
        "note",
    )


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


def heatmap(summary: pl.DataFrame, per_level: pl.DataFrame) -> bytes:
    """PNG of each collection's Spearman per model (rows, in the summary's order) and emotion or level (columns)
    of one rollup, -1 to 1 on a diverging scale; a blank cell is a level the model has no Spearman for."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    parts = list(summary.group_by("collection", maintain_order=True))
    n_levels = max(per_level["level"].n_unique(), 1)
    height = sum(3.2 + 0.3 * part.height for _, part in parts)
    figure = Figure(figsize=(2.5 + 0.22 * n_levels, height), layout="constrained")
    FigureCanvasAgg(figure)
    image = None
    for i, ((collection,), part) in enumerate(parts, start=1):
        axes = figure.add_subplot(len(parts), 1, i)
        models = part["model_key"].to_list()
        cells = per_level.filter(
            (pl.col("collection") == collection) & pl.col("rollup").is_in(part["rollup"].unique().implode())
        )
        levels = sorted(cells["level"].unique().to_list())
        values = np.full((len(models), len(levels)), np.nan)
        if levels:
            wide = pl.DataFrame({"model_key": models}).join(
                cells.pivot(on="level", index="model_key", values="spearman", aggregate_function="first"),
                on="model_key",
                how="left",
                maintain_order="left",
            )
            values = wide.select(levels).cast(pl.Float64).fill_null(np.nan).to_numpy()
        image = axes.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
        axes.set_yticks(range(len(models)), models, fontsize=7)
        axes.set_xticks(range(len(levels)), levels, fontsize=7, rotation=90)
        axes.set_title(f"{collection}: Spearman vs consensus median per model and {part['rollup'][0]}", fontsize=9)
    if image is not None:
        figure.colorbar(image, ax=figure.axes, shrink=0.8, label="Spearman")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
