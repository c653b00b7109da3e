"""The models the leaderboard scores: every trained emotion_model version of the storage root (`heads`) and every
predictions file a user brought (`predictions`), each one version keyed `<name>@<version[:12]>`.

A predictions file lands like an annotation file: under a content-derived name in its landing zone, with a sidecar
`<file>.model.json` declaring the model's name, the score scale, the collection its images belong to, license and
source. Two files under one name are two versions, both kept.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import asdict, dataclass

import polars as pl

from emonet_assets.lib.annotation.annotation_import import validate_collection_name
from emonet_assets.lib.annotation.landing import file_sha256, list_landing
from emonet_assets.lib.shared.storage import Store

KINDS = ("heads", "predictions", "zero_shot", "vlm")
# How a file's scores are to be read: intensities 0-7 or 0-1, logits, or ranks (order only: Spearman, no kappa).
SCALES = ("0-7", "0-1", "logit", "rank")
HEADS_NAME = "emotion-model"
MODEL_SIDECAR = ".model.json"
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_VERSION_CHARS = 12

REGISTRY_SCHEMA = {
    "model_key": pl.String,
    "name": pl.String,
    "kind": pl.String,
    "version": pl.String,
    "model_fingerprint": pl.String,
    "scale": pl.String,
    "collection": pl.String,
    "license": pl.String,
    "source": pl.String,
    "source_file": pl.String,
    "status": pl.String,
    "message": pl.String,
}


class RegistryError(ValueError):
    """A declaration or file that cannot be registered; the message names it."""


def model_key(name: str, version: str) -> str:
    """The dynamic partition of one model version."""
    return f"{name}@{version[:_VERSION_CHARS]}"


@dataclass(frozen=True)
class PredictionsDeclaration:
    name: str
    scale: str
    collection: str | None = None
    license: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise RegistryError(
                f"model name {self.name!r} must be 1-64 characters of a-z, 0-9, '_', '.' or '-', starting with a "
                "letter or digit"
            )
        if self.name == HEADS_NAME:
            raise RegistryError(f"model name {HEADS_NAME!r} is reserved for the platform's trained models")
        if self.scale not in SCALES:
            raise RegistryError(f"scale is one of {', '.join(SCALES)}, not {self.scale!r}")
        if self.collection is not None:
            try:
                validate_collection_name(self.collection)
            except ValueError as exc:
                raise RegistryError(str(exc)) from exc


def read_predictions_declaration(store: Store, path: str) -> PredictionsDeclaration:
    sidecar = path + MODEL_SIDECAR
    if not store.exists(sidecar):
        raise RegistryError(f"{path}: no {posixpath.basename(sidecar)} declaring the model's name and score scale")
    try:
        data = json.loads(store.read_bytes(sidecar))
        fields = set(PredictionsDeclaration.__annotations__)
        if not isinstance(data, dict) or not {"name", "scale"} <= set(data) <= fields:
            raise ValueError("expected an object with `name`, `scale` and optionally `collection`, `license`, `source`")
        return PredictionsDeclaration(**data)
    except (ValueError, TypeError) as exc:
        raise RegistryError(f"{sidecar}: not a valid model declaration: {exc}") from exc


def land_predictions(store: Store, prefix: str, name: str, data: bytes, declaration: PredictionsDeclaration) -> str:
    """Put a predictions file and its declaration into the landing zone under a content-derived name; returns the
    file's sha256. Landing the same content again only rewrites the declaration."""
    sha = hashlib.sha256(data).hexdigest()
    rel = posixpath.join(prefix, f"{sha[:12]}-{posixpath.basename(name)}")
    store.write_bytes(rel + MODEL_SIDECAR, json.dumps(asdict(declaration), indent=2).encode())
    if not store.exists(rel):
        store.write_bytes(rel, data)
    return sha


def landed_predictions(store: Store, prefix: str) -> list[tuple[str, str]]:
    """(path, sha256) of every predictions file in the landing zone, oldest first."""
    return [
        (landed.path, file_sha256(store, landed.path))
        for landed in list_landing(store, prefix)
        if not landed.name.endswith(MODEL_SIDECAR)
    ]


def heads_entries(models: pl.DataFrame, license: str) -> pl.DataFrame:
    """One registry row per trained emotion_model version."""
    return pl.DataFrame(
        [
            {
                "model_key": model_key(HEADS_NAME, row["model_fingerprint"]),
                "name": HEADS_NAME,
                "kind": "heads",
                "version": row["model_fingerprint"],
                "model_fingerprint": row["model_fingerprint"],
                "scale": "0-7",
                "collection": None,
                "license": license,
                "source": "trained on this storage root",
                "source_file": row["path"],
                "status": "registered",
                "message": f"{row['architecture']} trained {row['trained_at']:%Y-%m-%d %H:%M} UTC",
            }
            for row in models.sort("trained_at").iter_rows(named=True)
        ],
        schema=REGISTRY_SCHEMA,
    )


def predictions_entries(store: Store, prefix: str) -> pl.DataFrame:
    """One registry row per landed predictions file; a file without a valid declaration is listed as rejected,
    with the reason, and gets no partition."""
    rows, seen = [], set()
    for path, sha in landed_predictions(store, prefix):
        if sha in seen:
            continue
        seen.add(sha)
        row = {"version": sha, "model_fingerprint": sha[:16], "kind": "predictions", "source_file": path}
        try:
            declared = read_predictions_declaration(store, path)
        except RegistryError as exc:
            rows.append(row | {"model_key": None, "status": "rejected", "message": str(exc)})
            continue
        rows.append(
            row
            | {
                "model_key": model_key(declared.name, sha),
                "name": declared.name,
                "scale": declared.scale,
                "collection": declared.collection,
                "license": declared.license,
                "source": declared.source,
                "status": "registered",
            }
        )
    return pl.DataFrame(rows, schema=REGISTRY_SCHEMA)


def zero_shot_entry(
    name: str, source: str, license: str | None, fingerprint: str | None, prompts_hash: str | None, error: str | None
) -> pl.DataFrame:
    """The registry row of a profile's zero-shot model: its version is the weights' fingerprint and the prompts'
    hash together, so new prompts score as a new version; a model that cannot be found is listed as rejected."""
    row = {"name": name, "kind": "zero_shot", "scale": "rank", "license": license, "source": source}
    if error is not None or fingerprint is None or prompts_hash is None:
        return pl.DataFrame([row | {"status": "rejected", "message": error}], schema=REGISTRY_SCHEMA)
    version = hashlib.sha256(f"{fingerprint}\n{prompts_hash}".encode()).hexdigest()
    key = model_key(name, version)
    return pl.DataFrame(
        [
            row
            | {
                "model_key": key,
                "version": version,
                "model_fingerprint": fingerprint,
                "status": "registered",
                "message": f"prompts {prompts_hash[:12]}",
            }
        ],
        schema=REGISTRY_SCHEMA,
    )


def vlm_entry(name: str, base_url: str, model: str, license: str | None, prompts_hash: str) -> pl.DataFrame:
    """The registry row of a profile's VLM endpoint: its version is the endpoint's URL and model name with the rating
    prompt's hash, so a new prompt or model scores as a new version. Registering sends no request."""
    from emonet_assets.lib.leaderboard.vlm import endpoint_fingerprint

    fingerprint = endpoint_fingerprint(base_url, model)
    version = hashlib.sha256(f"{fingerprint}\n{prompts_hash}".encode()).hexdigest()
    row = {
        "model_key": model_key(name, version),
        "name": name,
        "kind": "vlm",
        "version": version,
        "model_fingerprint": fingerprint,
        "scale": "0-7",
        "license": license,
        "source": f"{model} at {base_url}",
        "status": "registered",
        "message": f"rating prompt {prompts_hash[:12]}",
    }
    return pl.DataFrame([row], schema=REGISTRY_SCHEMA)


def registered(registry: pl.DataFrame) -> pl.DataFrame:
    return registry.filter(pl.col("status") == "registered")
