"""The leaderboard for 10 models x 2,500 images x 40 emotions x 1,000 paired resamples, beside the human ceiling of
3 annotators on the same draws: time and peak memory.

The baseline is the plain loop a reader would write (scipy's spearmanr per resample and emotion on the drawn
images), timed on a few resamples of one model and extrapolated to every model and resample.
`python -m bench.bench_leaderboard [--images N] [--models M] [--resamples R]`.
"""

import argparse
import time

import numpy as np
import polars as pl

from bench.common import in_process, peak_rss_mb

NAIVE_RESAMPLES = 5


def planted(
    images: int, models: int, emotions: int = 40, annotators: int = 3
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Consensus medians, models that follow them with growing noise, and `annotators` ratings of every item
    around them (the human ceiling's input)."""
    rng = np.random.default_rng(0)
    image_ids = np.repeat([f"img{i:05d}" for i in range(images)], emotions)
    emotion_ids = np.tile([f"e{e:02d}" for e in range(emotions)], images)
    medians = rng.integers(0, 15, images * emotions) / 2
    truth = pl.DataFrame(
        {
            "collection": "generated",
            "image_id": image_ids,
            "emotion_id": emotion_ids,
            "median_rating": medians,
            "present": medians >= 1,
        }
    )
    frames = []
    for m in range(models):
        score = np.clip(medians + rng.normal(0, 0.5 + m * 0.5, medians.size), 0, 7)
        frames.append(
            pl.DataFrame(
                {"model_key": f"m{m}", "image_id": image_ids, "emotion_id": emotion_ids, "score": score}
            ).with_columns(intensity=pl.col("score"))
        )
    registry = pl.DataFrame({"model_key": [f"m{m}" for m in range(models)], "name": "m", "kind": "predictions"})
    ratings = pl.concat(
        truth.select(
            "collection",
            "image_id",
            "emotion_id",
            scale=pl.lit("intensity"),
            annotator=pl.lit(f"a{a}"),
            value=pl.Series(np.clip(np.rint(medians + rng.normal(0, 1, medians.size)), 0, 7).astype(np.int64)),
        )
        for a in range(annotators)
    )
    return truth, pl.concat(frames), registry, ratings


def stage_leaderboard(images: int, models: int, resamples: int) -> dict:
    from emonet_assets.lib.leaderboard.leaderboard import build_leaderboard

    truth, predictions, registry, ratings = planted(images, models)
    agreement = pl.DataFrame(
        schema={
            "collection": pl.String,
            "scale": pl.String,
            "emotion_id": pl.String,
            "kappa_quadratic_mean": pl.Float64,
            "alpha_interval": pl.Float64,
        }
    )
    started = time.perf_counter()
    board = build_leaderboard(predictions, registry, truth, agreement, ratings, resamples, 42)
    return {"seconds": time.perf_counter() - started, "rows": board.summary.height, "peak_rss_mb": peak_rss_mb()}


def stage_naive(images: int, models: int, resamples: int) -> dict:
    """scipy's spearmanr on each drawn sample, for a few resamples of one model, extrapolated."""
    from scipy.stats import spearmanr

    from emonet_assets.lib.consensus.agreement import resample_indices

    truth, predictions, _, _ = planted(images, 1)
    shape = (images, 40)
    medians = truth["median_rating"].to_numpy().reshape(shape)
    scores = predictions["score"].to_numpy().reshape(shape)
    started = time.perf_counter()
    for indices in resample_indices(images, NAIVE_RESAMPLES, 42):
        for drawn in indices:
            np.nanmean([spearmanr(scores[drawn, e], medians[drawn, e])[0] for e in range(shape[1])])
    seconds = (time.perf_counter() - started) / NAIVE_RESAMPLES * resamples * models
    return {"seconds": seconds}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2500)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    size = (args.images, args.models, args.resamples)
    board = in_process(stage_leaderboard, *size)
    naive = in_process(stage_naive, *size)
    print(f"leaderboard: {args.models} models x {args.images:,} images x 40 emotions x {args.resamples:,} resamples")
    print(f"  build_leaderboard        {board['seconds']:8.1f} s   peak RSS {board['peak_rss_mb']:,.0f} MB")
    print(f"  scipy loop (extrapolated from {NAIVE_RESAMPLES} resamples) {naive['seconds']:8.1f} s")
    print(f"ratio scipy loop / leaderboard: {naive['seconds'] / board['seconds']:.1f}x")
