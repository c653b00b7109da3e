"""Spearman's rho of bootstrap resamples in one compiled pass per (column, block of resamples), on integers only.

A resample is given as how often each image was drawn. A value's average rank is the number of smaller draws plus
(its own draws + 1) / 2, so doubled and centered it is the integer 2 * below + drawn here - drawn in all. Walking a
column's items in ascending order of x gives each x tie group its `below` as it goes; the cross products with y,
which has a few tie groups (ratings), are summed per y group in the same pass and centered after it. A pass
carries a block of resamples side by side, so each sum is a vector the compiler keeps in SIMD registers.
Everything is summed exactly in int64 (exact up to about a million items per column) and only the final ratio is a
float. It reads draw counts as narrow as they fit (`agreement.draw_counts`: a byte almost always).
Imported where a bootstrap runs: numba takes a moment to load.
"""

import numba
import numpy as np

# Resamples a pass carries side by side: each item's counts for them are two cache lines of bytes, and every sum is a
# vector over them (128 measured fastest, against 32, 64 and 256).
RESAMPLE_BLOCK = 128


@numba.njit(parallel=True, cache=True)
def spearman_of_counts(counts, group_bounds, x_starts, items, y_group, y_groups, out):  # noqa: PLR0913
    """out[c, r]: rho of column c in resample r. `counts` is images x resamples. Column c's x tie groups are
    x_starts[group_bounds[c]:group_bounds[c + 1]], each the position in `items` (indices into the images) of its
    first item, in ascending order of x, with one more start closing the last group; y_group holds each item's y tie
    group (0-based, ascending by value) among y_groups[c]. NaN where a side is constant, as `scipy.stats.spearmanr`.
    """
    for c in numba.prange(group_bounds.size - 1):
        per_y = np.empty((y_groups[c], RESAMPLE_BLOCK), np.int64)
        cross = np.empty((y_groups[c], RESAMPLE_BLOCK), np.int64)
        below = np.empty(RESAMPLE_BLOCK, np.int64)
        sum_x = np.empty(RESAMPLE_BLOCK, np.int64)
        sum_x2 = np.empty(RESAMPLE_BLOCK, np.int64)
        tied = np.empty(RESAMPLE_BLOCK, np.int64)
        for r0 in range(0, counts.shape[1], RESAMPLE_BLOCK):
            block = min(RESAMPLE_BLOCK, counts.shape[1] - r0)
            per_y[:] = 0
            cross[:] = 0
            below[:] = 0
            sum_x[:] = 0
            sum_x2[:] = 0
            for g in range(group_bounds[c], group_bounds[c + 1]):
                first, end = x_starts[g], x_starts[g + 1]
                if end - first == 1:  # no tie, the common case: one read of the item's counts
                    drawn = counts[items[first], r0 : r0 + block]
                    y_drawn, y_cross = per_y[y_group[first]], cross[y_group[first]]
                    for j in range(block):
                        each = np.int64(drawn[j])
                        rank = 2 * below[j] + each  # before centering on the total, not yet known
                        y_drawn[j] += each
                        y_cross[j] += each * rank
                        sum_x[j] += each * rank
                        sum_x2[j] += each * rank * rank
                        below[j] += each
                else:
                    tied[:] = 0
                    for k in range(first, end):
                        drawn = counts[items[k], r0 : r0 + block]
                        for j in range(block):
                            tied[j] += drawn[j]
                    for k in range(first, end):
                        drawn = counts[items[k], r0 : r0 + block]
                        y_drawn, y_cross = per_y[y_group[k]], cross[y_group[k]]
                        for j in range(block):
                            y_drawn[j] += drawn[j]
                            y_cross[j] += np.int64(drawn[j]) * (2 * below[j] + tied[j])
                    for j in range(block):
                        rank = 2 * below[j] + tied[j]
                        sum_x[j] += tied[j] * rank
                        sum_x2[j] += tied[j] * rank * rank
                        below[j] += tied[j]
            for j in range(block):
                out[c, r0 + j] = _rho(per_y[:, j], cross[:, j], below[j], sum_x[j], sum_x2[j])


@numba.njit(cache=True)
def _rho(per_y, cross, total, sum_x, sum_x2):
    """Rho from one resample's sums: x's ranks are centered on the total here, and y's ranks come from its groups'
    draws."""
    squares_x = sum_x2 - 2 * total * sum_x + total * total * total
    below = 0
    squares_y = 0
    covariance = 0
    for g in range(per_y.size):
        drawn = per_y[g]
        rank = 2 * below + drawn - total
        squares_y += drawn * rank * rank
        covariance += rank * (cross[g] - total * drawn)
        below += drawn
    if squares_x > 0 and squares_y > 0:
        return min(max(covariance / np.sqrt(float(squares_x) * float(squares_y)), -1.0), 1.0)
    return np.nan
