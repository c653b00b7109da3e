"""The alpha bootstrap's per-resample pattern totals in one compiled pass per chunk of resamples, on every core.

scipy's sparse product (patterns x images, one per item) by the images' draw counts ran on one core, after a
histogram per resample written column by column into the images x resamples operand: the two were half of the
bootstrap at a million images (30 of 55 s). The totals are counts, whole numbers in float64 whatever the order
they are summed in, so each thread sums its share of the images and the shares are added. Imported where the
bootstrap runs: numba takes a moment to load.
"""

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def pattern_totals(indices, image_starts, item_patterns, n_patterns, parts):
    """totals[p, r]: how many items with pattern p resample r drew (an image's items count as often as the image was
    drawn), patterns x resamples in C order, as the sparse product gave them. `indices` is resamples x draws of
    image numbers; image i's items are item_patterns[image_starts[i]:image_starts[i + 1]]."""
    resamples, n_images = indices.shape[0], image_starts.size - 1
    drawn = np.zeros((resamples, n_images), np.int32)
    for r in numba.prange(resamples):
        for image in indices[r]:
            drawn[r, image] += 1
    by_image = np.ascontiguousarray(drawn.T)
    partial = np.zeros((parts, n_patterns, resamples))
    for part in numba.prange(parts):
        totals = partial[part]
        for image in range(n_images * part // parts, n_images * (part + 1) // parts):
            for k in range(image_starts[image], image_starts[image + 1]):
                pattern = item_patterns[k]
                for r in range(resamples):
                    totals[pattern, r] += by_image[image, r]
    return partial.sum(axis=0)
