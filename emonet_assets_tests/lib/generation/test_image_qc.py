"""Image quality control (emonet_assets.lib.generation.image_qc): every rule has an image that breaks it."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from emonet_assets.lib.generation import image_qc
from emonet_assets.lib.generation.image_qc import (
    ImageQCError,
    haar_face_counter,
    inspect_image,
    near_duplicates,
    qc_table,
)

SIZE = (64, 64)


def encode(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def noise(seed: int, size: tuple[int, int] = SIZE) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def picture(seed: int) -> Image.Image:
    """Smooth random shapes, like a photo at low frequencies, which is what perceptual hashes look at."""
    return noise(seed).resize((8, 8)).resize(SIZE, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))


def gray(level: int = 128) -> Image.Image:
    return Image.new("RGB", SIZE, (level, level, level))


def test_a_good_image_passes_and_reports_its_measurements():
    result = inspect_image(encode(noise(1)), SIZE)
    assert result["reasons"] == []
    assert result["decodes"] and result["size_ok"]
    assert (result["width"], result["height"]) == SIZE
    assert result["std"] > 20
    assert result["blank"] is False
    assert len(result["phash"]) == 16
    assert result["faces"] is None


def test_truncated_png_does_not_decode():
    data = encode(noise(1))
    result = inspect_image(data[: len(data) // 2], SIZE)
    assert result["decodes"] is False
    assert result["phash"] is None
    assert len(result["reasons"]) == 1
    assert result["reasons"][0].startswith("does not decode: ")


def test_bytes_that_are_no_image_do_not_decode():
    assert inspect_image(b"not an image", SIZE)["reasons"][0].startswith("does not decode: ")


def test_wrong_size_is_reported_as_width_by_height():
    result = inspect_image(encode(noise(1, (64, 32))), SIZE)
    assert result["size_ok"] is False
    assert result["reasons"] == ["size 64x32, expected 64x64"]


def test_constant_gray_image_is_blank():
    result = inspect_image(encode(gray()), SIZE)
    assert result["blank"] is True
    assert result["std"] == 0.0
    assert result["reasons"] == ["blank or near-constant (std 0.0)"]


def test_blank_threshold_is_a_parameter():
    rng = np.random.default_rng(0)
    faint = Image.fromarray((128 + rng.integers(-2, 3, (64, 64))).astype(np.uint8))
    std = inspect_image(encode(faint), SIZE)["std"]
    assert 0.5 < std < 2.0
    assert inspect_image(encode(faint), SIZE)["blank"] is True
    assert inspect_image(encode(faint), SIZE, blank_std=0.5)["blank"] is False


@pytest.mark.parametrize(("found", "reasons"), [(0, ["no face detected"]), (1, []), (2, ["2 faces detected"])])
def test_face_rule_wants_exactly_one_face(found, reasons):
    result = inspect_image(encode(noise(1)), SIZE, detect_faces=True, face_counter=lambda grey: found)
    assert result["faces"] == found
    assert result["reasons"] == reasons


def test_face_detection_off_reports_no_count_and_no_face_reason():
    result = inspect_image(encode(gray()), SIZE, detect_faces=False, face_counter=lambda grey: 0)
    assert result["faces"] is None
    assert result["reasons"] == ["blank or near-constant (std 0.0)"]


def test_face_counter_sees_the_grey_pixels():
    seen = []
    inspect_image(encode(noise(1)), SIZE, detect_faces=True, face_counter=lambda grey: seen.append(grey) or 1)
    assert seen[0].shape == (64, 64)
    assert seen[0].dtype == np.uint8


def test_haar_detector_finds_no_face_in_noise_or_a_blank_image():
    for data in (encode(noise(1)), encode(gray())):
        result = inspect_image(data, SIZE, detect_faces=True)
        assert result["faces"] == 0
        assert "no face detected" in result["reasons"]


def test_missing_cascade_file_is_a_clear_error(tmp_path):
    with pytest.raises(ImageQCError, match="nope.xml"):
        haar_face_counter(str(tmp_path / "nope.xml"))


def test_bundled_cascade_ships_with_opencv():
    assert Path(cv2.data.haarcascades, image_qc.HAAR_CASCADE).is_file()


def test_near_duplicates_pairs_an_image_with_a_brightened_reencoded_copy():
    original = picture(1)
    brighter = ImageEnhance.Brightness(original).enhance(1.1)
    copy = Image.open(io.BytesIO(encode(brighter, "JPEG")))
    hashes = [
        ("original", inspect_image(encode(original), SIZE)["phash"]),
        ("other", inspect_image(encode(picture(2)), SIZE)["phash"]),
        ("copy", inspect_image(encode(copy), SIZE)["phash"]),
        ("third", inspect_image(encode(picture(3)), SIZE)["phash"]),
    ]
    [(a, b, distance)] = near_duplicates(hashes, max_distance=4)
    assert (a, b) == ("original", "copy")
    assert distance <= 4


def test_near_duplicates_is_exact_across_comparison_blocks(monkeypatch):
    monkeypatch.setattr(image_qc, "_COMPARISONS_PER_BLOCK", 1000)  # 3 images per block here
    rng = np.random.default_rng(0)
    values = [int(v) for v in rng.integers(0, 2**63, 300, dtype=np.int64)]
    values += [values[5] ^ 0b101, values[250] ^ (1 << 63), values[17] ^ 0b1111]  # distances 2, 1, 4
    hashes = [(f"i{k}", f"{v:016x}") for k, v in enumerate(values)]
    expected = [
        (hashes[i][0], hashes[j][0], (values[i] ^ values[j]).bit_count())
        for i, j in itertools.combinations(range(len(values)), 2)
        if (values[i] ^ values[j]).bit_count() <= 3
    ]
    assert near_duplicates(hashes, max_distance=3) == expected
    assert {(a, b) for a, b, _ in expected} == {("i5", "i300"), ("i250", "i301")}


def test_near_duplicates_needs_64_bit_hashes():
    with pytest.raises(ValueError, match="x: perceptual hash"):
        near_duplicates([("x", "abc")])


def record(image_id: str, data: bytes, **extra) -> dict:
    return {"id": image_id, "sha": f"sha-{image_id}", **inspect_image(data, SIZE), **extra}


def test_qc_table_keeps_the_first_of_a_near_duplicate_pair_and_quarantines_the_later():
    original = encode(picture(1))
    copy = encode(ImageEnhance.Brightness(Image.open(io.BytesIO(original))).enhance(1.05))
    records = [
        record("a", original, prompt_id="p1"),
        record("blank", encode(gray()), prompt_id="p2"),
        record("b", copy, prompt_id="p3"),
        record("c", encode(picture(2)), prompt_id="p4"),
        record("broken", b"\x89PNG\r\n", prompt_id="p5"),
    ]
    hashes = [(r["id"], r["phash"]) for r in records if r["phash"] is not None]
    [(first, later, distance)] = [pair for pair in near_duplicates(hashes) if "blank" not in pair]
    table = qc_table(records, near_duplicates(hashes))

    assert (first, later) == ("a", "b")
    assert table["id"].to_list() == ["a", "blank", "b", "c", "broken"]
    assert table["passed"].to_list() == [True, False, False, True, False]
    reasons = dict(zip(table["id"], table["reasons"].to_list(), strict=True))
    assert reasons["a"] == []
    assert reasons["b"] == [f"near-duplicate of sha-a (distance {distance})"]
    assert reasons["blank"] == ["blank or near-constant (std 0.0)"]
    assert reasons["broken"][0].startswith("does not decode")
    assert table.schema["reasons"] == pl.List(pl.String)
    assert table["prompt_id"].to_list() == ["p1", "p2", "p3", "p4", "p5"]


def test_qc_table_order_decides_which_copy_is_kept():
    original = encode(picture(1))
    records = [record("later", original), record("earlier", original)]
    table = qc_table(records, [("earlier", "later", 0)])
    assert table["passed"].to_list() == [True, False]
    assert table["reasons"].to_list() == [[], ["near-duplicate of sha-later (distance 0)"]]


def test_qc_table_only_counts_duplicates_of_kept_images():
    """A~B and B~C with A and C apart: B goes, and C stays because what it resembles was removed."""
    data = encode(picture(1))
    records = [record("A", data), record("B", data), record("C", data)]
    table = qc_table(records, [("A", "B", 3), ("B", "C", 3)])
    assert table["passed"].to_list() == [True, False, True]


def test_qc_table_of_nothing_has_the_qc_columns():
    table = qc_table([])
    assert table.is_empty()
    assert table.schema["reasons"] == pl.List(pl.String)
    assert "passed" in table.columns
