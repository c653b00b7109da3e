"""The release's rows: one per split image with its labels and lineage, refused when the data is incomplete."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from emonet_assets.lib.release.licenses import permits
from emonet_assets.lib.release.schema import CONSENSUS_FEATURES, FEATURES, RATING_FEATURES
from emonet_assets.lib.shared.rules import GENERATED, GENERATED_INTENSITY


class ReleaseRefused(ValueError):
    """The data is not complete enough to publish; the message names counts and examples."""


@dataclass(frozen=True)
class ReleaseTables:
    """The platform tables a release is assembled from."""

    splits: pl.DataFrame
    generated: pl.DataFrame
    prompts: pl.DataFrame
    qc: pl.DataFrame
    consensus: pl.DataFrame
    annotations: pl.DataFrame


def _examples(frame: pl.DataFrame, describe: Callable[[dict], str], limit: int = 3) -> str:
    return "; ".join(describe(row) for row in frame.head(limit).iter_rows(named=True))


def release_rows(tables: ReleaseTables, emotion_ids: list[str], max_failed_qc_share: float) -> pl.DataFrame:
    """One row per split image with everything but the image bytes, in split then sha256 order.

    Refuses a dataset that is not complete: too many generated images failing QC, split images without
    a generation record, a prompt, a QC pass or intensity consensus for every emotion.
    """
    qc = tables.qc.select("image_sha256", "passed", "reasons", "phash")
    failed = qc.filter(~pl.col("passed"))
    share = failed.height / qc.height if qc.height else 0.0
    if share > max_failed_qc_share:
        raise ReleaseRefused(
            f"{failed.height} of {qc.height} generated images ({share:.1%}) failed QC, above the profile's "
            f"release.max_failed_qc_share {max_failed_qc_share:.1%}; e.g. "
            + _examples(failed, lambda r: f"{r['image_sha256'][:12]} ({', '.join(r['reasons'] or []) or 'failed'})")
        )
    split_images = tables.splits.select("image_sha256", "split").unique("image_sha256").sort("split", "image_sha256")
    if split_images.is_empty():
        raise ReleaseRefused("the splits table has no images: nothing to release")
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
    _refuse_missing(rows.filter(pl.col("prompt_id").is_null()), "have no row in the generation manifest")
    _refuse_missing(rows.filter(pl.col("prompt").is_null()), "have no prompt in prompt_design")
    _refuse_missing(rows.filter(~pl.col("passed").fill_null(False)), "did not pass QC")

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
    incomplete = rows.filter(pl.col("labelled").list.len().fill_null(0) < len(emotion_ids)).with_columns(
        missing=pl.col("labelled")
        .fill_null([])
        .map_elements(lambda got: [e for e in emotion_ids if e not in set(got)], return_dtype=pl.List(pl.String))
    )
    if incomplete.height:
        raise ReleaseRefused(
            f"{incomplete.height} of {rows.height} split images lack intensity consensus for some of the "
            f"{len(emotion_ids)} emotions; e.g. "
            + _examples(
                incomplete,
                lambda r: (
                    f"{r['image_sha256'][:12]} ({r['split']}): {len(r['missing'])} missing "
                    f"({', '.join(r['missing'][:3])}{', ...' if len(r['missing']) > 3 else ''})"
                ),
            )
        )
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


def _refuse_missing(bad: pl.DataFrame, reason: str) -> None:
    if bad.height:
        raise ReleaseRefused(
            f"{bad.height} split images {reason}; e.g. "
            + _examples(bad, lambda r: f"{r['image_sha256'][:12]} ({r['split']})")
        )


def license_conflicts(rows: pl.DataFrame, release_license: str) -> pl.DataFrame:
    """Generation models whose license forbids the release license, with how many rows each has."""
    models = rows.group_by("generation_model", "model_fingerprint", "license").agg(images=pl.len())
    allowed = [permits(license_id, release_license) for license_id in models["license"].to_list()]
    return models.filter(~pl.Series(allowed, dtype=pl.Boolean)).sort("generation_model", "model_fingerprint")
