"""Spearman's rho of bootstrap resamples in one compiled pass per (column, resample), on integers only, and the
resamples' draw counts it takes.

A resample is given as how often each image was drawn. A value's average rank is the number of smaller draws plus
(its own draws + 1) / 2, so doubled and centered it is the integer 2 * below + drawn here - drawn in all; the
covariance and the squared deviations of those integers are summed exactly in int64 (exact up to about a million
items per column) and only their ratio is a float. Imported where a bootstrap runs: numba takes a moment to load.
"""

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def spearman_of_counts(counts, bounds, items, x_group, y_group, x_groups, y_groups, out):  # noqa: PLR0913
    """out[c, r]: rho of column c in resample r. Column c's items are items[bounds[c]:bounds[c + 1]] (indices into
    the images of `counts`, resamples x images), with their tie groups on each side (0-based, ascending by value)
    and x_groups[c], y_groups[c] groups; NaN where a side is constant, as `scipy.stats.spearmanr`."""
    for c in numba.prange(bounds.size - 1):
        lo, hi = bounds[c], bounds[c + 1]
        per_x = np.empty(x_groups[c], np.int64)
        per_y = np.empty(y_groups[c], np.int64)
        for r in range(counts.shape[0]):
            per_x[:] = 0
            per_y[:] = 0
            for k in range(lo, hi):
                drawn = counts[r, items[k]]
                per_x[x_group[k]] += drawn
                per_y[y_group[k]] += drawn
            total = per_x.sum()
            squares_x = _doubled_centered_ranks(per_x, total)
            squares_y = _doubled_centered_ranks(per_y, total)
            covariance = 0
            for k in range(lo, hi):
                covariance += counts[r, items[k]] * per_x[x_group[k]] * per_y[y_group[k]]
            if squares_x > 0 and squares_y > 0:
                rho = covariance / np.sqrt(float(squares_x) * float(squares_y))
                out[c, r] = min(max(rho, -1.0), 1.0)
            else:
                out[c, r] = np.nan


@numba.njit(cache=True)
def count_draws(indices, n_images):
    """How often each image was drawn in each resample (resamples x images): a histogram per row, without the
    offset copy and the flat histogram of all rows `np.bincount` needs."""
    counts = np.zeros((indices.shape[0], n_images), np.int64)
    for r in range(indices.shape[0]):
        for image in indices[r]:
            counts[r, image] += 1
    return counts


@numba.njit(cache=True)
def _doubled_centered_ranks(per_value, total):
    """Replaces each value's draw count by its doubled, centered average rank; returns the sum over draws of its
    square."""
    below = 0
    squares = 0
    for g in range(per_value.size):
        drawn = per_value[g]
        rank = 2 * below + drawn - total
        squares += drawn * rank * rank
        below += drawn
        per_value[g] = rank
    return squares
