"""How often each item pattern was drawn in each bootstrap resample, in one compiled pass per resample.

A resample draws images; an item counts as often as its image was drawn, so a pattern's total is a sum of
integers, exact in any order: the resamples run in parallel and give the sparse product's numbers bit for bit.
Imported where the alpha bootstrap runs: numba takes a moment to load.
"""

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def pattern_totals(indices, pattern, image, n_patterns, n_images):
    """out[r, p]: how many items of pattern p resample r drew, for the resamples' image `indices` (resamples x
    draws) and each item's `pattern` and `image`."""
    out = np.zeros((indices.shape[0], n_patterns))
    for r in numba.prange(indices.shape[0]):
        drawn = np.zeros(n_images, np.int64)
        for i in indices[r]:
            drawn[i] += 1
        totals = out[r]
        for k in range(pattern.size):
            totals[pattern[k]] += drawn[image[k]]
    return out
