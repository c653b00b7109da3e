"""Models on binary-labelled collections (present/absent judgements, such as the released Binary set imported as an
external collection): ROC AUC of the model's score against the collection's presence consensus, per emotion and
pooled over items, and F1 of its intensity at 1 or more."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl

from emonet_assets.lib.shared.rules import GENERATED

POOLED = "(pooled)"
BINARY_SCHEMA = {
    "collection": pl.String,
    "model_key": pl.String,
    "emotion_id": pl.String,
    "n_items": pl.Int64,
    "n_positive": pl.Int64,
    "coverage": pl.Float64,
    "roc_auc": pl.Float64,
    "f1": pl.Float64,
}


def binary_truth(consensus: pl.DataFrame, splits: pl.DataFrame, collections: list[str]) -> pl.DataFrame:
    """Presence consensus of the binary items models are scored on: the generated test split's and every binary
    collection declared for evaluation (collection, image_id, emotion_id, present)."""
    test = splits.filter(pl.col("split") == "test")["image_sha256"].implode()
    wanted = (pl.col("scale") == "binary") & (
        ((pl.col("collection") == GENERATED) & pl.col("image_id").is_in(test)) | pl.col("collection").is_in(collections)
    )
    return (
        consensus.filter(wanted)
        .select("collection", "image_id", "emotion_id", "present")
        .drop_nulls("present")
        .sort("collection", "image_id", "emotion_id")
    )


def _scores(truth: np.ndarray, score: np.ndarray, intensity: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import f1_score, roc_auc_score

    auc = float(roc_auc_score(truth, score)) if 0 < truth.sum() < truth.size else np.nan
    rated = ~np.isnan(intensity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f1 = float(f1_score(truth[rated], intensity[rated] >= 1, zero_division=np.nan)) if rated.any() else np.nan
    return auc, f1


def binary_metrics(predictions: pl.DataFrame, truth: pl.DataFrame, model_keys: list[str]) -> pl.DataFrame:
    """Per collection, model and emotion, and pooled over every (image, emotion) item: items judged, positives, the
    share the model scored, ROC AUC (NaN where one class is absent) and F1."""
    rows = []
    for (collection,), part in truth.group_by("collection", maintain_order=True):
        for key in model_keys:
            own = predictions.filter(pl.col("model_key") == key).select("image_id", "emotion_id", "score", "intensity")
            joined = part.join(own, on=["image_id", "emotion_id"], how="left")
            scored = joined.drop_nulls("score")
            groups = [*scored.group_by("emotion_id", maintain_order=True), ((POOLED,), scored)]
            totals = dict(joined.group_by("emotion_id").len().iter_rows()) | {POOLED: joined.height}
            for (emotion,), items in sorted(groups, key=lambda g: (g[0][0] == POOLED, g[0][0])):
                present = items["present"].cast(pl.Int64).to_numpy()
                intensity = items["intensity"].cast(pl.Float64).fill_null(np.nan).to_numpy()
                auc, f1 = _scores(present, items["score"].to_numpy(), intensity)
                coverage = items.height / totals[emotion]
                rows.append((collection, key, emotion, items.height, int(present.sum()), coverage, auc, f1))
    return pl.DataFrame(rows, schema=BINARY_SCHEMA, orient="row")
