"""Real-photo evaluation sets (FER-style class folders or a path,label CSV), their mapping onto the taxonomy, and
scoring.

A model trained on synthetic faces predicts 40 intensities; a real-photo set has a handful of classes. Scoring maps
each class onto an emotion or a rollup level, calls the best-scoring mapped class the prediction, and so measures
the synthetic→real gap: the same model's accuracy on photographs whose labels came from elsewhere.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import polars as pl
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from emonet_assets.lib.shared.package_data import package_path
from emonet_assets.lib.taxonomy.taxonomy import Taxonomy, _read_yaml, normalize_label

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
SET_SCHEMA = {"path": pl.String, "label": pl.String, "source_row": pl.Int64}
DEFAULT_FALLBACK_BELOW = 1.0
BASIC8_MAPPING_PATH = package_path("data", "mappings", "basic8.yaml")
_LISTED = 50


class ExternalSetError(ValueError):
    """An evaluation set or class mapping that cannot be used; the message names the file and rows."""


def _listing(items: list[str]) -> str:
    shown = "\n  ".join(items[:_LISTED])
    more = f"\n  ... and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
    return f"\n  {shown}{more}"


def read_external_set(path: str | Path) -> pl.DataFrame:
    """path (absolute, so a model can open it), label, source_row (the CSV line; null for a folder set).

    A folder holds one subfolder per class, images anywhere below it; a CSV has `path,label` columns with paths
    relative to the CSV's folder. Every bad row is reported in one error rather than the first one found.
    """
    path = Path(path)
    if path.is_dir():
        table = _read_folder(path)
    elif path.is_file():
        table = _read_csv(path)
    else:
        raise ExternalSetError(f"{path}: no such evaluation set (expected a folder of class folders or a CSV)")
    if table.is_empty():
        raise ExternalSetError(f"{path}: the evaluation set has no images")
    return table


def _read_folder(root: Path) -> pl.DataFrame:
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for image in sorted(folder.rglob("*")):
            if image.suffix.casefold() in IMAGE_EXTENSIONS and image.is_file():
                rows.append((str(image.resolve()), folder.name, None))
    return pl.DataFrame(rows, schema=SET_SCHEMA, orient="row")


def _escapes(relative: str) -> str | None:
    """Why a CSV path may not be used, judged on both separators so a Windows-style path cannot slip through."""
    if (
        PurePosixPath(relative).is_absolute()
        or PureWindowsPath(relative).is_absolute()
        or PureWindowsPath(relative).drive
    ):
        return "is absolute"
    if ".." in PureWindowsPath(relative).parts:
        return "contains '..' (paths must stay inside the CSV's folder)"
    return None


def _read_csv(path: Path) -> pl.DataFrame:
    root = path.parent.resolve()
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in ("path", "label") if c not in (reader.fieldnames or [])]
            if missing:
                raise ExternalSetError(f"{path}: missing column(s) {missing}; found {reader.fieldnames or []}")
            rows, problems = [], []
            for record in reader:
                line = reader.line_num
                relative, label = (record["path"] or "").strip(), (record["label"] or "").strip()
                if not relative or not label:
                    problems.append(f"row {line}: empty {'path' if not relative else 'label'}")
                    continue
                reason = _escapes(relative)
                if reason:
                    problems.append(f"row {line}: path {relative!r} {reason}")
                elif not (root / relative).is_file():
                    problems.append(f"row {line}: image {relative!r} not found")
                else:
                    rows.append((str(root / relative), label, line))
    except UnicodeDecodeError as exc:
        raise ExternalSetError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    if problems:
        raise ExternalSetError(f"{path}: {len(problems)} unusable row(s):{_listing(problems)}")
    return pl.DataFrame(rows, schema=SET_SCHEMA, orient="row")


@dataclass(frozen=True)
class Target:
    """What an external class maps onto, as written and as the emotions it stands for (empty when unknown)."""

    spec: str
    emotion_ids: tuple[str, ...]


@dataclass(frozen=True)
class ClassMapping:
    """External class -> target, in file order (the order that breaks ties), and the optional fallback class.

    The fallback covers a class the taxonomy has no emotion for, such as "neutral": it is predicted when no mapped
    class scores at least `fallback_below` on the 0..7 intensity scale (1.0: no mapped emotion reaches the scale's
    weakest non-zero intensity).
    """

    targets: dict[str, Target]
    fallback: str | None = None
    fallback_below: float = DEFAULT_FALLBACK_BELOW
    source: str = field(default="mapping", compare=False)


def _resolve_target(spec: str, taxonomy: Taxonomy, rollups: pl.DataFrame) -> tuple[str, ...]:
    """Emotion ids of "<rollup>:<level>" (names compared as normalized labels) or of one emotion label."""
    if ":" in spec:
        rollup, level = (normalize_label(part) for part in spec.split(":", 1))
        rows = rollups.select("rollup", "level", "emotion_id").drop_nulls().iter_rows()
        return tuple(sorted({e for r, v, e in rows if (normalize_label(r), normalize_label(v)) == (rollup, level)}))
    emotion_id = taxonomy.resolve(spec)
    return (emotion_id,) if emotion_id else ()


def read_class_mapping(path_or_dict: str | Path | Mapping, taxonomy: Taxonomy, rollups: pl.DataFrame) -> ClassMapping:
    """A mapping from YAML or a dict: either flat (class: target) or `classes:` plus an optional
    `fallback: {class: neutral, below: 1.0}`. Unknown targets are kept unresolved so that `check_mapping` can
    report them together with the set's unmapped classes."""
    if isinstance(path_or_dict, Mapping):
        data, source = path_or_dict, "mapping"
    else:
        data, source = _read_yaml(Path(path_or_dict), "class mapping"), str(path_or_dict)
    if not isinstance(data, Mapping):
        raise ExternalSetError(f"{source}: a class mapping must map class names to emotions or '<rollup>:<level>'")
    structured = isinstance(data.get("classes"), Mapping)
    classes = data["classes"] if structured else data
    fallback = data.get("fallback") if structured else None
    if not classes:
        raise ExternalSetError(f"{source}: the class mapping is empty")
    bad = [str(k) for k, v in classes.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise ExternalSetError(f"{source}: classes {bad} must map to an emotion name or '<rollup>:<level>'")
    targets = {str(k): Target(v, _resolve_target(v, taxonomy, rollups)) for k, v in classes.items()}
    if fallback is None:
        return ClassMapping(targets, source=source)
    if not isinstance(fallback, Mapping) or not isinstance(fallback.get("class"), str):
        raise ExternalSetError(f"{source}: 'fallback' must be {{class: <name>, below: <intensity>}}")
    below = fallback.get("below", DEFAULT_FALLBACK_BELOW)
    if isinstance(below, bool) or not isinstance(below, int | float):
        raise ExternalSetError(f"{source}: fallback 'below' must be a number on the 0..7 scale, got {below!r}")
    if fallback["class"] in targets:
        raise ExternalSetError(f"{source}: fallback class {fallback['class']!r} is also mapped to an emotion")
    return ClassMapping(targets, fallback["class"], float(below), source)


def check_mapping(labels: Iterable[str], mapping: ClassMapping) -> None:
    """Raise listing every problem at once: the set's classes that map to nothing (none is guessed), targets that
    name no emotion or level, and classes of the set that share a target (the first would always win the tie)."""
    present = sorted(set(labels))
    problems = []
    unmapped = [c for c in present if c not in mapping.targets and c != mapping.fallback]
    if unmapped:
        problems.append(f"classes of the set with no mapping: {unmapped}")
    for name, target in mapping.targets.items():
        if not target.emotion_ids:
            problems.append(f"class {name!r}: {target.spec!r} names no taxonomy emotion or rollup level")
    sharing: dict[tuple[str, ...], list[str]] = {}
    for name in present:
        if name in mapping.targets and mapping.targets[name].emotion_ids:
            sharing.setdefault(mapping.targets[name].emotion_ids, []).append(name)
    problems += [f"classes {names} map to the same target" for names in sharing.values() if len(names) > 1]
    if problems:
        raise ExternalSetError(f"{mapping.source}: class mapping does not fit the set:{_listing(problems)}")


@dataclass(frozen=True)
class ExternalScore:
    """Scores of one model on one real-photo set; `per_image` keeps each call for error analysis."""

    accuracy: float
    macro_f1: float
    per_class: pl.DataFrame
    confusion: pl.DataFrame
    per_image: pl.DataFrame


def score_external(
    predictions: pl.DataFrame,
    truth: pl.DataFrame,
    mapping: ClassMapping,
    fallback_below: float | None = None,
) -> ExternalScore:
    """Accuracy, macro F1, per-class recall/precision/support and the confusion matrix of a model on a set.

    A class scores an image by its emotion's predicted intensity, or its level's strongest member; the prediction
    is the best-scoring class among those the set contains (ties go to the earlier class in the mapping), or the
    fallback class when none reaches `fallback_below` (defaults to the mapping's). Rollup levels were resolved
    to their member emotions when the mapping was read.
    """
    check_mapping(truth["label"].to_list(), mapping)
    present = set(truth["label"].to_list())
    classes = [c for c in mapping.targets if c in present]
    use_fallback = mapping.fallback in present
    labels = [*classes, mapping.fallback] if use_fallback else classes
    members = pl.DataFrame(
        [(c, e) for c in classes for e in mapping.targets[c].emotion_ids],
        schema={"class": pl.String, "emotion_id": pl.String},
        orient="row",
    )
    images = truth.select("path").unique()
    scores = (
        images.join(members, how="cross")
        .join(predictions.select("path", "emotion_id", "predicted"), on=["path", "emotion_id"], how="left")
        .group_by("path", "class")
        .agg(pl.col("predicted").max(), missing=pl.col("predicted").null_count())
    )
    lacking = scores.filter(pl.col("missing") > 0)["path"].unique().sort().to_list()
    if lacking:
        raise ExternalSetError(f"predictions lack the mapped emotions for {len(lacking)} image(s):{_listing(lacking)}")
    wide = scores.pivot(on="class", index="path", values="predicted").select("path", *classes)
    matrix = wide.select(classes).to_numpy().astype(np.float64)
    best = matrix.argmax(axis=1)
    called = np.array(classes, dtype=object)[best]
    if use_fallback:
        threshold = mapping.fallback_below if fallback_below is None else fallback_below
        called = np.where(matrix.max(axis=1) < threshold, mapping.fallback, called)
    calls = wide.select(
        "path", predicted_label=pl.Series(called.tolist(), dtype=pl.String), top_score=matrix.max(axis=1)
    )
    per_image = truth.select("path", "label").join(calls, on="path", how="left")

    actual, guessed = per_image["label"].to_list(), per_image["predicted_label"].to_list()
    precision, recall, f1, support = precision_recall_fscore_support(actual, guessed, labels=labels, zero_division=0)
    per_class = pl.DataFrame(
        {"label": labels, "support": support, "recall": recall, "precision": precision, "f1": f1},
        schema={
            "label": pl.String,
            "support": pl.Int64,
            "recall": pl.Float64,
            "precision": pl.Float64,
            "f1": pl.Float64,
        },
    )
    counts = confusion_matrix(actual, guessed, labels=labels)
    confusion = pl.DataFrame({"label": labels, **{c: counts[:, j] for j, c in enumerate(labels)}}).cast(
        {c: pl.Int64 for c in labels}
    )
    return ExternalScore(
        accuracy=float(accuracy_score(actual, guessed)),
        macro_f1=float(f1_score(actual, guessed, labels=labels, average="macro", zero_division=0)),
        per_class=per_class,
        confusion=confusion,
        per_image=per_image,
    )
