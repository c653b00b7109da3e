"""The 40-emotion taxonomy: loading, label resolution, rollups and their validation."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import polars as pl
import yaml

from emonet_assets.lib.shared.package_data import package_path
from emonet_assets.lib.shared.profile_files import project_path

DEFAULT_TAXONOMY_PATH = package_path("data", "taxonomy.yaml")
SHIPPED_ROLLUPS = package_path("data", "rollups")
BUILTIN_ROLLUPS = ("group", "valence")


class TaxonomyError(ValueError):
    """A taxonomy or rollup file that cannot be used; the message names the file."""


def normalize_label(text: str) -> str:
    """Case, punctuation and spacing differ between exports; compare labels without them."""
    return re.sub(r"[^0-9a-z]+", " ", str(text).casefold().replace("&", " and ")).strip()


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    valence: str


@dataclass(frozen=True)
class Emotion:
    id: str
    index: int
    name: str
    group: str
    cluster: tuple[str, ...]


@dataclass(frozen=True)
class Taxonomy:
    emotions: tuple[Emotion, ...]
    groups: tuple[Group, ...]
    source: str

    @cached_property
    def version(self) -> str:
        """Content hash, so lineage changes exactly when the taxonomy does."""
        canonical = {
            "groups": sorted([g.id, g.name, g.valence] for g in self.groups),
            "emotions": [[e.id, e.index, e.name, e.group, list(e.cluster)] for e in self.emotions],
        }
        digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
        return digest[:12]

    @cached_property
    def by_id(self) -> dict[str, Emotion]:
        return {e.id: e for e in self.emotions}

    @cached_property
    def group_by_id(self) -> dict[str, Group]:
        return {g.id: g for g in self.groups}

    @cached_property
    def aliases(self) -> dict[str, str]:
        """Normalized alias -> emotion id, keeping only aliases that point at one emotion.

        Names and ids win over name parts ("Ecstasy" of "Pleasure/Ecstasy"), which win over
        cluster words; a word shared by two emotions at the same level is dropped as ambiguous.
        """
        levels: list[dict[str, set[str]]] = [{}, {}, {}]
        for e in self.emotions:
            candidates = (
                {e.name, e.id},
                set(re.split(r"\s*(?:/|&|\band\b)\s*", e.name)),
                set(e.cluster),
            )
            for level, words in zip(levels, candidates, strict=True):
                for word in words:
                    level.setdefault(normalize_label(word), set()).add(e.id)
        resolved: dict[str, str] = {}
        taken: set[str] = set()
        for level in levels:
            for alias, ids in level.items():
                if alias and alias not in taken and len(ids) == 1:
                    resolved[alias] = next(iter(ids))
            taken |= set(level)
        return resolved

    def resolve(self, label: str) -> str | None:
        """Emotion id for a label spelled any known way, or None when unknown or ambiguous."""
        return self.aliases.get(normalize_label(label))

    @classmethod
    def from_table(cls, table: pl.DataFrame) -> Taxonomy:
        """Rebuild from the stored `taxonomy` table, so downstream assets use what was materialized."""
        groups = table.select("group_id", "group", "valence").unique(maintain_order=True)
        return cls(
            emotions=tuple(
                Emotion(r["emotion_id"], r["emotion_index"], r["emotion"], r["group_id"], tuple(r["cluster"]))
                for r in table.sort("emotion_index").iter_rows(named=True)
            ),
            groups=tuple(Group(*row) for row in groups.iter_rows()),
            source="taxonomy table",
        )

    def table(self) -> pl.DataFrame:
        aliases_of: dict[str, list[str]] = {}
        for alias, emotion_id in sorted(self.aliases.items()):
            aliases_of.setdefault(emotion_id, []).append(alias)
        return pl.DataFrame(
            {
                "emotion_id": [e.id for e in self.emotions],
                "emotion_index": [e.index for e in self.emotions],
                "emotion": [e.name for e in self.emotions],
                "group_id": [e.group for e in self.emotions],
                "group": [self.group_by_id[e.group].name for e in self.emotions],
                "valence": [self.group_by_id[e.group].valence for e in self.emotions],
                "cluster": [list(e.cluster) for e in self.emotions],
                "aliases": [aliases_of.get(e.id, []) for e in self.emotions],
                "taxonomy_version": [self.version] * len(self.emotions),
            },
            schema_overrides={"emotion_index": pl.Int32},
        )


def _read_yaml(path: Path, what: str) -> object:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise TaxonomyError(f"{path}: {what} file not found") from exc
    except UnicodeDecodeError as exc:
        raise TaxonomyError(f"{path}: {what} file is not UTF-8 text ({exc.reason})") from exc
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise TaxonomyError(f"{path}: {what} file is not valid YAML: {exc}") from exc


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a mapping file must not."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_taxonomy(path: str | Path = DEFAULT_TAXONOMY_PATH) -> Taxonomy:
    data = _read_yaml(Path(path), "taxonomy")
    try:
        groups = tuple(Group(g["id"], g["name"], g["valence"]) for g in data["groups"])
        emotions = tuple(
            Emotion(e["id"], int(e["index"]), e["name"], e["group"], tuple(e["cluster"])) for e in data["emotions"]
        )
    except (KeyError, TypeError) as exc:
        raise TaxonomyError(f"{path}: taxonomy entry lacks field {exc}") from exc
    return Taxonomy(emotions=emotions, groups=groups, source=str(data.get("source", path)))


def taxonomy_problems(table: pl.DataFrame, expected_emotions: int = 40, expected_groups: int = 7) -> list[str]:
    """What makes a taxonomy table unusable downstream, one message per problem."""
    problems = []
    if table.height != expected_emotions:
        problems.append(f"expected {expected_emotions} emotions, found {table.height}")
    for column in ("emotion_id", "emotion", "emotion_index"):
        dupes = table.filter(pl.col(column).is_duplicated())[column].unique().sort().to_list()
        if dupes:
            problems.append(f"{column} not unique: {dupes}")
    missing_group = table.filter(pl.col("group_id").is_null() | (pl.col("group_id") == ""))["emotion"]
    if missing_group.len():
        problems.append(f"emotions without a group: {missing_group.to_list()}")
    per_emotion = table.group_by("emotion_id").agg(pl.col("group_id").n_unique().alias("n"))
    multi = per_emotion.filter(pl.col("n") > 1)["emotion_id"].to_list()
    if multi:
        problems.append(f"emotions in more than one group: {multi}")
    n_groups = table["group_id"].drop_nulls().n_unique()
    if n_groups != expected_groups:
        problems.append(f"expected {expected_groups} groups, found {n_groups}")
    return problems


ROLLUP_SCHEMA = {
    "rollup": pl.String,
    "level": pl.String,
    "label": pl.String,
    "emotion_id": pl.String,
    "source": pl.String,
}


def builtin_rollups(taxonomy: Taxonomy) -> pl.DataFrame:
    rows = []
    for e in taxonomy.emotions:
        group = taxonomy.group_by_id[e.group]
        rows.append(("group", group.name, e.name, e.id, "taxonomy"))
        rows.append(("valence", group.valence, e.name, e.id, "taxonomy"))
    return pl.DataFrame(rows, schema=ROLLUP_SCHEMA, orient="row")


def rollup_path(entry: str) -> Path:
    """A profile's rollup entry as a file: one ending in .yaml is the user's (relative to the project folder, or
    absolute), any other names a rollup shipped in the package (data/rollups/), as profiles themselves are named."""
    if entry.endswith((".yaml", ".yml")):
        return Path(project_path(entry))
    shipped = SHIPPED_ROLLUPS / f"{entry}.yaml"
    if not shipped.is_file():
        names = ", ".join(sorted(p.stem for p in SHIPPED_ROLLUPS.glob("*.yaml")))
        raise TaxonomyError(f"no shipped rollup {entry!r} (shipped: {names}); a rollup file's name ends in .yaml")
    return shipped


def load_rollup_file(path: str | Path, taxonomy: Taxonomy) -> pl.DataFrame:
    """Rows of a user mapping file, labels resolved through aliases; unknown ones kept as null.

    The file is YAML: `name`, optional `description`, and `levels`, an ordered mapping of
    level name -> list of emotion labels. Completeness is judged by `rollup_problems`, so the
    check can name every missing, repeated or unknown emotion at once.
    """
    path = Path(path)
    data = _read_yaml(path, "rollup mapping")
    if not isinstance(data, dict):
        raise TaxonomyError(f"{path}: rollup mapping must be a YAML mapping with 'name' and 'levels'")
    name, levels = data.get("name"), data.get("levels")
    if not isinstance(name, str) or not name.strip():
        raise TaxonomyError(f"{path}: rollup mapping lacks a 'name'")
    if name in BUILTIN_ROLLUPS:
        raise TaxonomyError(f"{path}: rollup name {name!r} is reserved for the built-in rollup")
    if not isinstance(levels, dict) or not levels:
        raise TaxonomyError(f"{path}: 'levels' must map each level name to a list of emotions")
    rows = []
    for level, labels in levels.items():
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise TaxonomyError(f"{path}: level {level!r} must be a list of emotion names")
        rows += [(name, str(level), label, taxonomy.resolve(label), str(path)) for label in labels]
    return pl.DataFrame(rows, schema=ROLLUP_SCHEMA, orient="row")


def rollup_problems(rollups: pl.DataFrame, taxonomy: Taxonomy) -> list[str]:
    """Every emotion must sit in exactly one level of every rollup."""
    problems = []
    for (rollup,), rows in rollups.group_by("rollup", maintain_order=True):
        source = rows["source"][0]
        for label in rows.filter(pl.col("emotion_id").is_null())["label"].to_list():
            problems.append(f"rollup {rollup!r} ({source}): unknown emotion {label!r}")
        counts = rows.drop_nulls("emotion_id").group_by("emotion_id").agg(pl.col("level"))
        for emotion_id, levels in counts.sort("emotion_id").iter_rows():
            if len(levels) > 1:
                name = taxonomy.by_id[emotion_id].name
                problems.append(
                    f"rollup {rollup!r} ({source}): emotion {name!r} named {len(levels)} times (levels {levels})"
                )
        present = set(counts["emotion_id"].to_list())
        for e in taxonomy.emotions:
            if e.id not in present:
                problems.append(f"rollup {rollup!r} ({source}): emotion {e.name!r} is missing")
    return problems
