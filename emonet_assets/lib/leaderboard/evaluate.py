"""One model's metrics on one collection, from the leaderboard's tables: what `emonet evaluate` prints."""

from __future__ import annotations

import math

import polars as pl

from emonet_assets.lib.leaderboard.binary import POOLED
from emonet_assets.lib.leaderboard.leaderboard import EMOTION_ROLLUP

_INTENSITY = (
    "mean_spearman",
    "mean_spearman_ci_low",
    "mean_spearman_ci_high",
    "mean_kappa_quadratic",
    "mean_presence_f1",
    "mean_mae",
    "coverage",
    "mean_alpha_with_model",
    "mean_panel_alpha",
    "diff_vs_human",
    "diff_vs_human_ci_low",
    "diff_vs_human_ci_high",
    "p_vs_human",
)


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def evaluation_report(
    board: pl.DataFrame, binary: pl.DataFrame, predictions: pl.DataFrame, model_key: str, collection: str
) -> dict:
    """`model`, `collection`, `n_images`, `n_items` and `metrics`: the intensity metrics over emotions where the
    collection has intensity consensus (`mean_spearman`, its CI, kappa, F1, MAE, coverage, rank, the paired
    difference from the human ceiling), `roc_auc` and `f1` pooled over
    items where it has binary consensus; NaN is reported as null."""
    report = {"model": model_key, "collection": collection, "n_images": 0, "n_items": 0, "metrics": {}}
    mine = (pl.col("collection") == collection) & (pl.col("model_key") == model_key)
    row = board.filter(mine & (pl.col("rollup") == EMOTION_ROLLUP))
    if row.height:
        values = row.row(0, named=True)
        report["metrics"] |= {name: _number(values[name]) for name in _INTENSITY} | {"rank": values["rank"]}
        report["n_images"] = values["n_images"]
    pooled = binary.filter(
        (pl.col("collection") == collection) & (pl.col("model_key") == model_key) & (pl.col("emotion_id") == POOLED)
    )
    if pooled.height:
        values = pooled.row(0, named=True)
        report["metrics"] |= {"roc_auc": _number(values["roc_auc"]), "f1": _number(values["f1"])}
        report["n_items"] = values["n_items"]
    own = predictions.filter(pl.col("collection") == collection)
    report["n_images"] = report["n_images"] or own["image_id"].n_unique()
    report["n_items"] = report["n_items"] or own.height
    return report
