"""Parsed annotation units validated into accepted ratings and precise rejects.

Every unit gets exactly one outcome, so a batch's rows read = accepted + rejected + skipped, always. Checks run
on the distinct references, labels and values and are joined back, which keeps 16 million units to seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import polars as pl

from emonet_assets.lib.annotation.annotation_formats import UNPARSEABLE, ParsedFile
from emonet_assets.lib.shared.rules import GENERATED, INTENSITY_MAX
from emonet_assets.lib.taxonomy.taxonomy import Taxonomy, normalize_label

KEY = ["image_id", "annotator", "emotion_id"]
# What other batches already accepted: their (image_id, annotator, emotion_id, batch_id) rows, or a lookup that
# returns those rows for the batch's own keys (repeats allowed) given them and the batch's distinct image ids (the
# resolved references', which may name more images than the keys do), so that a store's earlier ratings need not be
# read whole.
EarlierKeys = pl.DataFrame | Callable[[pl.DataFrame, pl.Series], pl.DataFrame]

REJECT_REASONS = {
    "missing_image_ref": "the unit names no image",
    "unsafe_image_path": "the image reference climbs out of its folder ('..'), so it is never resolved",
    "unknown_image": "the reference matches no platform image (external images need a collection)",
    "positional_id": "the reference is only a number (or a file named by one): a prompt position of the generated "
    "images, or an image of another collection such as the EmoNet-Face release's; import the file with "
    "--collection NAME for external images, or declare positional ids (--positional-ids, sidecar "
    '`"positional_ids": true`) to read numbers as prompt positions',
    "unknown_emotion": "the label names no emotion of the taxonomy (or names several)",
    "empty_annotator": "no annotator id",
    "missing_value": "no value (empty, NaN or null)",
    "not_a_number": "the value of an intensity rating is not a number",
    "not_an_integer": "intensities are whole numbers",
    "out_of_scale": f"intensities run from 0 to {INTENSITY_MAX}",
    "not_binary": "a binary rating is yes/no, true/false, present/absent or 1/0",
    "malformed_row": "the CSV row has more fields than the header",
    "unparseable_annotations": "the HQ annotations cell is neither a JSON object nor a Python dict literal",
    "duplicate_in_batch": "the same image, annotator and emotion came earlier in this file; the first one counts",
    "duplicate_of_earlier_batch": "an earlier batch already brought this image, annotator and emotion",
}
SKIP_REASONS = {
    "cancelled": "a Label Studio annotation the annotator cancelled",
    "empty_annotation": "an annotation with no ratings (empty Label Studio result or empty HQ dict)",
}

_COLLECTION = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_TRUE = ("true", "yes", "present")
_FALSE = ("false", "no", "absent")
MISSING_TOKENS = ("", "nan", "null", "none", "na", "n/a")


def validate_collection_name(name: str) -> str:
    if not isinstance(name, str) or not _COLLECTION.fullmatch(name):
        raise ValueError(
            f"collection name {name!r} must be 1-64 characters of a-z, 0-9, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    if name == GENERATED:
        raise ValueError(f"collection name {name!r} is reserved for the platform's own images")
    return name


@dataclass(frozen=True)
class ImageIndex:
    """Prompt id, sha256 and image path name an image (`refs`); a release-style id (zero-padded prompt position)
    does too (`positions`), but the release numbers its own images the same way, so positions are read only
    when a batch declares them."""

    refs: dict[str, str]
    positions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_tables(cls, manifest: pl.DataFrame, prompts: pl.DataFrame) -> ImageIndex:
        images = manifest.select("prompt_id", "image_sha256", "image_path").join(
            prompts.select("prompt_id", "position"), on="prompt_id", how="left"
        )
        sha = pl.col("image_sha256")
        refs = pl.concat(
            [images.select(ref=pl.col(column), image_id=sha) for column in ("prompt_id", "image_sha256", "image_path")]
        )
        positions = images.select(ref=pl.col("position").cast(pl.String).str.zfill(5), image_id=sha)
        return cls(_unambiguous(refs), _unambiguous(positions))


def _unambiguous(refs: pl.DataFrame) -> dict[str, str]:
    """A reference that would name two images (a prompt rendered by two models) is left out: it resolves to none."""
    unique = (
        refs.drop_nulls().unique().group_by("ref").agg(pl.col("image_id").first(), n=pl.len()).filter(pl.col("n") == 1)
    )
    return dict(zip(unique["ref"].to_list(), unique["image_id"].to_list(), strict=True))


@dataclass(frozen=True)
class BatchResult:
    accepted: pl.DataFrame
    rejects: pl.DataFrame
    extras: pl.DataFrame
    external_images: pl.DataFrame
    skipped: pl.DataFrame
    rows_read: int
    label_mappings: pl.DataFrame

    @property
    def counts(self) -> dict[str, int]:
        return {
            "rows_read": self.rows_read,
            "accepted": self.accepted.height,
            "rejected": self.rejects.height,
            "skipped": self.skipped.height,
            "extras": self.extras.height,
        }

    def reason_counts(self) -> pl.DataFrame:
        """Rows per reject or skip reason, with what the reason means."""
        reasons = pl.concat([self.rejects.select("reason"), self.skipped.select("reason")])
        meanings = REJECT_REASONS | SKIP_REASONS
        return (
            reasons.group_by("reason")
            .agg(rows=pl.len())
            .sort(["rows", "reason"], descending=[True, False])
            .with_columns(meaning=pl.col("reason").replace_strict(meanings, default=None, return_dtype=pl.String))
        )

    def label_notes(self) -> list[str]:
        """One line per label read through an alias or cluster word, for the batch log and the CLI."""
        return [
            f"label {label!r} read as {emotion_id} ({rows:,} row{'s' if rows != 1 else ''})"
            for label, emotion_id, rows in self.label_mappings.iter_rows()
        ]


def _decoded(ref: str) -> str:
    """Decode until stable, so '%252e%252e' cannot hide a '..'."""
    for _ in range(3):
        once = unquote(ref)
        if once == ref:
            break
        ref = once
    return ref


def _is_number(text: str) -> bool:
    return re.fullmatch(r"[0-9]+", text) is not None


def _stem(path: str) -> str:
    """The file name without its extension; a number is zero-padded like the release's ids."""
    base = re.split(r"[/\\]", path)[-1]
    stem, dot, _ = base.rpartition(".")
    stem = stem if dot and stem else base
    return stem.zfill(5) if _is_number(stem) else stem


def _inspect_ref(ref: str | None) -> tuple[str | None, str | None, list[str]]:
    """(reason, detail, lookup keys best first, the file stem last) for one raw image reference."""
    ref = (ref or "").strip()
    if not ref:
        return "missing_image_ref", "no image reference", []
    if ".." in re.split(r"[/\\?&=]", _decoded(ref)):
        return "unsafe_image_path", f"{ref!r} has a '..' path segment", []
    if re.search(r"[/\\?]", ref):
        parts = urlsplit(ref)
        d = parse_qs(parts.query).get("d")
        path = d[0] if d else parts.path
        return None, None, [ref, path, _stem(path)]
    return None, None, [ref, _stem(ref)]


def resolve_refs(refs: pl.Series, images: ImageIndex, collection: str | None, positional_ids: bool) -> pl.DataFrame:
    rows = []
    for ref in refs.to_list():
        reason, detail, keys = _inspect_ref(ref)
        image_id = None
        if reason is None and collection is not None:
            stem = keys[-1]
            if stem:
                image_id = f"{collection}/{stem}"
            else:
                reason, detail = "missing_image_ref", f"{ref!r} has no file name"
        elif reason is None:
            image_id = next((images.refs[k] for k in keys if k in images.refs), None)
            if image_id is None and _is_number(keys[-1]):
                if positional_ids:
                    image_id = images.positions.get(keys[-1])
                else:
                    reason = "positional_id"
                    detail = (
                        f"{ref.strip()!r} is only a number: import with --collection NAME (external images) "
                        "or --positional-ids (prompt positions of the generated images)"
                    )
            if image_id is None and reason is None:
                reason, detail = "unknown_image", f"{ref.strip()!r} is not a platform image"
        rows.append((ref, image_id, reason, detail))
    schema = {"image_ref": pl.String, "image_id": pl.String, "ref_reason": pl.String, "ref_detail": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def _value_checks(values: pl.Series, scale: str) -> pl.DataFrame:
    """value, reason and detail for each distinct raw value."""
    raw = pl.col("value_raw")
    text = raw.str.strip_chars()
    lower = text.str.to_lowercase()
    number = text.cast(pl.Float64, strict=False)
    whole = number.cast(pl.Int64, strict=False)
    missing = raw.is_null() | lower.is_in(MISSING_TOKENS)
    if scale == "binary":
        is_one, is_zero = lower.is_in(_TRUE) | (number == 1), lower.is_in(_FALSE) | (number == 0)
        value = pl.when(is_one).then(1).when(is_zero).then(0)
        reason = pl.when(missing).then(pl.lit("missing_value")).when(value.is_null()).then(pl.lit("not_binary"))
        detail = pl.format("'{}' is not a yes/no value", text)
    else:
        finite = number.is_finite().fill_null(False)
        integral = finite & (number == number.floor())
        value = pl.when(integral & whole.is_between(0, INTENSITY_MAX)).then(whole)
        reason = (
            pl.when(missing)
            .then(pl.lit("missing_value"))
            .when(~finite)
            .then(pl.lit("not_a_number"))
            .when(~integral)
            .then(pl.lit("not_an_integer"))
            .when(value.is_null())
            .then(pl.lit("out_of_scale"))
        )
        detail = (
            pl.when(~finite)
            .then(pl.format("'{}' is not a number", text))
            .when(~integral)
            .then(pl.format("{} is not a whole number", text))
            .otherwise(pl.format("{} is outside 0–{}", pl.coalesce(whole.cast(pl.String), text), pl.lit(INTENSITY_MAX)))
        )
    detail = (
        pl.when(raw.is_null())
        .then(pl.lit("no value"))
        .when(missing)
        .then(pl.format("no value ('{}')", raw))
        .otherwise(detail)
    )
    checks = pl.DataFrame({"value_raw": values}).with_columns(value=value.cast(pl.Int32), value_reason=reason)
    return checks.with_columns(value_detail=pl.when(pl.col("value_reason").is_not_null()).then(detail))


def _lookup(frame: pl.DataFrame, table: pl.DataFrame, on: str | list[str]) -> pl.DataFrame:
    return frame.join(table, on=on, how="left", nulls_equal=True, maintain_order="left")


def _dense_code(column: str) -> pl.Expr:
    return pl.col(column).rank("dense").cast(pl.Int64)


def import_batch(
    parsed: ParsedFile,
    batch_id: str,
    taxonomy: Taxonomy,
    images: ImageIndex,
    collection: str | None = None,
    earlier_keys: EarlierKeys | None = None,
    positional_ids: bool = False,
) -> BatchResult:
    """`positional_ids` reads bare-number references as prompt positions of the generated images; without it
    they are rejected, since the release numbers its own images the same way. A collection batch names its own
    images, so there numbers are file names (`BatchDeclaration` refuses both at once)."""
    if collection is not None:
        validate_collection_name(collection)
    units, extras = parsed.units, parsed.extras
    refs = resolve_refs(
        pl.concat([units["image_ref"], extras["image_ref"]]).unique(), images, collection, positional_ids
    )
    refs = refs.with_columns(image_code=_dense_code("image_id"))
    labels = units["emotion_label"].unique().drop_nulls().to_list()
    emotion_ids = [taxonomy.resolve(label) for label in labels]
    index = {e.id: e.index for e in taxonomy.emotions}
    emotions = pl.DataFrame(
        {
            "emotion_label": labels,
            "emotion_id": emotion_ids,
            "emotion_code": [index.get(e) for e in emotion_ids],
        },
        schema={"emotion_label": pl.String, "emotion_id": pl.String, "emotion_code": pl.Int64},
    )
    annotators = (
        units.select(annotator_raw=pl.col("annotator").unique())
        .with_columns(annotator=pl.col("annotator_raw").str.strip_chars())
        .with_columns(annotator=pl.when(pl.col("annotator") != "").then("annotator"))
        .with_columns(annotator_code=_dense_code("annotator"))
    )
    values = _value_checks(units["value_raw"].unique(), parsed.scale)
    checked = _lookup(units.rename({"annotator": "annotator_raw"}), annotators, "annotator_raw")
    checked = _lookup(_lookup(_lookup(checked, refs, "image_ref"), emotions, "emotion_label"), values, "value_raw")
    parseable = pl.col("problem").fill_null("") != UNPARSEABLE
    checked = checked.with_columns(
        reason=pl.coalesce(
            "problem",
            "ref_reason",
            pl.when(parseable & pl.col("emotion_id").is_null()).then(pl.lit("unknown_emotion")),
            pl.when(pl.col("annotator").is_null()).then(pl.lit("empty_annotator")),
            pl.when(parseable).then("value_reason"),
        ),
        key=(pl.col("image_code") * (annotators.height + 1) + pl.col("annotator_code")) * (len(index) + 1)
        + pl.col("emotion_code"),
    )
    if callable(earlier_keys):
        earlier_keys = earlier_keys(checked.select(KEY).drop_nulls(), refs["image_id"].drop_nulls().unique())
    checked = _mark_duplicates(checked, _earlier_codes(earlier_keys, refs, annotators, emotions, len(index)))
    provenance = {
        "batch_id": pl.lit(batch_id),
        "source_file": pl.lit(parsed.source_file),
        "source_row": pl.col("source_row"),
        "source_ref": pl.col("source_ref"),
    }
    # In source order (a row's ratings in the order read): the annotations table is the batch files scanned in turn.
    accepted = (
        checked.filter(pl.col("reason").is_null())
        .select(
            **provenance,
            collection=pl.lit(collection or GENERATED),
            image_id="image_id",
            image_ref="image_ref",
            annotator="annotator",
            emotion_id="emotion_id",
            scale=pl.lit(parsed.scale),
            value="value",
        )
        .sort("source_row", maintain_order=True)
    )
    rejects = _rejects(checked.filter(pl.col("reason").is_not_null()), provenance)
    skipped = parsed.skipped.select(
        **provenance,
        reason="reason",
    )
    rows_read = units.height + skipped.height
    if accepted.height + rejects.height + skipped.height != rows_read:
        raise RuntimeError(
            f"{parsed.source_file}: {rows_read} units read but {accepted.height} accepted + {rejects.height} "
            f"rejected + {skipped.height} skipped; an import bug lost or doubled units"
        )
    extras = _lookup(extras, refs.select("image_ref", "image_id"), "image_ref").select(
        **provenance,
        collection=pl.lit(collection or GENERATED),
        image_id="image_id",
        image_ref="image_ref",
        annotator=pl.col("annotator").str.strip_chars(),
        dimension="dimension",
        value="value",
        value_raw="value_raw",
    )
    external = _external(checked, extras, collection, batch_id)
    mappings = _label_mappings(units, emotions, taxonomy)
    return BatchResult(accepted, rejects, extras, external, skipped, rows_read, mappings)


def _label_mappings(units: pl.DataFrame, emotions: pl.DataFrame, taxonomy: Taxonomy) -> pl.DataFrame:
    """Labels resolved through an alias or cluster word ('Happiness' -> elation), with the rows that carry them:
    accepted, but said, since a cluster word may not be what the annotator meant."""
    own = {normalize_label(name) for e in taxonomy.emotions for name in (e.id, e.name)}
    aliased = pl.DataFrame(
        [
            (label, emotion_id)
            for label, emotion_id in emotions.select("emotion_label", "emotion_id").iter_rows()
            if emotion_id is not None and normalize_label(label) not in own
        ],
        schema={"label": pl.String, "emotion_id": pl.String},
        orient="row",
    )
    rows = units.group_by(label="emotion_label").agg(rows=pl.len())
    return aliased.join(rows, on="label").sort(["rows", "label"], descending=[True, False])


def _earlier_codes(
    earlier_keys: pl.DataFrame | None,
    refs: pl.DataFrame,
    annotators: pl.DataFrame,
    emotions: pl.DataFrame,
    n_emotions: int,
) -> pl.DataFrame | None:
    """Earlier keys in this batch's integer key space; keys naming nothing in this batch cannot collide."""
    if earlier_keys is None or earlier_keys.is_empty():
        return None
    codes = (
        earlier_keys.select(*KEY, earlier_batch="batch_id")
        .join(refs.select("image_id", "image_code").drop_nulls().unique(), on="image_id")
        .join(annotators.select("annotator", "annotator_code").drop_nulls().unique(), on="annotator")
        .join(emotions.select("emotion_id", "emotion_code").drop_nulls().unique(), on="emotion_id")
    )
    key = (pl.col("image_code") * (annotators.height + 1) + pl.col("annotator_code")) * (n_emotions + 1)
    return codes.select(key=key + pl.col("emotion_code"), earlier_batch="earlier_batch").unique(
        "key", keep="first", maintain_order=True
    )


def _mark_duplicates(checked: pl.DataFrame, earlier: pl.DataFrame | None) -> pl.DataFrame:
    """The first unit of a key counts. Keys are integers and checked by sorting first, as most files have no
    duplicates and hashing 16 million keys costs far more than sorting them."""
    candidate_keys = checked.filter(pl.col("reason").is_null())["key"].sort()
    if not (candidate_keys.diff() == 0).any():
        checked = checked.with_columns(first_row=pl.lit(None, pl.Int64), first_ref=pl.lit(None, pl.String))
    else:
        dups = (
            checked.filter(pl.col("reason").is_null())
            .group_by("key")
            .agg(first_row=pl.col("source_row").min(), n=pl.len())
            .filter(pl.col("n") > 1)
            .drop("n")
        )
        firsts = checked.filter(pl.col("source_row").is_in(dups["first_row"].implode())).select(
            first_row="source_row", first_ref="source_ref"
        )
        checked = _lookup(checked, dups.join(firsts, on="first_row"), "key")
    if earlier is None:
        checked = checked.with_columns(earlier_batch=pl.lit(None, pl.String))
    else:
        checked = _lookup(checked, earlier, "key")
    return checked.with_columns(
        reason=pl.coalesce(
            "reason",
            pl.when(pl.col("source_row") != pl.col("first_row")).then(pl.lit("duplicate_in_batch")),
            pl.when(pl.col("earlier_batch").is_not_null()).then(pl.lit("duplicate_of_earlier_batch")),
        )
    )


def _rejects(rejected: pl.DataFrame, provenance: dict[str, pl.Expr]) -> pl.DataFrame:
    reason = pl.col("reason")
    label = pl.col("emotion_label")
    detail = (
        pl.when(reason.is_in(["missing_image_ref", "unsafe_image_path", "unknown_image", "positional_id"]))
        .then("ref_detail")
        .when(reason == "unknown_emotion")
        .then(
            pl.when(label.is_null())
            .then(pl.lit("no emotion label (an empty field, or a row cut short)"))
            .otherwise(pl.format("'{}' names no single emotion of the taxonomy", label))
        )
        .when(reason == "empty_annotator")
        .then(pl.lit("no annotator id"))
        .when(reason.is_in(["malformed_row", UNPARSEABLE]))
        .then("problem_detail")
        .when(reason == "duplicate_in_batch")
        .then(pl.format("same image, annotator and emotion as {}", "first_ref"))
        .when(reason == "duplicate_of_earlier_batch")
        .then(pl.format("already imported by batch {}", "earlier_batch"))
        .otherwise("value_detail")
    )
    return rejected.select(
        **provenance,
        reason="reason",
        detail=detail,
        image_ref="image_ref",
        annotator=pl.coalesce("annotator", "annotator_raw"),
        emotion_label="emotion_label",
        value_raw="value_raw",
    )


def _external(checked: pl.DataFrame, extras: pl.DataFrame, collection: str | None, batch_id: str) -> pl.DataFrame:
    """Every image of the collection this batch names, once, with the reference that first named it."""
    named = pl.concat([checked.select("image_id", "image_ref"), extras.select("image_id", "image_ref")])
    if collection is None:
        named = named.clear()
    return (
        named.drop_nulls("image_id")
        .unique("image_id", keep="first", maintain_order=True)
        .select(
            collection=pl.lit(collection, pl.String),
            image_id="image_id",
            image_ref="image_ref",
            batch_id=pl.lit(batch_id),
        )
    )
