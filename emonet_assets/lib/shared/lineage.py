"""Content hashes and library versions that name what a result was computed from and with, shared by the model
card, the fairness report and the release's card so that each names the same data by the same value."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version

import polars as pl

DATA_VERSION_MEANS = "the hash of the image-to-split assignment"


def frame_hash(frame: pl.DataFrame) -> str:
    """Content hash of a table, independent of row order, for model-card lineage."""
    rows = frame.select(sorted(frame.columns)).sort(sorted(frame.columns)).write_csv().encode()
    return hashlib.sha256(rows).hexdigest()[:16]


def data_version(splits: pl.DataFrame) -> str:
    """The data version: which image is in which split. The model card's `splits` lineage hash is the same value."""
    return frame_hash(splits.select("image_sha256", "split"))


def library_versions(names: Iterable[str]) -> dict[str, str]:
    """The installed version of each named distribution, recorded beside what it made."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
