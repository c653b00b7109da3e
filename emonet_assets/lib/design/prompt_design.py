"""Balanced factorial prompt design: cells, budgets, templates, stable ids, seeds and shards.

Every design is a prefix of one infinite sequence: position p is replicate p // C of the cell at
order[p % C], where C is the number of cells and `order` visits cells so that every prefix is
balanced. Growing a budget therefore only appends prompts; ids and shards already made stay.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import random
import string
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields

import numpy as np
import polars as pl
import pyarrow as pa

from emonet_assets.lib.taxonomy.taxonomy import Taxonomy

RELEASE_TEMPLATE = (
    "a focused close-up photo of a {ethnicity} {gender} of {age} years with soft smooth skin who "
    "seems to genuinely experience {cluster}. Strong facial expression of {cluster}. No wrinkles"
)

DEFAULT_AGES = (20, 30, 40, 50, 60, 70, 80)
DEFAULT_GENDERS = ("man", "woman", "non-binary person")
ETHNICITY_GROUPS = {
    "American Indian or Alaska Native": "AI/AN-NHPI",
    "white caucasian north american": "White",
    "white caucasian european": "White",
    "White": "White",
    "Middle Eastern": "Middle Eastern",
    "North African": "Middle Eastern",
    "arabic": "Middle Eastern",
    "Asian": "East Asian",
    "Southeast Asian": "Southeast Asian",
    "South Asian": "Indian",
    "Indian": "Indian",
    "Hispanic or Latino": "Latino",
    "Native Hawaiian or Other Pacific Islander": "AI/AN-NHPI",
    "Black or African American": "Black",
}

# Robustness axes: level -> phrase. The first level of each is the EmoNet-Face default, which the
# release template does not mention, so it adds no words unless a template asks for it.
AXIS_PHRASES: dict[str, dict[str, str]] = {
    "occlusion": {
        "none": "nothing covers the face",
        "face_mask": "the lower face is covered by a face mask",
        "sunglasses": "the person wears sunglasses",
        "hand": "a hand covers part of the face",
        "helmet": "the person wears a helmet",
    },
    "lighting": {
        "studio": "soft studio lighting",
        "dim": "dim lighting",
        "harsh_side": "harsh side lighting",
        "backlit": "backlit",
    },
    "pose": {
        "frontal": "frontal view",
        "three_quarter": "three-quarter view of the head",
    },
}
AXIS_DEFAULTS = {axis: next(iter(levels)) for axis, levels in AXIS_PHRASES.items()}
PLACEHOLDERS = frozenset({"ethnicity", "gender", "age", "cluster", "emotion", *AXIS_PHRASES})
FACTORS = ("emotion_id", "ethnicity", "gender", "age", *AXIS_PHRASES)


class DesignError(ValueError):
    """A design configuration that cannot produce prompts; the message names what is wrong."""


@dataclass(frozen=True)
class DesignSpec:
    seed: int = 0
    templates: dict[str, str] = field(default_factory=lambda: {"release": RELEASE_TEMPLATE})
    cluster_words: int = 2
    n_per_cell: int | None = None
    total: int | None = None
    emotions: tuple[str, ...] = ()
    ages: tuple[int, ...] = DEFAULT_AGES
    genders: tuple[str, ...] = DEFAULT_GENDERS
    ethnicities: dict[str, str] = field(default_factory=lambda: dict(ETHNICITY_GROUPS))
    occlusion: tuple[str, ...] = ("none",)
    lighting: tuple[str, ...] = ("studio",)
    pose: tuple[str, ...] = ("frontal",)
    shard_size: int = 64
    # Processes that render the prompts; how they are made, not what: outside the version.
    workers: int = 2
    source: str = "design"

    @property
    def version(self) -> str:
        payload = {k: v for k, v in self.__dict__.items() if k not in ("source", "workers")}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()[:12]


@functools.cache
def template_placeholders(template: str) -> frozenset[str]:
    """The fields a template names; cached, as every prompt renders one of a few templates."""
    return frozenset({name for _, name, _, _ in string.Formatter().parse(template) if name is not None})


def validate_spec(spec: DesignSpec, taxonomy: Taxonomy) -> None:
    where = spec.source
    if (spec.n_per_cell is None) == (spec.total is None):
        raise DesignError(f"{where}: set exactly one budget, n_per_cell or total")
    budget = spec.n_per_cell if spec.n_per_cell is not None else spec.total
    if budget < 1:
        raise DesignError(f"{where}: the budget must be at least 1, got {budget}")
    if spec.shard_size < 1:
        raise DesignError(f"{where}: shard_size must be at least 1, got {spec.shard_size}")
    if spec.workers < 1:
        raise DesignError(f"{where}: workers must be at least 1, got {spec.workers}")
    if not spec.templates:
        raise DesignError(f"{where}: no prompt template configured")
    for template_id, template in spec.templates.items():
        try:
            names = template_placeholders(template)
        except ValueError as exc:
            raise DesignError(f"{where}: template {template_id!r} is malformed: {exc}") from exc
        unknown = sorted(names - PLACEHOLDERS)
        if unknown:
            raise DesignError(
                f"{where}: template {template_id!r} uses unknown placeholder(s) "
                f"{', '.join('{' + n + '}' for n in unknown)}; allowed: "
                f"{', '.join('{' + n + '}' for n in sorted(PLACEHOLDERS))}"
            )
    unknown_emotions = [e for e in spec.emotions if e not in taxonomy.by_id]
    if unknown_emotions:
        raise DesignError(f"{where}: unknown emotion id(s) {unknown_emotions}")
    for axis in AXIS_PHRASES:
        levels = getattr(spec, axis)
        bad = [lvl for lvl in levels if lvl not in AXIS_PHRASES[axis]]
        if bad or not levels:
            raise DesignError(
                f"{where}: {axis} levels {bad or '[]'} not allowed; choose from {list(AXIS_PHRASES[axis])}"
            )
    for name in ("ages", "genders", "ethnicities"):
        values = list(getattr(spec, name))
        if not values or len(set(values)) != len(values):
            raise DesignError(f"{where}: {name} must be a non-empty list without repeats")
    if spec.cluster_words < 1:
        raise DesignError(f"{where}: cluster_words must be at least 1")


def balanced_order(sizes: list[int]) -> np.ndarray:
    """All cells of a grid, one row of level indices each, so that every prefix is near-balanced.

    The first factor cycles fastest; the remaining factors (in their own balanced order) advance
    one step per cell as well, shifted by one after each full lap of both cycles, so that every
    pair is visited once (lap b covers the pairs whose indices differ by b modulo their gcd).
    """
    if len(sizes) == 1:
        return np.arange(sizes[0]).reshape(-1, 1)
    first, rest = sizes[0], balanced_order(sizes[1:])
    n_rest = len(rest)
    k = np.arange(first * n_rest)
    lap = k // np.lcm(first, n_rest)
    return np.column_stack([k % first, rest[(k + lap) % n_rest]])


def _join_words(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _hashed_int(text: str, bits: int = 32) -> int:
    """The first `bits` bits of the text's sha256: a number every machine and Python version derives alike."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> (64 - bits)


# A prompt's identity is its cell's factors and these, hashed as JSON with sorted keys into its id.
_PROMPT_KEYS = ("replicate", "template_id", "text")


def _identity_parts(cell: dict) -> list[str]:
    """The cell's prompt identity, `json.dumps({factors..., replicate, template_id, text}, sort_keys=True)`, as the
    four pieces of text around the three per-prompt values (which sort in that order): a prompt fills them in
    instead of encoding the whole object (a sixth of the design's time)."""
    members = sorted([*((f, json.dumps(cell[f])) for f in FACTORS), *((key, None) for key in _PROMPT_KEYS)])
    parts, text = [], "{"
    for i, (key, encoded) in enumerate(members):
        text += (", " if i else "") + json.dumps(key) + ": "
        if encoded is None:
            parts.append(text)
            text = ""
        else:
            text += encoded
    return [*parts, text + "}"]


def _cell_id(values: tuple) -> str:
    return hashlib.sha256("|".join(map(str, values)).encode()).hexdigest()[:12]


def render_prompt(template: str, fields: dict[str, str]) -> str:
    """Fill a template; robustness levels a template does not name are appended as sentences."""
    phrases = {axis: AXIS_PHRASES[axis][fields[axis]] for axis in AXIS_PHRASES}
    text = template.format(**{**fields, **phrases})
    named = template_placeholders(template)
    extra = [phrases[axis] for axis in AXIS_PHRASES if axis not in named and fields[axis] != AXIS_DEFAULTS[axis]]
    if extra:
        text = text.rstrip(". ") + ". " + ". ".join(p[0].upper() + p[1:] for p in extra)
    return text


# Prompts a worker process must have to be worth starting (about a second: Python, polars and this module's imports);
# rendering is about 20 us a prompt.
PROMPTS_PER_WORKER = 200_000


@dataclass(frozen=True)
class _Rendered:
    """The varying columns of a range of prompts, in position order (each prompt's cluster words flattened)."""

    words: list[str]
    word_counts: list[int]
    template_ids: list[str]
    texts: list[str]
    ids: list[str]
    seeds: list[int]

    @classmethod
    def concat(cls, parts: list[_Rendered]) -> _Rendered:
        if len(parts) == 1:
            return parts[0]
        return cls(*([value for part in parts for value in getattr(part, f.name)] for f in fields(cls)))


@dataclass(frozen=True)
class _Renderer:
    """What each prompt's words, template, text, id and seed derive from, by the slot of its cell in the order; it
    travels to worker processes, so each renders a range of positions alone."""

    seed: int
    n_cells: int
    templates: dict[str, str]
    template_ids: list[str]
    seed_texts: list[str]
    template_texts: list[str]
    cell_fields: list[dict[str, str]]
    identities: list[list[str]]
    clusters: list[list[str]]
    n_words: list[int]

    def render(self, positions: range) -> _Rendered:
        out = _Rendered([], [], [], [], [], [])
        rng = random.Random()  # re-seeded per prompt: seeding resets all of its state
        for position in positions:
            replicate, slot = divmod(position, self.n_cells)
            rng.seed(_hashed_int(f"{self.seed_texts[slot]}{replicate}", bits=64))
            words = rng.sample(self.clusters[slot], self.n_words[slot])
            template_id = self.template_ids[
                _hashed_int(f"{self.template_texts[slot]}{replicate}") % len(self.template_ids)
            ]
            text = render_prompt(self.templates[template_id], {**self.cell_fields[slot], "cluster": _join_words(words)})
            head, before_template, before_text, end = self.identities[slot]
            identity = (
                f"{head}{replicate}{before_template}{json.dumps(template_id)}{before_text}{json.dumps(text)}{end}"
            )
            prompt_id = hashlib.sha256(identity.encode()).hexdigest()[:16]
            out.words.extend(words)
            out.word_counts.append(len(words))
            out.template_ids.append(template_id)
            out.texts.append(text)
            out.ids.append(prompt_id)
            out.seeds.append(_hashed_int(f"{self.seed}|{prompt_id}"))
        return out


def _render_all(renderer: _Renderer, total: int, workers: int) -> list[_Rendered]:
    """Positions 0..total-1 in consecutive ranges, one per worker process (spawned: the caller may hold threads),
    as many as have PROMPTS_PER_WORKER prompts each, up to `workers`; in this process when that is one."""
    workers = max(1, min(workers, total // PROMPTS_PER_WORKER))
    bounds = np.linspace(0, total, workers + 1).astype(int)
    ranges = [range(start, stop) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]
    if workers == 1:
        return [renderer.render(ranges[0])]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(renderer.render, ranges))


def build_design(spec: DesignSpec, taxonomy: Taxonomy) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The prompts and the full cell grid with each cell's planned count."""
    validate_spec(spec, taxonomy)
    emotions = [taxonomy.by_id[e] for e in spec.emotions] or list(taxonomy.emotions)
    levels = {
        "emotion_id": [e.id for e in emotions],
        "ethnicity": list(spec.ethnicities),
        "gender": list(spec.genders),
        "age": list(spec.ages),
        **{axis: list(getattr(spec, axis)) for axis in AXIS_PHRASES},
    }
    order = balanced_order([len(levels[f]) for f in FACTORS])
    n_cells = len(order)
    total = spec.n_per_cell * n_cells if spec.n_per_cell is not None else spec.total

    cells = pl.DataFrame(
        {f: [levels[f][i] for i in order[:, j]] for j, f in enumerate(FACTORS)},
        schema_overrides={"age": pl.Int32},
    ).with_columns(
        cell_order=pl.int_range(pl.len(), dtype=pl.Int64),
        planned=pl.lit(total // n_cells, pl.Int64)
        + (pl.int_range(pl.len(), dtype=pl.Int64) < total % n_cells).cast(pl.Int64),
    )
    cells = cells.with_columns(
        cell_id=pl.Series([_cell_id(row) for row in cells.select(FACTORS).rows()], dtype=pl.String)
    )

    # Per cell once: its factor values, emotion and groups; per prompt only what varies (replicate, words, template).
    by_id = taxonomy.by_id
    template_ids = sorted(spec.templates)
    # Only the cells a prompt falls in: a budget under the grid's size fills its first cells.
    used = cells.head(min(total, n_cells)).select(*FACTORS, "cell_id")
    cell_rows = [dict(zip((*FACTORS, "cell_id"), row, strict=True)) for row in used.rows()]
    cell_emotions = [by_id[cell["emotion_id"]] for cell in cell_rows]
    clusters = [list(emotion.cluster) for emotion in cell_emotions]
    # Also per cell: the text its prompts' hashes start with, their fields but the cluster words, the identity's pieces.
    seed_texts = [f"{spec.seed}|{cell['cell_id']}|" for cell in cell_rows]
    template_texts = [f"{spec.seed}|template|{cell['cell_id']}|" for cell in cell_rows]
    cell_fields = [
        {
            "ethnicity": cell["ethnicity"],
            "gender": cell["gender"],
            "age": str(cell["age"]),
            "emotion": emotion.name.lower(),
            **{axis: cell[axis] for axis in AXIS_PHRASES},
        }
        for cell, emotion in zip(cell_rows, cell_emotions, strict=True)
    ]
    renderer = _Renderer(
        seed=spec.seed,
        n_cells=n_cells,
        templates=dict(spec.templates),
        template_ids=template_ids,
        seed_texts=seed_texts,
        template_texts=template_texts,
        cell_fields=cell_fields,
        identities=[_identity_parts(cell) for cell in cell_rows],
        clusters=clusters,
        n_words=[min(spec.cluster_words, len(emotion.cluster)) for emotion in cell_emotions],
    )
    rendered = _Rendered.concat(_render_all(renderer, total, spec.workers))
    slots = pl.int_range(0, total, dtype=pl.Int64, eager=True)
    groups = {e.id: taxonomy.group_by_id[e.group].name for e in emotions}
    per_cell = cells.select(
        "cell_id",
        "emotion_id",
        emotion=pl.col("emotion_id").replace_strict({e.id: e.name for e in emotions}, return_dtype=pl.String),
        emotion_group=pl.col("emotion_id").replace_strict(groups, return_dtype=pl.String),
        age=pl.col("age").cast(pl.Int32),
        gender="gender",
        ethnicity="ethnicity",
        ethnicity_group=pl.col("ethnicity").replace_strict(dict(spec.ethnicities), return_dtype=pl.String),
        occlusion="occlusion",
        lighting="lighting",
        pose="pose",
    )[(slots % n_cells).to_numpy()]
    prompts = pl.concat(
        [
            pl.DataFrame({"prompt_id": pl.Series(rendered.ids, dtype=pl.String), "position": slots}).with_columns(
                shard=pl.format("shard-{}", (pl.col("position") // spec.shard_size).cast(pl.String).str.zfill(5)),
                replicate=(pl.col("position") // n_cells).cast(pl.Int32),
            ),
            per_cell,
            pl.DataFrame(
                {
                    "template_id": pl.Series(rendered.template_ids, dtype=pl.String),
                    "cluster_words": pl.from_arrow(
                        pa.ListArray.from_arrays(
                            pa.array(np.concatenate([[0], np.cumsum(rendered.word_counts)]), pa.int64()),
                            pa.array(rendered.words, pa.string()),
                        )
                    ),
                    "prompt": pl.Series(rendered.texts, dtype=pl.String),
                    "seed": pl.Series(rendered.seeds, dtype=pl.Int64),
                }
            ),
        ],
        how="horizontal",
    ).with_columns(
        design_seed=pl.lit(spec.seed, pl.Int64),
        design_version=pl.lit(spec.version),
        taxonomy_version=pl.lit(taxonomy.version),
    )
    return prompts, cells


def shard_table(prompts: pl.DataFrame) -> pl.DataFrame:
    return (
        prompts.group_by("shard")
        .agg(
            n_prompts=pl.len(),
            first_position=pl.col("position").min(),
            last_position=pl.col("position").max(),
            emotions=pl.col("emotion_id").n_unique(),
        )
        .sort("shard")
    )


def cell_balance(prompts: pl.DataFrame, cells: pl.DataFrame) -> dict[str, int]:
    """Spread of prompts per cell over the whole grid, empty cells included."""
    counts = (
        cells.select("cell_id")
        .join(prompts.group_by("cell_id").agg(n=pl.len()), on="cell_id", how="left")
        .with_columns(pl.col("n").fill_null(0))
    )
    return {
        "cells": cells.height,
        "min_per_cell": int(counts["n"].min()),
        "max_per_cell": int(counts["n"].max()),
    }


def balance_table(prompts: pl.DataFrame) -> pl.DataFrame:
    """Prompts per emotion and ethnicity analysis group: the table a reviewer reads first."""
    return (
        prompts.pivot(on="ethnicity_group", index="emotion", values="prompt_id", aggregate_function="len")
        .fill_null(0)
        .sort("emotion")
    )
