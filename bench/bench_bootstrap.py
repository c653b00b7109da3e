"""The bootstrap's fused Spearman kernel against the numpy passes it replaced, at release scale: images x 40 emotions,
predictions that follow half-point consensus medians with noise, time and agreement.

The reference is the test suite's copy of the old code (`emonet_assets_tests.reference_bootstrap`). `--check` also
compares the fairness intervals per group (one draw for all three metrics against two) and a few resamples with
`scipy.stats.spearmanr`, and prints the largest absolute difference and whether the draw counts are bitwise equal.
`python -m bench.bench_bootstrap [--images N] [--resamples R] [--check]`.
"""

import argparse
import time

import numpy as np
import polars as pl

EMOTIONS = 40


def planted(images: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 15, (images, EMOTIONS)) / 2
    predicted = np.clip(truth + rng.normal(0, 1.0, truth.shape), 0, 7)
    predicted[:, 1] = np.round(predicted[:, 1])  # ties on the model's side too
    truth[rng.random(truth.shape) < 0.02] = np.nan
    return predicted, truth


def _max_difference(ours: np.ndarray, expected: np.ndarray) -> float:
    if not np.array_equal(np.isnan(ours), np.isnan(expected)):
        return float("inf")
    finite = ~np.isnan(ours)
    return float(np.max(np.abs(ours[finite] - expected[finite]), initial=0.0))


def _cells(predicted: np.ndarray, truth: np.ndarray):
    from emonet_assets.lib.fairness.fairness import _Cells

    rng = np.random.default_rng(1)
    groups = pl.DataFrame({"ethnicity_group": rng.choice(["a", "b", "c", "d", "e", "f", "g", "h"], len(truth))})
    present = np.where(np.isnan(truth), np.nan, truth >= 1)
    return _Cells(groups, [f"e{e:02d}" for e in range(EMOTIONS)], truth, predicted, present)


def check(predicted: np.ndarray, truth: np.ndarray, resamples: int, draws: np.ndarray, reference: np.ndarray) -> None:
    from scipy.stats import spearmanr

    from emonet_assets.lib.consensus.agreement import draw_counts, resample_indices
    from emonet_assets.lib.fairness import fairness
    from emonet_assets_tests import reference_bootstrap

    print(f"spearman draws: max |new - reference| {_max_difference(draws, reference):.3g}")
    first = next(resample_indices(len(truth), resamples, 42))
    old_counts = np.stack([np.bincount(drawn, minlength=len(truth)) for drawn in first])
    print(f"draw counts bitwise equal to the reference's: {np.array_equal(draw_counts(first, len(truth)), old_counts)}")
    scipy_gap = 0.0
    for r, drawn in enumerate(first[:3]):
        for c in range(EMOTIONS):
            kept = drawn[~np.isnan(truth[drawn, c])]
            scipy_gap = max(scipy_gap, abs(draws[c, r] - spearmanr(predicted[kept, c], truth[kept, c]).statistic))
    print(f"spearman draws: max |new - scipy.stats.spearmanr| over 3 resamples x {EMOTIONS} emotions {scipy_gap:.3g}")
    cells = _cells(predicted, truth)
    gap, started, ours_s = 0.0, time.perf_counter(), 0.0
    for rows in fairness._rows_by_group(cells, ["ethnicity_group"]).values():
        clock = time.perf_counter()
        _, ours = fairness._values_and_intervals(cells, rows, resamples, 42)
        ours_s += time.perf_counter() - clock
        expected = reference_bootstrap.intervals(cells, rows, resamples, 42)
        gap = max(gap, *(_max_difference(np.array(ours[m]), np.array(expected[m])) for m in ours))
    print(
        f"fairness intervals of 8 groups: {ours_s:.1f} s (reference {time.perf_counter() - started - ours_s:.1f} s), "
        f"max |new - reference| {gap:.3g}"
    )


def main() -> None:
    from emonet_assets.lib.model.evaluation import spearman_draws
    from emonet_assets_tests import reference_bootstrap

    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    predicted, truth = planted(args.images)
    spearman_draws(predicted[:50], truth[:50], 2, 0)  # compiled (or loaded from numba's cache) before timing
    started = time.perf_counter()
    _, draws = spearman_draws(predicted, truth, args.resamples, 42)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    _, reference = reference_bootstrap.spearman_draws(predicted, truth, args.resamples, 42)
    theirs = time.perf_counter() - started
    print(
        f"spearman_draws, {args.images:,} images x {EMOTIONS} emotions x {args.resamples:,} resamples: fused kernel "
        f"{ours:.1f} s, numpy reference {theirs:.1f} s ({theirs / ours:.1f}x)"
    )
    if args.check:
        check(predicted, truth, args.resamples, draws, reference)


if __name__ == "__main__":
    main()
