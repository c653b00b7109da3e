"""A simulated expert panel with a known ground truth, written in every export format the importers read, so the
demo and the tests can check agreement and consensus against something true.

The truth comes from one of two places. `perceived_truth` is what the demo's panel sees in an image: a fixed
function of features computed from its pixels (PERCEPTION says which), so a model that reads the same pixels can
learn it. `ground_truth` is drawn at random per image reference, for images the panel has no pixels of (an external
collection named only by id) and for tests of the formats and of agreement.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from emonet_assets.lib.shared.rules import INTENSITY_MAX

# The random stream of the perception directions, apart from the raters' draws (stream 1), so rater noise can change
# without changing what the panel sees.
_PERCEPTION_STREAM = 2

PERCEPTION = (
    "expected rating of emotion e on image i = 7 * sigmoid(gain * (s[i, e] - threshold)), where s = z @ W with "
    "z the image features (the profile's embedding of the image's pixels) standardised per dimension over the "
    "images rated together, W a fixed matrix of standard normals drawn from the panel seed (one column per "
    "emotion, in taxonomy order), and each column of s standardised over those images; each annotator then rates "
    "that + their own constant bias + Gaussian noise, rounded and clipped to 0..7"
)


@dataclass(frozen=True)
class PanelSpec:
    """`gain` and `threshold` shape perception (see PERCEPTION): an emotion is rated about 3.5 where its score sits
    `threshold` standard deviations above the images' mean, and `gain` sets how fast ratings rise past that."""

    annotators: int = 4
    noise: float = 1.0
    bias_sd: float = 0.5
    missing: float = 0.05
    present_share: float = 0.2
    seed: int = 7
    gain: float = 1.5
    threshold: float = 1.0

    def metadata(self) -> dict:
        """What a reader needs to know about how these ratings were made; the demo writes it beside its files."""
        return {
            "raters": "simulated: a program imitating expert raters, not people",
            "perception": PERCEPTION,
            **dataclasses.asdict(self),
        }


def _standardised(values: np.ndarray) -> np.ndarray:
    """Each column to mean 0 and standard deviation 1 over the rows; a constant column becomes 0."""
    spread = values.std(axis=0)
    return (values - values.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


def perceive(features: np.ndarray, n_emotions: int, spec: PanelSpec) -> np.ndarray:
    """Expected rating (0..7) of each emotion (columns) on each image (rows of `features`), as PERCEPTION describes.

    A fixed function of the features: the same features and seed give the same ratings on every machine, and images
    whose features differ are rated differently. Standardising over the images rated together stands for raters
    calibrating to the set in front of them, and makes the scale the same whatever the features' units.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be one row per image, got shape {features.shape}")
    directions = np.random.default_rng([spec.seed, _PERCEPTION_STREAM]).standard_normal((features.shape[1], n_emotions))
    scores = _standardised(_standardised(features) @ directions)
    return INTENSITY_MAX / (1.0 + np.exp(-spec.gain * (scores - spec.threshold)))


def perceived_truth(
    image_refs: list[str], features: np.ndarray, emotion_names: list[str], spec: PanelSpec
) -> pl.DataFrame:
    """True intensity of every (image, emotion) as the panel perceives it from each image's features (`perceive`);
    the same long table as `ground_truth`, with the intensity a real number for the raters to round."""
    if len(image_refs) != len(features):
        raise ValueError(f"{len(image_refs)} image references but {len(features)} rows of features")
    expected = perceive(features, len(emotion_names), spec)
    return _items(image_refs, emotion_names).with_columns(intensity=pl.Series(expected.ravel(), dtype=pl.Float64))


def ground_truth(image_refs: list[str], emotion_names: list[str], spec: PanelSpec) -> pl.DataFrame:
    """True intensity of every (image, emotion), drawn without looking at any image: 0 where absent, uniform 1..7
    where present."""
    rng = np.random.default_rng(spec.seed)
    shape = (len(image_refs), len(emotion_names))
    present = rng.random(shape) < spec.present_share
    intensity = np.where(present, rng.integers(1, INTENSITY_MAX + 1, shape), 0)
    return _items(image_refs, emotion_names).with_columns(intensity=pl.Series(intensity.ravel(), dtype=pl.Int32))


def _items(image_refs: list[str], emotion_names: list[str]) -> pl.DataFrame:
    """Every (image_ref, emotion), image by image and each image's emotions in order, gathered by polars: a batch
    of 50,000 images has 2 million, too many to build as Python strings."""
    n_images, n_emotions = len(image_refs), len(emotion_names)
    return pl.DataFrame(
        {
            "image_ref": pl.Series(image_refs, dtype=pl.String).gather(np.repeat(np.arange(n_images), n_emotions)),
            "emotion": pl.Series(emotion_names, dtype=pl.String).gather(np.tile(np.arange(n_emotions), n_images)),
        }
    )


def simulate_ratings(truth: pl.DataFrame, spec: PanelSpec) -> pl.DataFrame:
    """Each annotator rates truth + their constant bias + Gaussian noise, rounded and clipped to 0..7 (the truth from
    `ground_truth` or `perceived_truth`); a share of
    ratings is missing. Noise is drawn as standard normals scaled by `spec.noise`, so specs that differ only in
    noise see the same draws and their agreement can be compared."""
    rng = np.random.default_rng([spec.seed, 1])
    bias = rng.normal(0.0, 1.0, spec.annotators) * spec.bias_sd
    noise = rng.normal(0.0, 1.0, (truth.height, spec.annotators)) * spec.noise
    kept = rng.random((truth.height, spec.annotators)) >= spec.missing
    rated = truth["intensity"].to_numpy()[:, None] + bias[None, :] + noise
    value = np.clip(np.rint(rated), 0, INTENSITY_MAX).astype(np.int32)
    row, annotator = np.nonzero(kept)
    names = pl.Series([f"expert-{k + 1}" for k in range(spec.annotators)], dtype=pl.String)
    return pl.DataFrame(
        {
            "image_ref": truth["image_ref"].gather(row),
            "annotator": names.gather(annotator),
            "emotion": truth["emotion"].gather(row),
            "value": pl.Series(value[row, annotator], dtype=pl.Int32),
        },
        schema={"image_ref": pl.String, "annotator": pl.String, "emotion": pl.String, "value": pl.Int32},
    )


def write_long_csv(ratings: pl.DataFrame, path: Path, binary: bool = False) -> None:
    """One rating per row; the binary export says only whether the emotion is present ("True"/"False")."""
    value = pl.col("value")
    if binary:
        value = pl.when(value >= 1).then(pl.lit("True")).otherwise(pl.lit("False"))
    ratings.select(path="image_ref", annotator="annotator", value=value, emotion="emotion").write_csv(path)


def _extra_dimensions(image_ref: str, annotator: str, values: list[int]) -> dict[str, int]:
    """The panel does not model arousal and valence; these fill the HQ format's keys reproducibly (arousal from the
    strongest rated emotion, valence from a checksum, not from Python's salted hash)."""
    valence = zlib.crc32(f"{image_ref}|{annotator}".encode()) % 7 - 3
    return {"Extra Dimensions|Arousal": max(values, default=0), "Extra Dimensions|Valence": valence}


def write_hq_csv(ratings: pl.DataFrame, path: Path) -> None:
    """One row per (image, annotator) with all of that annotator's ratings as a Python dict literal, as in the
    EmoNet-Face HQ export."""
    rows = []
    for (image_ref, annotator), part in ratings.group_by("image_ref", "annotator", maintain_order=True):
        scores = dict(zip(part["emotion"].to_list(), part["value"].to_list(), strict=True))
        scores |= _extra_dimensions(image_ref, annotator, list(scores.values()))
        rows.append({"image": image_ref, "annotator": annotator, "human": "True", "annotations": str(scores)})
    schema = {"image": pl.String, "annotator": pl.String, "human": pl.String, "annotations": pl.String}
    pl.DataFrame(rows, schema=schema, orient="row").write_csv(path)


def write_label_studio_json(
    ratings: pl.DataFrame, path: Path, image_url: Callable[[str], str] = lambda ref: ref
) -> None:
    """A Label Studio export: one task per image, one annotation per annotator, one number result per emotion.

    The annotator's name is the email, since the importer takes the email as the annotator id.
    """
    annotator_ids = {name: k + 1 for k, name in enumerate(sorted(ratings["annotator"].unique().to_list()))}
    tasks = []
    annotation_id = 0
    for task_id, ((image_ref,), image) in enumerate(ratings.group_by("image_ref", maintain_order=True), start=1):
        annotations = []
        for (annotator,), part in image.group_by("annotator", maintain_order=True):
            annotation_id += 1
            result = [
                {"from_name": emotion, "to_name": "image", "type": "number", "value": {"number": value}}
                for emotion, value in part.select("emotion", "value").iter_rows()
            ]
            annotations.append(
                {
                    "id": annotation_id,
                    "completed_by": {"id": annotator_ids[annotator], "email": annotator},
                    "was_cancelled": False,
                    "lead_time": 30.0,
                    "result": result,
                }
            )
        tasks.append(
            {"id": task_id, "data": {"image": image_url(image_ref), "image_ref": image_ref}, "annotations": annotations}
        )
    Path(path).write_text(json.dumps(tasks, indent=1))


def write_panel(
    image_refs: list[str], emotion_names: list[str], folder: Path, spec: PanelSpec = PanelSpec()
) -> dict[str, Path]:
    """Simulate one panel and write it in every format, so each importer can be fed the same ratings."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ratings = simulate_ratings(ground_truth(image_refs, emotion_names, spec), spec)
    paths = {
        "long_intensity": folder / "ratings_intensity.csv",
        "long_binary": folder / "ratings_binary.csv",
        "hq": folder / "ratings_hq.csv",
        "label_studio": folder / "label_studio_export.json",
    }
    write_long_csv(ratings, paths["long_intensity"])
    write_long_csv(ratings, paths["long_binary"], binary=True)
    write_hq_csv(ratings, paths["hq"])
    write_label_studio_json(ratings, paths["label_studio"])
    return paths
