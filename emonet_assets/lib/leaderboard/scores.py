"""One registered model's scores on the evaluation images, with the lineage every row is traced back through and
the coverage the leaderboard ranks by."""

from __future__ import annotations

import polars as pl

from emonet_assets.lib.leaderboard.predictions import to_intensity
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
    "prompt_hash": pl.String,
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
    scores: pl.DataFrame,
    model_key: str,
    fingerprint: str,
    collection: str | None,
    scale: str,
    images: pl.DataFrame,
    prompts_hash: str | None = None,
) -> pl.DataFrame:
    """Scores (image_id, emotion_id, score, optionally intensity and source_row; without intensity, it follows from
    the score and its scale) with the model's key and
    fingerprint, the hash of the prompts it was asked with (zero-shot), the image's collection, and for generated
    images their sha256 and prompt id (`images`: generated_images' image_sha256, prompt_id)."""
    if "intensity" not in scores.columns:
        intensity = pl.Series(to_intensity(scores["score"].to_numpy(), scale), dtype=pl.Float64).fill_nan(None)
        scores = scores.with_columns(intensity=intensity)
    if "source_row" not in scores.columns:
        scores = scores.with_columns(source_row=pl.lit(None, pl.Int64))
    generated = collection is None
    prompts = images.select("image_sha256", "prompt_id").unique("image_sha256")
    frame = scores.with_columns(
        model_key=pl.lit(model_key),
        model_fingerprint=pl.lit(fingerprint),
        prompt_hash=pl.lit(prompts_hash, pl.String),
        collection=pl.lit(collection or GENERATED),
        image_sha256=pl.col("image_id") if generated else pl.lit(None, pl.String),
    ).join(prompts, on="image_sha256", how="left")
    return frame.select(*SCORE_SCHEMA).cast(SCORE_SCHEMA)


def generated_image_files(truth: pl.DataFrame, images: pl.DataFrame) -> pl.DataFrame:
    """image_sha256 and image_path of the generated evaluation images, for models that look at pixels."""
    wanted = truth.filter(pl.col("collection") == GENERATED).select(image_sha256="image_id").unique()
    return (
        images.select("image_sha256", "image_path")
        .unique("image_sha256")
        .join(wanted, on="image_sha256")
        .sort("image_sha256")
    )


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
