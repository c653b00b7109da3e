"""A model's scores read from a file a user brings (CSV, JSONL or Parquet; wide or long) and validated into accepted
scores and precise rejects: rows read = accepted + rejected, always.

Image references resolve as annotation references do (prompt id, sha256, path; a release-style id within a
declared collection), emotion names through the taxonomy's names and aliases. Scores are kept as given (`score`,
what Spearman ranks) and as a 0-7 intensity where the declared scale has one (`intensity`, what kappa, presence F1
and MAE compare); ranks have none.
"""

from __future__ import annotations

import io
import json
import posixpath
from dataclasses import dataclass

import numpy as np
import polars as pl

from emonet_assets.lib.annotation.annotation_import import MISSING_TOKENS, ImageIndex, resolve_refs
from emonet_assets.lib.shared.rules import INTENSITY_MAX
from emonet_assets.lib.taxonomy.taxonomy import Taxonomy, normalize_label

IMAGE_COLUMNS = ("image", "image_id", "image_ref", "image_sha256", "prompt_id", "path", "image_path", "file")
EMOTION_COLUMNS = ("emotion", "emotion_id", "label")
SCORE_COLUMNS = ("score", "value", "predicted", "prediction")
SCALE_RANGES = {"0-7": (0.0, float(INTENSITY_MAX)), "0-1": (0.0, 1.0), "logit": None, "rank": None}
REJECT_REASONS = {
    "missing_image_ref": "the row names no image",
    "unsafe_image_path": "the image reference climbs out of its folder ('..')",
    "unknown_image": "the reference matches no platform image (external images need a collection)",
    "positional_id": "the reference is only a number: declare the collection the file's images belong to",
    "unknown_emotion": "the name is no emotion of the taxonomy (or names several)",
    "missing_value": "no score (empty, NaN or null)",
    "not_a_number": "the score is not a finite number",
    "out_of_scale": "the score is outside the declared scale",
    "duplicate": "the same image and emotion came earlier in the file; the first one counts",
}
UNIT_SCHEMA = {"source_row": pl.Int64, "image_ref": pl.String, "emotion_label": pl.String, "value_raw": pl.String}
ACCEPTED_SCHEMA = {
    "source_row": pl.Int64,
    "image_ref": pl.String,
    "image_id": pl.String,
    "emotion_id": pl.String,
    "score": pl.Float64,
    "intensity": pl.Float64,
}
REJECT_SCHEMA = {**UNIT_SCHEMA, "reason": pl.String, "detail": pl.String}


class PredictionsFileError(ValueError):
    """A file that cannot be read as predictions at all; rejected whole, the message names file and reason."""


@dataclass(frozen=True)
class ValidatedPredictions:
    accepted: pl.DataFrame
    rejects: pl.DataFrame
    rows_read: int
    layout: str

    def reason_counts(self) -> pl.DataFrame:
        return self.rejects.group_by("reason").agg(rows=pl.len()).sort(["rows", "reason"], descending=[True, False])


def _frame(source_file: str, data: bytes) -> pl.DataFrame:
    suffix = posixpath.basename(source_file).lower().rsplit(".", 1)[-1]
    try:
        if suffix in ("csv", "tsv"):
            frame = pl.read_csv(io.BytesIO(data), infer_schema=False, separator="\t" if suffix == "tsv" else ",")
        elif suffix in ("jsonl", "ndjson"):
            frame = _read_jsonl(source_file, data)
        elif suffix == "parquet":
            frame = pl.read_parquet(io.BytesIO(data))
        else:
            raise PredictionsFileError(f"{source_file}: a predictions file is .csv, .jsonl or .parquet, not .{suffix}")
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, PredictionsFileError):
            raise
        raise PredictionsFileError(f"{source_file}: cannot be read as .{suffix}: {exc}") from exc
    return frame.select(pl.all().cast(pl.String))


def _read_jsonl(source_file: str, data: bytes) -> pl.DataFrame:
    """JSON lines read by the json module, which takes the NaN that Python and pandas write, each value as text."""
    records = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PredictionsFileError(f"{source_file}: line {number} is not JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise PredictionsFileError(f"{source_file}: line {number} is not a JSON object")
        records.append({key: None if value is None else str(value) for key, value in record.items()})
    names = list(dict.fromkeys(key for record in records for key in record))
    return pl.DataFrame(records, schema=dict.fromkeys(names, pl.String))


def _find(columns: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((columns[n] for n in names if n in columns), None)


def read_units(source_file: str, data: bytes) -> tuple[pl.DataFrame, str]:
    """(one row per (image, emotion) score as written: source_row, image_ref, emotion_label, value_raw; the layout
    found, long or wide). Long files have an image, an emotion and a score column; wide ones an image column and
    one column per emotion."""
    frame = _frame(source_file, data).with_row_index("source_row", offset=1)
    columns = {normalize_label(c).replace(" ", "_"): c for c in frame.columns if c != "source_row"}
    image = _find(columns, IMAGE_COLUMNS)
    if image is None:
        raise PredictionsFileError(
            f"{source_file}: no image column (one of {', '.join(IMAGE_COLUMNS)}); "
            f"columns: {', '.join(frame.columns[1:])}"
        )
    emotion, score = _find(columns, EMOTION_COLUMNS), _find(columns, SCORE_COLUMNS)
    row = pl.col("source_row").cast(pl.Int64)
    if emotion and score:
        units = frame.select(row, image_ref=pl.col(image), emotion_label=pl.col(emotion), value_raw=pl.col(score))
        return units, "long"
    wide = [c for c in frame.columns if c not in ("source_row", image)]
    if not wide:
        raise PredictionsFileError(f"{source_file}: an image column but no emotion columns")
    units = frame.unpivot(wide, index=["source_row", image], variable_name="emotion_label", value_name="value_raw")
    return units.select(row, image_ref=pl.col(image), emotion_label="emotion_label", value_raw="value_raw"), "wide"


def to_intensity(score: np.ndarray, scale: str) -> np.ndarray:
    """Scores on the 0-7 intensity scale; NaN for ranks, which have no intensity."""
    if scale == "0-7":
        return score
    if scale == "0-1":
        return score * INTENSITY_MAX
    if scale == "logit":
        return INTENSITY_MAX / (1 + np.exp(-score))
    return np.full_like(score, np.nan)


def validate_predictions(
    units: pl.DataFrame, layout: str, taxonomy: Taxonomy, images: ImageIndex, collection: str | None, scale: str
) -> ValidatedPredictions:
    refs = resolve_refs(units["image_ref"].unique(), images, collection, positional_ids=False)
    labels = units["emotion_label"].unique().drop_nulls().to_list()
    emotions = pl.DataFrame(
        {"emotion_label": labels, "emotion_id": [taxonomy.resolve(label) for label in labels]},
        schema={"emotion_label": pl.String, "emotion_id": pl.String},
    )
    text = pl.col("value_raw").str.strip_chars()
    number = text.cast(pl.Float64, strict=False)
    bounds = SCALE_RANGES[scale]
    outside = number.is_between(*bounds).not_() if bounds else pl.lit(False)
    checked = (
        units.join(refs, on="image_ref", how="left", nulls_equal=True, maintain_order="left")
        .join(emotions, on="emotion_label", how="left", nulls_equal=True, maintain_order="left")
        .with_columns(score=number)
        .with_columns(
            reason=pl.coalesce(
                "ref_reason",
                pl.when(pl.col("emotion_id").is_null()).then(pl.lit("unknown_emotion")),
                pl.when(pl.col("value_raw").is_null() | text.str.to_lowercase().is_in(MISSING_TOKENS)).then(
                    pl.lit("missing_value")
                ),
                pl.when(~number.is_finite().fill_null(False)).then(pl.lit("not_a_number")),
                pl.when(outside).then(pl.lit("out_of_scale")),
            ),
            detail=pl.coalesce(
                "ref_detail",
                pl.when(pl.col("emotion_id").is_null()).then(pl.format("'{}' is no emotion", "emotion_label")),
                pl.when(outside).then(pl.format("{} is outside the declared scale {}", text, pl.lit(scale))),
                pl.when(~number.is_finite().fill_null(False)).then(pl.format("'{}'", "value_raw")),
            ),
        )
    )
    valid = pl.col("reason").is_null()
    repeated = valid & (pl.int_range(pl.len()).over("image_id", "emotion_id", valid) > 0)
    checked = checked.with_columns(
        reason=pl.when(repeated).then(pl.lit("duplicate")).otherwise("reason"),
        detail=pl.when(repeated).then(pl.format("{} / {} again", "image_ref", "emotion_id")).otherwise("detail"),
    )
    accepted = checked.filter(pl.col("reason").is_null())
    accepted = accepted.select(
        "source_row",
        "image_ref",
        "image_id",
        "emotion_id",
        "score",
        intensity=pl.Series(to_intensity(accepted["score"].to_numpy(), scale), dtype=pl.Float64).fill_nan(None),
    )
    rejects = checked.filter(pl.col("reason").is_not_null()).select(*REJECT_SCHEMA)
    if accepted.height + rejects.height != units.height:
        raise RuntimeError(f"{units.height} scores read but {accepted.height} accepted + {rejects.height} rejected")
    return ValidatedPredictions(accepted.cast(ACCEPTED_SCHEMA), rejects.cast(REJECT_SCHEMA), units.height, layout)


def load_predictions(
    source_file: str, data: bytes, taxonomy: Taxonomy, images: ImageIndex, collection: str | None, scale: str
) -> ValidatedPredictions:
    units, layout = read_units(source_file, data)
    return validate_predictions(units, layout, taxonomy, images, collection, scale)
