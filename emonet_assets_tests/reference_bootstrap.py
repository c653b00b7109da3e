"""The bootstrap as it was before its fused kernel (numpy passes over resamples x images, the draws made once for
Spearman and again for MAE and F1), kept verbatim as the reference the kernel must match: draws bitwise, floats
within 1e-12. Used by the tests and by `bench.bench_bootstrap --check` at 100k images."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from emonet_assets.lib.consensus.agreement import resample_indices
from emonet_assets.lib.fairness.fairness import _Cells, _mean_f1, _mean_mae, _nanmean, _percentile


class _Ties(NamedTuple):
    order: np.ndarray
    starts: np.ndarray
    group: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray) -> _Ties:
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        first = np.r_[True, ordered[1:] != ordered[:-1]]
        group = np.empty(values.size, dtype=np.int64)
        group[order] = np.cumsum(first) - 1
        return cls(order, np.flatnonzero(first), group)


def _centered_ranks(ties: _Ties, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    per_value = np.add.reduceat(weights[:, ties.order], ties.starts, axis=1)
    below = np.cumsum(per_value, axis=1) - per_value
    drawn = per_value.sum(axis=1, keepdims=True)
    centered = below + (per_value + 1) / 2 - (drawn + 1) / 2
    return centered[:, ties.group], per_value * centered**2


def _weighted_spearman(x: _Ties, y: _Ties, weights: np.ndarray) -> np.ndarray:
    rank_x, squares_x = _centered_ranks(x, weights)
    rank_y, squares_y = _centered_ranks(y, weights)
    covariance = (weights * rank_x * rank_y).sum(axis=1)
    scale = np.sqrt(squares_x.sum(axis=1) * squares_y.sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(scale > 0, covariance / scale, np.nan)
    return np.clip(rho, -1.0, 1.0)


def _draw_counts(indices: np.ndarray, n_images: int) -> np.ndarray:
    rows = np.arange(indices.shape[0])[:, None] * n_images
    return np.bincount((rows + indices).ravel(), minlength=indices.shape[0] * n_images).reshape(-1, n_images)


def spearman_draws(
    predicted: np.ndarray, truth: np.ndarray, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    n_images, n_columns = predicted.shape
    observed = ~(np.isnan(predicted) | np.isnan(truth))
    columns = []
    for c in range(n_columns):
        items = np.flatnonzero(observed[:, c])
        if items.size:
            columns.append((c, items, _Ties.of(predicted[items, c]), _Ties.of(truth[items, c])))
    point = np.full(n_columns, np.nan)
    draws = np.full((n_columns, resamples), np.nan)
    for c, items, x, y in columns:
        point[c] = _weighted_spearman(x, y, np.ones((1, items.size)))[0]
    done = 0
    for indices in resample_indices(n_images, resamples, seed):
        counts = _draw_counts(indices, n_images)
        for c, items, x, y in columns:
            draws[c, done : done + indices.shape[0]] = _weighted_spearman(x, y, counts[:, items])
        done += indices.shape[0]
    return point, draws


def intervals(cells: _Cells, rows: np.ndarray, resamples: int, seed: int) -> dict[str, tuple[float, float]]:
    """fairness._intervals as it was."""
    truth, predicted, present = cells.truth[rows], cells.predicted[rows], cells.present[rows]
    spearman = _nanmean(spearman_draws(predicted, truth, resamples, seed)[1], axis=0)
    mae, f1 = [], []
    for indices in resample_indices(rows.size, resamples, seed):
        weights = np.stack([np.bincount(drawn, minlength=rows.size) for drawn in indices]).astype(np.float64)
        mae.append(_mean_mae(truth, predicted, weights))
        f1.append(_mean_f1(present, predicted, weights))
    return {
        "mean_spearman": _percentile(spearman),
        "mean_mae": _percentile(np.concatenate(mae)),
        "mean_presence_f1": _percentile(np.concatenate(f1)),
    }
