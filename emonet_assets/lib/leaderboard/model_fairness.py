"""Each registered model's fairness, with the fairness report's own code (lib/fairness): metrics by demographic
group and intersection, and by the design's robustness axes (occlusion, lighting, pose) and the image's generator,
each alone; the gaps between groups and the same gates.

A model is judged on the generated test images it scored, by its 0-7 intensity; a model of ranks only (zero-shot
similarities, a file on the rank scale) by its Spearman gaps alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from emonet_assets.lib.fairness.fairness import (
    ATTRIBUTES,
    DISPARITY_SCHEMA,
    GATE_SCHEMA,
    GROUP_SCHEMA,
    disparities,
    gate_table,
    group_metrics,
)
from emonet_assets.lib.shared.rules import GENERATED

ROBUSTNESS = ("occlusion", "lighting", "pose", "generator")
SPEARMAN = "mean_spearman"


@dataclass(frozen=True)
class ModelFairness:
    groups: pl.DataFrame
    gaps: pl.DataFrame
    gates: pl.DataFrame


def image_slices(manifest: pl.DataFrame, prompts: pl.DataFrame) -> pl.DataFrame:
    """Each generated image's designed demographics and robustness axes, from its prompt, and the model that
    generated it."""
    return (
        manifest.select("image_sha256", "prompt_id", generator="model")
        .join(prompts.select("prompt_id", *ATTRIBUTES, *ROBUSTNESS[:-1]), on="prompt_id", how="left")
        .select(image_id="image_sha256", **{a: a for a in (*ATTRIBUTES, *ROBUSTNESS)})
    )


def model_fairness(
    predictions: pl.DataFrame,
    model_keys: list[str],
    consensus: pl.DataFrame,
    slices: pl.DataFrame,
    max_gap: Mapping[str, float],
    min_group_size: int = 20,
    resamples: int = 1000,
    seed: int = 42,
) -> ModelFairness:
    """Per model of `model_keys`: group metrics (lib.fairness.group_metrics) by age, gender, ethnicity group and
    their intersections, and by each robustness axis alone; disparities and gates, each row with its model_key."""
    groups, gaps, gates = [], [], []
    tagged = {"model_key": pl.String}
    for key in model_keys:
        own = predictions.filter((pl.col("model_key") == key) & (pl.col("collection") == GENERATED))
        if not own.height:
            continue
        ranks_only = own["intensity"].null_count() == own.height
        own = own.select("image_id", "emotion_id", predicted=pl.coalesce("intensity", "score"))
        axes = [ATTRIBUTES, *((axis,) for axis in ROBUSTNESS)]
        table = pl.concat(
            [group_metrics(own, consensus, slices, attributes, min_group_size, resamples, seed) for attributes in axes]
        )
        limits = dict(max_gap)
        if ranks_only:  # scores without an intensity: MAE and presence mean nothing, Spearman alone is judged
            table = table.filter(pl.col("metric") == SPEARMAN)
            limits = {m: v for m, v in limits.items() if m == SPEARMAN}
        gap = disparities(table)
        for frames, frame in ((groups, table), (gaps, gap), (gates, gate_table(gap, limits))):
            frames.append(frame.select(pl.lit(key).alias("model_key"), pl.all()))
    return ModelFairness(
        pl.concat(groups) if groups else pl.DataFrame(schema=tagged | GROUP_SCHEMA),
        pl.concat(gaps) if gaps else pl.DataFrame(schema=tagged | DISPARITY_SCHEMA),
        pl.concat(gates) if gates else pl.DataFrame(schema=tagged | GATE_SCHEMA),
    )
