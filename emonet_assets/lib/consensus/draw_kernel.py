"""The bootstraps' compiled passes over resampled images: each resample's draw counts, and the alpha bootstrap's
per-resample pattern totals.

A pattern's total in a resample is how many of its items the resample drew, an image's items counting as often as
the image was drawn: a sparse product (patterns x images by images x resamples) of 40M items at a million images.
The pass goes image by image through the items and adds the image's draws in a block of resamples, side by side,
to each of its patterns' rows: one row of bytes read per image and integer vectors added per item, on every core
(each thread sums its share of the images; the shares are added). Imported where a bootstrap runs: numba takes a
moment to load.
"""

import numba
import numpy as np


@numba.njit(cache=True)
def count_draws(indices, counts):
    """Fills `counts` (resamples x images, zeros) with how often each image was drawn in each resample: a histogram
    per row, without the offset copy and the flat histogram of all rows `np.bincount` needs. False, with `counts`
    unfinished, when a count would pass the largest value of its dtype."""
    limit = np.iinfo(counts.dtype).max
    for r in range(indices.shape[0]):
        for image in indices[r]:
            if counts[r, image] == limit:
                return False
            counts[r, image] += 1
    return True


@numba.njit(cache=True)
def items_by_image(image, pattern, image_starts):
    """The items' patterns listed image by image (image i's from image_starts[i]), in one counting pass instead of a
    sort of every item."""
    placed = image_starts[:-1].copy()
    listed = np.empty(image.size, np.int64)
    for k in range(image.size):
        listed[placed[image[k]]] = pattern[k]
        placed[image[k]] += 1
    return listed


@numba.njit(parallel=True, cache=True)
def pattern_totals(drawn, image_starts, item_patterns, partial):
    """partial[part, p, r]: how many items with pattern p resample r drew among the part's share of the images.
    `drawn` is images x resamples of draw counts; image i's items are item_patterns[image_starts[i]:
    image_starts[i + 1]]; `partial` (parts x patterns x resamples, zeros) is wide enough for any total."""
    n_images, parts = drawn.shape[0], partial.shape[0]
    for part in numba.prange(parts):
        totals = partial[part]
        for image in range(n_images * part // parts, n_images * (part + 1) // parts):
            counts = drawn[image]
            for k in range(image_starts[image], image_starts[image + 1]):
                row = totals[item_patterns[k]]
                for r in range(counts.size):
                    row[r] += counts[r]
