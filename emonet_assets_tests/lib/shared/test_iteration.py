import threading
import time

import pytest

from emonet_assets.lib.shared.iteration import read_ahead


def _recorded(sizes, made):
    for size in sizes:
        made.append(size)
        yield size


def _settled(made, count):
    """Waits until the background made `count` items, then long enough for it to make one more if it would."""
    deadline = time.monotonic() + 10
    while len(made) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.1)
    return list(made)


def test_items_come_in_order_and_all_of_them():
    assert list(read_ahead(range(1000))) == list(range(1000))
    assert list(read_ahead([])) == []


def test_the_background_stays_within_the_limit():
    made = []
    stream = read_ahead(_recorded(range(10), made), limit=3)
    assert next(stream) == 0
    assert _settled(made, 4) == [0, 1, 2, 3]  # 1, 2 and 3 wait: the limit
    assert list(stream) == list(range(1, 10))


def test_sizes_count_against_the_limit():
    made = []
    stream = read_ahead(_recorded([5, 5, 1, 1], made), limit=5, size=lambda s: s)
    assert next(stream) == 5
    assert _settled(made, 2) == [5, 5]  # the second 5 alone reaches the limit
    assert list(stream) == [5, 1, 1]


def test_an_error_in_the_background_reaches_the_caller_at_its_item():
    def items():
        yield 1
        yield 2
        raise ValueError("batch 3 cannot be read")

    stream = read_ahead(items())
    assert [next(stream), next(stream)] == [1, 2]
    with pytest.raises(ValueError, match="batch 3 cannot be read"):
        next(stream)


def test_a_caller_that_stops_early_stops_the_background():
    made = []
    before = set(threading.enumerate())
    stream = read_ahead(_recorded(range(1_000_000), made), limit=2)
    assert next(stream) == 0
    stream.close()
    assert len(made) <= 4
    assert not [t for t in threading.enumerate() if t.name == "read-ahead" and t not in before]
