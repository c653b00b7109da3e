"""The release's rows as the release assembled them in polars before DuckDB did (every table read whole): the
reference the DuckDB rows are checked against, kept here and not in the product."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from emonet_assets.lib.release.schema import CONSENSUS_FEATURES, FEATURES, RATING_FEATURES
from emonet_assets.lib.shared.rules import GENERATED, GENERATED_INTENSITY


@dataclass(frozen=True)
class ReleaseTables:
    """The platform tables a release is assembled from."""

    splits: pl.DataFrame
    generated: pl.DataFrame
    prompts: pl.DataFrame
    qc: pl.DataFrame
    consensus: pl.DataFrame
    annotations: pl.DataFrame


def reference_rows(tables: ReleaseTables, emotion_ids: list[str]) -> pl.DataFrame:
    """One row per split image with everything but the image bytes, in split then sha256 order (complete data)."""
    qc = tables.qc.select("image_sha256", "passed", "reasons", "phash")
    split_images = tables.splits.select("image_sha256", "split").unique("image_sha256").sort("split", "image_sha256")
    generated = tables.generated.unique("image_sha256", keep="last").select(
        "image_sha256",
        "prompt_id",
        "image_path",
        "seed",
        pl.col("model").alias("generation_model"),
        "model_fingerprint",
        "license",
        "scheduler",
        "steps",
        "guidance",
        "width",
        "height",
        "shard",
    )
    prompts = tables.prompts.select(
        "prompt_id",
        "prompt",
        "emotion_id",
        "emotion",
        "emotion_group",
        "age",
        "gender",
        "ethnicity",
        "ethnicity_group",
        "occlusion",
        "lighting",
        "pose",
        "template_id",
        "cell_id",
        "design_seed",
        "design_version",
        "taxonomy_version",
    )
    rows = split_images.join(generated, on="image_sha256", how="left").join(prompts, on="prompt_id", how="left")
    rows = rows.join(qc, on="image_sha256", how="left")
    consensus = tables.consensus.filter(
        GENERATED_INTENSITY
        & pl.col("image_id").is_in(split_images["image_sha256"].implode())
        & pl.col("emotion_id").is_in(emotion_ids)
    )
    order = pl.DataFrame({"emotion_id": emotion_ids, "order": range(len(emotion_ids))})
    labels = (
        consensus.join(order, on="emotion_id")
        .sort("image_id", "order")
        .group_by("image_id", maintain_order=True)
        .agg(
            pl.col("emotion_id").alias("labelled"),
            pl.col("median_rating").alias("intensity_median"),
            pl.struct(*CONSENSUS_FEATURES).alias("consensus"),
        )
        .rename({"image_id": "image_sha256"})
    )
    rows = rows.join(labels, on="image_sha256", how="left")
    ratings = (
        tables.annotations.filter(
            (pl.col("collection") == GENERATED) & pl.col("image_id").is_in(split_images["image_sha256"].implode())
        )
        .sort("image_id", "emotion_id", "annotator", "scale", "batch_id", "source_row")
        .group_by("image_id", maintain_order=True)
        .agg(
            pl.struct(*RATING_FEATURES).alias("ratings"),
            pl.col("batch_id").unique().sort().alias("annotation_batch_ids"),
        )
        .rename({"image_id": "image_sha256"})
    )
    rows = rows.join(ratings, on="image_sha256", how="left").with_columns(
        pl.col("ratings").fill_null([]),
        pl.col("annotation_batch_ids").fill_null([]),
        qc_passed=pl.col("passed"),
        qc_reasons=pl.col("reasons").fill_null([]),
        source_image_path=pl.col("image_path"),
    )
    return rows.select([name for name in FEATURES if name != "image"]).sort("split", "image_sha256")
