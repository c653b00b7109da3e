"""Quality control of generated images: each check gives a plain value and, when it fails, a readable reason.

An image passes when it has no reasons. Reasons are sentences people read in the quarantine table, so
they carry the measured value ("blank or near-constant (std 0.3)"), not a code.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from PIL import Image

HAAR_CASCADE = "haarcascade_frontalface_default.xml"
# Pairwise comparisons held in memory at once by near_duplicates (8 bytes each).
_COMPARISONS_PER_BLOCK = 1 << 22

FaceCounter = Callable[[np.ndarray], int]

QC_SCHEMA = {
    "id": pl.String,
    "sha": pl.String,
    "decodes": pl.Boolean,
    "width": pl.Int64,
    "height": pl.Int64,
    "size_ok": pl.Boolean,
    "std": pl.Float64,
    "blank": pl.Boolean,
    "phash": pl.String,
    "faces": pl.Int64,
    "passed": pl.Boolean,
    "reasons": pl.List(pl.String),
}


class ImageQCError(RuntimeError):
    """A check that cannot run here (e.g. no face detector); the message says what is missing."""


def inspect_image(
    data: bytes,
    expected_size: tuple[int, int],
    *,
    detect_faces: bool = False,
    blank_std: float = 2.0,
    face_counter: FaceCounter | None = None,
) -> dict[str, Any]:
    """Checks one encoded image. `expected_size` is (width, height); `blank_std` is on the 0-255 grey scale.

    With `detect_faces`, exactly one face must be found; `face_counter` (grey uint8 array -> count) replaces
    the default Haar cascade detector.
    """
    import imagehash  # with scipy and pywavelets: loaded by the steps that hash images, not by every process

    result: dict[str, Any] = {
        "decodes": False,
        "width": None,
        "height": None,
        "size_ok": False,
        "std": None,
        "blank": None,
        "phash": None,
        "faces": None,
        "reasons": [],
    }
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        result["reasons"].append(f"does not decode: {exc}")
        return result
    reasons = result["reasons"]
    width, height = image.size
    grey = np.asarray(image.convert("L"))
    std = float(grey.std())
    result.update(
        decodes=True,
        width=width,
        height=height,
        size_ok=(width, height) == tuple(expected_size),
        std=std,
        blank=std < blank_std,
        phash=str(imagehash.phash(image)),
    )
    if not result["size_ok"]:
        reasons.append(f"size {width}x{height}, expected {expected_size[0]}x{expected_size[1]}")
    if result["blank"]:
        reasons.append(f"blank or near-constant (std {std:.1f})")
    if detect_faces:
        faces = (face_counter or haar_face_counter())(grey)
        result["faces"] = faces
        if faces == 0:
            reasons.append("no face detected")
        elif faces > 1:
            reasons.append(f"{faces} faces detected")
    return result


@cache
def haar_face_counter(cascade: str | None = None) -> FaceCounter:
    """OpenCV's bundled frontal-face Haar cascade: nothing to download, but it misses many non-frontal faces.

    OpenCV 5 dropped the bundled cascades, which is why opencv-python-headless is pinned below 5.
    """
    import cv2  # OpenCV loads in a second: only where faces are counted

    path = cascade or cv2.data.haarcascades + HAAR_CASCADE
    if not Path(path).is_file():
        raise ImageQCError(f"face detection needs the Haar cascade file {path}, which is missing")
    classifier = cv2.CascadeClassifier(path)
    if classifier.empty():
        raise ImageQCError(f"{path} is not a usable Haar cascade")

    def count(grey: np.ndarray) -> int:
        side = max(24, min(grey.shape) // 8)
        found = classifier.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
        return len(found)

    return count


def near_duplicates(hashes: Sequence[tuple[str, str]], max_distance: int = 4) -> list[tuple[str, str, int]]:
    """Pairs (id_a, id_b, distance) of 64-bit perceptual hashes within `max_distance` bits, id_a first in input order.

    Exact: every pair is compared (XOR and popcount in numpy), block by block so memory stays bounded; about
    a second per 10^9 comparisons, fine for the tens of thousands of images in a benchmark.
    """
    ids = [image_id for image_id, _ in hashes]
    for image_id, value in hashes:
        if len(value) != 16:
            raise ValueError(f"{image_id}: perceptual hash {value!r} is not 16 hex digits (64 bits)")
    bits = np.array([int(value, 16) for _, value in hashes], dtype=np.uint64)
    n = len(bits)
    pairs: list[tuple[str, str, int]] = []
    block = max(1, _COMPARISONS_PER_BLOCK // max(n, 1))
    for start in range(0, n, block):
        rows = bits[start : start + block]
        distances = np.bitwise_count(rows[:, None] ^ bits[None, start:])
        # Only pairs with a < b: column j of the block compares row i against image start + j.
        upper = np.arange(len(rows))[:, None] < np.arange(n - start)[None, :]
        for i, j in zip(*np.nonzero(upper & (distances <= max_distance)), strict=True):
            pairs.append((ids[start + i], ids[start + j], int(distances[i, j])))
    return pairs


def qc_table(records: Iterable[Mapping[str, Any]], duplicates: Iterable[tuple[str, str, int]] = ()) -> pl.DataFrame:
    """One row per image with `passed` and `reasons`; records come in the order that decides which copy is kept.

    Each record holds `id`, `sha` and the keys `inspect_image` returns; any other keys are carried through.
    An image is quarantined as a near-duplicate when it lies within distance of an earlier image that is kept,
    so of a cluster of copies the first good one stays, and a chain A~B~C with A and C apart keeps A and C.
    """
    records = list(records)
    position = {record["id"]: i for i, record in enumerate(records)}
    earlier: dict[str, list[tuple[str, int]]] = {}
    for a, b, distance in duplicates:
        first, later = sorted((a, b), key=position.__getitem__)
        earlier.setdefault(later, []).append((first, distance))
    kept: set[str] = set()
    rows = []
    for record in records:
        reasons = list(record["reasons"])
        for other, distance in sorted(earlier.get(record["id"], []), key=lambda pair: position[pair[0]]):
            if other in kept:
                reasons.append(f"near-duplicate of {records[position[other]]['sha']} (distance {distance})")
        if not reasons:
            kept.add(record["id"])
        rows.append({**record, "passed": not reasons, "reasons": reasons})
    if not rows:
        return pl.DataFrame(schema=QC_SCHEMA)
    frame = pl.DataFrame(rows, schema_overrides=QC_SCHEMA, infer_schema_length=None)
    return frame.select(*QC_SCHEMA, *(column for column in frame.columns if column not in QC_SCHEMA))
