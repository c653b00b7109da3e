"""Iterators that keep two cores busy: items made in a background thread while the caller works on earlier ones."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(items: Iterable[T], limit: int = 1, size: Callable[[T], int] = lambda _: 1) -> Iterator[T]:
    """`items` in order, made by a background thread that keeps going while fewer than `limit` (summed `size`) are
    waiting for the caller. Worth it where both sides release the GIL (DuckDB, file reads, Arrow and Parquet);
    an exception in the background reaches the caller where its item would have, and a caller that stops early
    stops the background thread after the item it is making."""
    ready: deque[tuple[object, int]] = deque()  # (item, its size)
    waiting = 0
    stop = False
    changed = threading.Condition()

    def room() -> bool:
        return waiting < limit or stop

    def make() -> None:
        nonlocal waiting
        try:
            for item in items:
                weight = size(item)
                with changed:
                    ready.append((item, weight))
                    waiting += weight
                    changed.notify_all()
                    changed.wait_for(room)
                    if stop:
                        return
            outcome = _END
        except BaseException as error:  # handed to the caller, which raises it
            outcome = _Failed(error)
        with changed:
            ready.append((outcome, 0))
            changed.notify_all()

    thread = threading.Thread(target=make, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            with changed:
                changed.wait_for(lambda: ready)
                item, weight = ready.popleft()
                waiting -= weight
                changed.notify_all()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        with changed:
            stop = True
            changed.notify_all()
        thread.join()
