"""The compiled inner loop of the near-duplicate search: every pair of hashes sharing a band value, compared in
place. Joining the pairs as tables first materialized each candidate pair (about 490M at a million random hashes)
to keep the few close ones. Imported where splits are made: numba takes a moment to load.
"""

import numba
import numpy as np


@numba.njit(cache=True)
def _bits_set(x):
    """Population count of a uint64 (numba has no `np.bitwise_count`)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@numba.njit(cache=True)
def close_pairs_in_runs(values, order, keys, max_distance):
    """(a, b) with a < b for every two indices in one run of equal `keys` (`order` sorts `keys`, stably, so a run's
    indices ascend) whose `values` differ in at most `max_distance` bits. Runs are compared in sorted order, on
    contiguous copies of their keys and values, once to count the pairs and once to fill arrays of that size: one
    pass that grew its output as it went was over ten times slower than both (1.2 against 0.1 s per band of a
    million hashes)."""
    keys = keys[order]
    values = values[order]
    limit = np.uint64(max_distance)  # compared as uint64: against an int64 numba would compare floats
    found = _scan_runs(values, keys, order, limit, np.empty(0, np.int64), np.empty(0, np.int64))
    a = np.empty(found, np.int64)
    b = np.empty(found, np.int64)
    _scan_runs(values, keys, order, limit, a, b)
    return a, b


@numba.njit(cache=True)
def _scan_runs(values, keys, order, limit, a, b):
    """How many pairs are close; each written to `a` and `b` while they have room."""
    found = 0
    start = 0
    while start < keys.size:
        end = start + 1
        while end < keys.size and keys[end] == keys[start]:
            end += 1
        for i in range(start, end):
            value = values[i]
            for j in range(i + 1, end):
                if _bits_set(value ^ values[j]) <= limit:
                    if found < a.size:
                        a[found] = order[i]
                        b[found] = order[j]
                    found += 1
        start = end
    return found
