"""One registered model's scores on the evaluation images, with the lineage every row is traced back through and
the coverage the leaderboard ranks by."""

from __future__ import annotations

import polars as pl

from emonet_assets.lib.model.embedding import embedding_matrix
from emonet_assets.lib.model.emotion_model import TrainedModel
from emonet_assets.lib.model.modeling import predictions_frame
from emonet_assets.lib.shared.rules import GENERATED

SCORE_SCHEMA = {
    "model_key": pl.String,
    "model_fingerprint": pl.String,
    "collection": pl.String,
    "image_id": pl.String,
    "image_sha256": pl.String,
    "prompt_id": pl.String,
    "emotion_id": pl.String,
    "score": pl.Float64,
    "intensity": pl.Float64,
    "source_row": pl.Int64,
}


def head_scores(model: TrainedModel, embeddings: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """The trained heads on every evaluation image they can see: the generated ones embedded by their backbone
    (an external collection's images have no pixels here)."""
    wanted = truth.filter(pl.col("collection") == GENERATED).select(image_sha256="image_id").unique()
    table = embeddings.join(wanted, on="image_sha256", how="semi").sort("image_sha256")
    if not table.height:
        return pl.DataFrame(schema={"image_id": pl.String, "emotion_id": pl.String, "score": pl.Float64})
    shas, x = embedding_matrix(table)
    scores = predictions_frame(shas, model.predict(x), model.emotion_ids)
    return scores.select("image_id", "emotion_id", score="predicted")


def with_lineage(
    scores: pl.DataFrame, model_key: str, fingerprint: str, collection: str | None, images: pl.DataFrame
) -> pl.DataFrame:
    """Scores (image_id, emotion_id, score, optionally intensity and source_row) with the model's key and
    fingerprint, the image's collection, and for generated images their sha256 and prompt id (`images`:
    generated_images' image_sha256, prompt_id)."""
    for column, dtype in (("intensity", pl.Float64), ("source_row", pl.Int64)):
        if column not in scores.columns:
            scores = scores.with_columns(
                (pl.col("score") if column == "intensity" else pl.lit(None)).cast(dtype).alias(column)
            )
    generated = collection is None
    prompts = images.select("image_sha256", "prompt_id").unique("image_sha256")
    frame = scores.with_columns(
        model_key=pl.lit(model_key),
        model_fingerprint=pl.lit(fingerprint),
        collection=pl.lit(collection or GENERATED),
        image_sha256=pl.col("image_id") if generated else pl.lit(None, pl.String),
    ).join(prompts, on="image_sha256", how="left")
    return frame.select(*SCORE_SCHEMA).cast(SCORE_SCHEMA)


def coverage(scores: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Per evaluation collection: rated cells, the cells this model scored, their share, and scored images."""
    joined = truth.join(
        scores.select("image_id", "emotion_id", scored=pl.lit(True)), on=["image_id", "emotion_id"], how="left"
    )
    return (
        joined.group_by("collection")
        .agg(
            rated_cells=pl.len(),
            scored_cells=pl.col("scored").fill_null(False).sum(),
            scored_images=pl.col("image_id").filter(pl.col("scored").fill_null(False)).n_unique(),
        )
        .with_columns(coverage=pl.col("scored_cells") / pl.col("rated_cells"))
        .sort("collection")
    )
