"""Expert annotation files in the shapes they arrive in, parsed into one row per candidate rating (a unit).

Parsing judges no rating: every candidate becomes a unit that remembers where it came from, and validation
(`annotation_import`) decides its fate, so rows read = accepted + rejected + skipped holds for every file.
Only a file that cannot be read as a whole raises `AnnotationFileError`, whose message starts with the file name.
"""

from __future__ import annotations

import ast
import codecs
import csv
import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass

import polars as pl

FORMATS = ("long", "hq", "label-studio")
EXTRA_PREFIX = "Extra Dimensions|"
BOOLEAN_TOKENS = ("true", "false", "yes", "no", "present", "absent")

UNIT_SCHEMA = {
    "source_row": pl.Int64,
    "source_ref": pl.String,
    "image_ref": pl.String,
    "annotator": pl.String,
    "emotion_label": pl.String,
    "value_raw": pl.String,
    "problem": pl.String,
    "problem_detail": pl.String,
}
EXTRA_SCHEMA = {
    "source_row": pl.Int64,
    "source_ref": pl.String,
    "image_ref": pl.String,
    "annotator": pl.String,
    "dimension": pl.String,
    "value": pl.Float64,
    "value_raw": pl.String,
}
SKIP_SCHEMA = {"source_row": pl.Int64, "source_ref": pl.String, "reason": pl.String}

# Columns each CSV format needs; a tuple lists accepted synonyms, the first being the canonical name.
_CSV_COLUMNS = {
    "long": (("path", "image"), ("annotator",), ("value",), ("emotion",)),
    "hq": (("image", "path"), ("annotator",), ("annotations",)),
}
_FIELDS = {"long": ("image_ref", "annotator", "value_raw", "emotion_label"), "hq": ("image_ref", "annotator", "cell")}
_LS_IMAGE_KEYS = ("image_sha256", "prompt_id", "image_id", "image")
UNPARSEABLE = "unparseable_annotations"
_DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab"}
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_UTF16_BOMS = ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_SAVE_AS = "save it as CSV UTF-8"


class AnnotationFileError(ValueError):
    """The whole file is rejected; the message starts with the file name and says what is wrong."""


@dataclass(frozen=True)
class ParsedFile:
    """Units carry two columns beyond the ratings: `problem` (a reject reason the parser already knows, e.g.
    `malformed_row`) and `problem_detail`, since only the parser sees the row's shape."""

    source_file: str
    format: str
    scale: str
    units: pl.DataFrame
    extras: pl.DataFrame
    skipped: pl.DataFrame
    ignored_columns: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def parse_annotation_file(source_file: str, data: bytes, fmt: str = "auto", max_bytes: int | None = None) -> ParsedFile:
    if fmt not in ("auto", *FORMATS):
        raise AnnotationFileError(f"{source_file}: unknown format {fmt!r}; choose one of auto, {', '.join(FORMATS)}")
    if max_bytes is not None and len(data) > max_bytes:
        raise AnnotationFileError(
            f"{source_file}: {len(data):,} bytes is over the {max_bytes:,}-byte limit; split it into smaller files"
        )
    body = _text(source_file, _decompressed(source_file, data, max_bytes))
    first = body[re.match(rb"\s*", body).end() :][:1]
    if first in (b"[", b"{"):
        if fmt not in ("auto", "label-studio"):
            raise AnnotationFileError(
                f"{source_file}: format {fmt!r} expects a CSV with columns {_needs(fmt)}, but the file is JSON"
            )
        return _parse_label_studio(source_file, body)
    return _parse_csv(source_file, body, fmt)


def _decompressed(source_file: str, data: bytes, max_bytes: int | None) -> bytes:
    """Gzip by its magic bytes, or by a .gz name; the limit holds for what it unpacks to, too."""
    if not (data.startswith(_GZIP_MAGIC) or source_file.lower().endswith(".gz")):
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as unpacked:
            out = unpacked.read(-1 if max_bytes is None else max_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise AnnotationFileError(
            f"{source_file}: not a readable gzip file ({exc}); compress it again with gzip, or import it uncompressed"
        ) from None
    if max_bytes is not None and len(out) > max_bytes:
        raise AnnotationFileError(
            f"{source_file}: over the {max_bytes:,}-byte limit once decompressed; split it into smaller files"
        )
    return out


def _text(source_file: str, data: bytes) -> bytes:
    """UTF-8 without a byte-order mark. Excel's "Unicode text" is UTF-16 LE with a BOM (and tab-separated)."""
    if data.startswith(_ZIP_MAGIC):
        raise AnnotationFileError(
            f"{source_file}: a ZIP archive (an Excel .xlsx workbook is one), not text: {_SAVE_AS}, "
            "or unzip it and import the files inside"
        )
    utf16 = next((codec for bom, codec in _UTF16_BOMS if data.startswith(bom)), None)
    if utf16:
        try:
            body = data[2:].decode(utf16).encode("utf-8")
        except UnicodeDecodeError as exc:
            raise AnnotationFileError(
                f"{source_file}: UTF-16 text that cannot be decoded at byte {exc.start + 2}; {_SAVE_AS}"
            ) from None
    else:
        body = data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data
        _check_utf8(source_file, body, len(data) - len(body))
    if not body or body.isspace():
        raise AnnotationFileError(f"{source_file}: the file is empty")
    if b"\x00" in body:
        raise AnnotationFileError(
            f"{source_file}: the text holds NUL bytes (UTF-16 without a byte-order mark?); {_SAVE_AS}"
        )
    return body


def _check_utf8(source_file: str, body: bytes, offset: int) -> None:
    if body.isascii():
        return
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise AnnotationFileError(
            f"{source_file}: not UTF-8 text: byte 0x{body[exc.start]:02x} at offset {exc.start + offset} "
            f"(line {line}) cannot be decoded; {_SAVE_AS}"
        ) from None


def _needs(fmt: str) -> str:
    return ", ".join(" (or ".join(names) + (")" if len(names) > 1 else "") for names in _CSV_COLUMNS[fmt])


def _scale(values: pl.Series) -> str:
    """Binary when most given values are yes/no words; the release's binary files say True/False."""
    counts = values.drop_nulls().value_counts(name="n").with_columns(token=pl.col(values.name).str.strip_chars())
    counts = counts.filter(pl.col("token") != "")
    booleans = counts.filter(pl.col("token").str.to_lowercase().is_in(BOOLEAN_TOKENS))["n"].sum()
    return "binary" if booleans * 2 > counts["n"].sum() else "intensity"


def _parse_csv(source_file: str, body: bytes, fmt: str) -> ParsedFile:
    end = body.find(b"\n")
    header = (body if end < 0 else body[:end]).decode("utf-8").rstrip("\r")
    delimiter = _delimiter(header)
    names = [name.strip() for name in next(csv.reader([header], delimiter=delimiter))]
    detected = _detect_csv_format(source_file, names, fmt, delimiter)
    positions = _column_positions(names, detected)
    frame = _read_rows(source_file, body, delimiter, len(names))
    if frame.is_empty():
        raise AnnotationFileError(f"{source_file}: the file has a header but no data rows")
    fields = frame.select(
        "line",
        *[pl.col(f"c{position}").alias(field) for field, position in zip(_FIELDS[detected], positions, strict=True)],
        malformed=pl.col(f"c{len(names)}").is_not_null(),
    )
    used = set(positions)
    notes = () if delimiter == "," else (f"delimiter {_DELIMITER_NAMES[delimiter]} detected",)
    ignored = tuple(name for i, name in enumerate(names) if i not in used)
    width = len(names)
    if detected == "long":
        units, extras = _long_units(fields, width)
        skipped = pl.DataFrame(schema=SKIP_SCHEMA)
        scale = _scale(units["value_raw"])
    else:
        units, extras, skipped = _hq_units(fields, width)
        scale = "intensity"
    return ParsedFile(source_file, detected, scale, units, extras, skipped, ignored, notes)


def _delimiter(header: str) -> str:
    """Excel in many locales writes ';', and some tools tab: a one-field header holding one of them says so."""
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in (";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _detect_csv_format(source_file: str, names: list[str], fmt: str, delimiter: str) -> str:
    keys = {name.casefold() for name in names}
    if fmt == "label-studio":
        raise AnnotationFileError(
            f"{source_file}: format 'label-studio' expects a JSON list of tasks, but the file is CSV "
            f"with columns {names}"
        )
    if fmt == "auto":
        if "annotations" in keys:
            fmt = "hq"
        elif {"value", "emotion"} <= keys:
            fmt = "long"
        else:
            hint = ""
            if len(names) == 1 and re.search(r"[|:]", names[0]):
                hint = "; the header is one field: is the file delimited by something other than ',', ';' or tab?"
            raise AnnotationFileError(
                f"{source_file}: cannot tell the annotation format from the columns {names}: long needs "
                f"{_needs('long')}; hq needs {_needs('hq')}; label-studio is a JSON export{hint}"
            )
    missing = [names_[0] for names_ in _CSV_COLUMNS[fmt] if not keys & set(names_)]
    if missing:
        raise AnnotationFileError(
            f"{source_file}: missing required column(s) {missing} for format {fmt!r} "
            f"(needs {_needs(fmt)}); columns found: {names} (delimiter {_DELIMITER_NAMES[delimiter]})"
        )
    return fmt


def _column_positions(names: list[str], fmt: str) -> list[int]:
    keys = [name.casefold() for name in names]
    return [next(keys.index(n) for n in synonyms if n in keys) for synonyms in _CSV_COLUMNS[fmt]]


def _read_rows(source_file: str, body: bytes, delimiter: str, width: int) -> pl.DataFrame:
    """Data rows as strings c0..c{width-1}, plus c{width} (a field beyond the header) and the physical `line`.

    Short rows get nulls, so their units are rejected for what is missing; blank rows are not units.
    """
    columns = [f"c{i}" for i in range(width + 1)]
    try:
        frame = pl.read_csv(
            body,
            has_header=False,
            separator=delimiter,
            infer_schema=False,
            schema=dict.fromkeys(columns, pl.String),
            missing_columns="insert",
            truncate_ragged_lines=True,
            raise_if_empty=False,
        )
    except pl.exceptions.PolarsError:
        frame = _read_rows_precisely(source_file, body, delimiter, columns)
    else:
        physical_lines = body.count(b"\n") + (not body.endswith(b"\n"))
        line = pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
        if frame.height != physical_lines:
            newlines = pl.sum_horizontal(pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in columns)
            line = line + newlines.cum_sum().shift(1, fill_value=0).cast(pl.Int64)
        frame = frame.with_columns(line=line)
    blank = pl.all_horizontal(pl.col(columns).is_null())
    frame = frame.slice(1)
    return frame.filter(~blank) if frame.select(blank.any()).item() else frame


def _read_rows_precisely(source_file: str, body: bytes, delimiter: str, columns: list[str]) -> pl.DataFrame:
    """Polars could not parse the file: read it record by record to name the line that breaks it."""
    reader = csv.reader(io.StringIO(body.decode("utf-8"), newline=""), delimiter=delimiter, strict=True)
    rows, lines, start = [], [], 1
    try:
        for record in reader:
            rows.append([field or None for field in record[: len(columns)]] + [None] * (len(columns) - len(record)))
            lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        problem = str(exc)
        if problem == "unexpected end of data":
            problem = "a quoted field starting on this line is never closed (unbalanced quotes)"
        elif "expected after" in problem:
            problem = f"text after a closing quote ({problem}; unbalanced quotes?)"
        raise AnnotationFileError(f"{source_file}: line {start}: {problem}") from None
    frame = pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String), orient="row")
    return frame.with_columns(line=pl.Series(lines, dtype=pl.Int64))


def _extra_value(raw: pl.Expr) -> pl.Expr:
    number = raw.str.strip_chars().cast(pl.Float64, strict=False)
    return pl.when(number.is_finite()).then(number)


def _long_units(fields: pl.DataFrame, width: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    is_extra = pl.col("emotion_label").str.starts_with(EXTRA_PREFIX).fill_null(False)
    numbered = pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
    source_ref = pl.concat_str(pl.lit("line "), pl.col("line"))
    units = fields.filter(~is_extra).select(
        source_row=numbered,
        source_ref=source_ref,
        image_ref="image_ref",
        annotator="annotator",
        emotion_label="emotion_label",
        value_raw="value_raw",
        problem=pl.when("malformed").then(pl.lit("malformed_row")),
        problem_detail=pl.when("malformed").then(pl.lit(f"the row has more fields than the header's {width}")),
    )
    extras = fields.filter(is_extra).select(
        source_row=numbered,
        source_ref=source_ref,
        image_ref="image_ref",
        annotator="annotator",
        dimension=pl.col("emotion_label").str.strip_prefix(EXTRA_PREFIX),
        value=_extra_value(pl.col("value_raw")),
        value_raw="value_raw",
    )
    return units, extras


class _Collector:
    """Units, extras and skips of the row-by-row formats, numbered in file order."""

    def __init__(self) -> None:
        self.units: list[tuple] = []
        self.extras: list[tuple] = []
        self.skipped: list[tuple] = []
        self.unit_count = 0

    def _next(self) -> int:
        self.unit_count += 1
        return self.unit_count

    def unit(self, ref, image_ref, annotator, label, value, problem=None, detail=None) -> None:
        self.units.append((self._next(), ref, image_ref, annotator, label, value, problem, detail))

    def skip(self, ref: str, reason: str) -> None:
        self.skipped.append((self._next(), ref, reason))

    def rating(self, ref, image_ref, annotator, label, value, problem=None, detail=None) -> None:
        """One labelled value: an extra dimension when the label says so, else a unit."""
        raw = None if value is None else str(value)
        if isinstance(label, str) and label.startswith(EXTRA_PREFIX):
            self.extras.append((len(self.extras) + 1, ref, image_ref, annotator, label[len(EXTRA_PREFIX) :], raw))
        else:
            self.unit(ref, image_ref, annotator, None if label is None else str(label), raw, problem, detail)

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        units = pl.DataFrame(self.units, schema=UNIT_SCHEMA, orient="row")
        extra_columns = {k: v for k, v in EXTRA_SCHEMA.items() if k != "value"}
        extras = pl.DataFrame(self.extras, schema=extra_columns, orient="row")
        extras = extras.with_columns(value=_extra_value(pl.col("value_raw"))).select(list(EXTRA_SCHEMA))
        return units, extras, pl.DataFrame(self.skipped, schema=SKIP_SCHEMA, orient="row")


def _hq_units(fields: pl.DataFrame, width: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    out = _Collector()
    too_wide = ("malformed_row", f"the row has more fields than the header's {width}")
    rows = fields.select("line", "image_ref", "annotator", "cell", "malformed").iter_rows()
    for line, image_ref, annotator, cell, malformed in rows:
        shape = too_wide if malformed else (None, None)
        scores, why = _parse_scores(cell)
        if scores is None:
            out.unit(f"line {line}", image_ref, annotator, None, cell, *(shape if malformed else (UNPARSEABLE, why)))
        elif not scores:
            out.skip(f"line {line}", "empty_annotation")
        for key, value in (scores or {}).items():
            out.rating(f"line {line} key {str(key)!r}", image_ref, annotator, key, value, *shape)
    return out.frames()


def _parse_scores(cell: str | None) -> tuple[dict | None, str | None]:
    """The release writes Python dict literals (single quotes); other tools write JSON."""
    if cell is None or not cell.strip():
        return None, "the annotations cell is empty"
    try:
        scores = json.loads(cell)
    except ValueError:
        try:
            scores = ast.literal_eval(cell.strip())
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None, f"the annotations cell is neither a JSON object nor a Python dict literal: {cell[:80]!r}"
    if not isinstance(scores, dict):
        return None, f"the annotations cell holds {_describe(scores)}, not an emotion -> intensity mapping"
    return scores, None


def _describe(value: object) -> str:
    if isinstance(value, dict):
        keys = ", ".join(repr(k) for k in list(value)[:5])
        return f"a JSON object with keys {keys}" if value else "an empty JSON object"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, str):
        return f"a string {value[:40]!r}"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    return f"a {type(value).__name__}"


def _parse_label_studio(source_file: str, body: bytes) -> ParsedFile:
    try:
        tasks = json.loads(body)
    except json.JSONDecodeError as exc:
        raise AnnotationFileError(
            f"{source_file}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise AnnotationFileError(f"{source_file}: the JSON is nested too deeply to read") from None
    if not isinstance(tasks, list):
        raise AnnotationFileError(
            f"{source_file}: a Label Studio export is a JSON list of tasks, but the file holds {_describe(tasks)}"
        )
    if not tasks:
        raise AnnotationFileError(f"{source_file}: the Label Studio export is an empty list: no tasks")
    out = _Collector()
    without = 0
    for t, task in enumerate(tasks):
        where = f"tasks[{t}]"
        if not isinstance(task, dict):
            raise AnnotationFileError(f"{source_file}: {where} is {_describe(task)}, not a task object")
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            raise AnnotationFileError(f"{source_file}: {where}.annotations is {_describe(annotations)}, not a list")
        without += not annotations
        image_ref = _ls_image_ref(task.get("data"))
        for a, annotation in enumerate(annotations):
            at = f"{where}.annotations[{a}]"
            if not isinstance(annotation, dict):
                raise AnnotationFileError(f"{source_file}: {at} is {_describe(annotation)}, not an annotation object")
            result = annotation.get("result")
            if annotation.get("was_cancelled"):
                out.skip(at, "cancelled")
                continue
            if not result:
                out.skip(at, "empty_annotation")
                continue
            if not isinstance(result, list):
                raise AnnotationFileError(f"{source_file}: {at}.result is {_describe(result)}, not a list")
            annotator = _ls_annotator(annotation.get("completed_by"))
            for r, item in enumerate(result):
                item = item if isinstance(item, dict) else {}
                out.rating(f"{at}.result[{r}]", image_ref, annotator, item.get("from_name"), _ls_value(item))
    units, extras, skipped = out.frames()
    if units.is_empty() and skipped.is_empty():
        raise AnnotationFileError(
            f"{source_file}: none of the {len(tasks)} tasks has annotations (is it a JSON-MIN or CSV export? "
            "export 'JSON' from Label Studio)"
        )
    notes = (f"{without} task{'s' if without != 1 else ''} without annotations",) if without else ()
    return ParsedFile(source_file, "label-studio", _scale(units["value_raw"]), units, extras, skipped, (), notes)


def _ls_image_ref(data: object) -> str | None:
    """Platform exports carry the image's id beside the URL; the id is the surer reference."""
    if not isinstance(data, dict):
        return None
    for key in _LS_IMAGE_KEYS:
        value = data.get(key)
        if value is not None and str(value).strip():
            return str(value)
    return None


def _ls_annotator(completed_by: object) -> str | None:
    if isinstance(completed_by, dict):
        email = completed_by.get("email")
        if isinstance(email, str) and email.strip():
            return email
        completed_by = completed_by.get("id")
    return None if completed_by is None else f"ls-{completed_by}"


def _ls_value(item: dict) -> str | None:
    value = item.get("value")
    if not isinstance(value, dict):
        return None
    found = next((value[key] for key in ("rating", "number", "choices") if key in value), None)
    if isinstance(found, list):
        found = "|".join(str(v) for v in found) if found else None
    return None if found is None else str(found)
