"""The annotation landing zone: files dropped under the storage root become batches keyed by their sha256.

A file may carry a sidecar `<file>.batch.json` declaring its format, external collection, positional ids or who
rated (`raters`: expert, crowd or simulated), so the declaration travels with the file whoever drops it (the CLI
writes one when given --format, --collection or --positional-ids).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from datetime import datetime

from emonet_assets.lib.shared.storage import Store

SIDECAR_SUFFIX = ".batch.json"
_HASH_CHUNK = 8 << 20


class LandingError(ValueError):
    """A landing-zone file or declaration that cannot be used; the message names the file."""


# Who gave a batch's ratings, as the cards say it: experts (the default, the benchmark's design), a crowd, or a
# simulation (the demo's panel), which must never be presented as people's judgements.
RATERS = ("expert", "crowd", "simulated")

RATER_WORDS = {
    "expert": "expert raters",
    "crowd": "crowd raters",
    "simulated": "simulated raters (a program imitating expert raters, not people)",
}


def describe_rating_sources(sources: list[dict]) -> str:
    """One sentence a card can carry from `annotation_batches.rating_sources` rows: how many raters of each kind gave
    how many ratings, in how many batches."""
    if not sources:
        return "no ratings"
    return "; ".join(
        f"{r['annotators']} {RATER_WORDS.get(r['raters'], r['raters'])} gave {r['ratings']:,} ratings in "
        f"{r['batches']} batch{'es' if r['batches'] != 1 else ''}"
        for r in sources
    )


@dataclass(frozen=True)
class BatchDeclaration:
    """`positional_ids`: bare-number image references are prompt positions of the generated images. Off by
    default, since the EmoNet-Face release numbers its own images the same way. `raters`: one of RATERS."""

    format: str = "auto"
    collection: str | None = None
    positional_ids: bool = False
    raters: str = "expert"

    def __post_init__(self) -> None:
        if not isinstance(self.positional_ids, bool):
            raise ValueError(f"`positional_ids` is true or false, not {self.positional_ids!r}")
        if self.raters not in RATERS:
            raise ValueError(f"`raters` is one of {', '.join(RATERS)}, not {self.raters!r}")
        if self.positional_ids and self.collection:
            raise ValueError(
                "positional ids name generated images, but a collection's images are its own: "
                "declare a collection or positional ids, not both"
            )


@dataclass(frozen=True)
class LandingFile:
    path: str
    size: int
    modified: datetime | None

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def fingerprint(self) -> str:
        """Changes when the file does; a sensor re-hashes only files whose fingerprint it has not seen."""
        stamp = self.modified.isoformat() if self.modified else ""
        return f"{self.size}:{stamp}"


def list_landing(store: Store, prefix: str) -> list[LandingFile]:
    """Data files in the landing zone (sidecars, temporaries and hidden files excluded), oldest first."""
    files = []
    for rel, size, modified in store.list_files(prefix):
        name = posixpath.basename(rel)
        if name.startswith(".") or ".tmp-" in name or name.endswith(SIDECAR_SUFFIX):
            continue
        files.append(LandingFile(rel, size, modified))
    return sorted(files, key=lambda f: (f.modified or datetime.min, f.path))


def new_landed_files(
    store: Store, prefix: str, seen: dict, known: set[str], skip_suffix: str | None = None
) -> tuple[dict, list[tuple[str, str]]]:
    """(cursor, [(sha256, path)]) for a landing-zone sensor: the files whose content is not in `known`, each content
    once. A file whose size and mtime (its fingerprint) match the cursor `seen` is not hashed again."""
    cursor, new = {}, {}
    for landed in list_landing(store, prefix):
        if skip_suffix and landed.name.endswith(skip_suffix):
            continue
        entry = seen.get(landed.path)
        sha = (
            entry["sha256"] if entry and entry["fingerprint"] == landed.fingerprint else file_sha256(store, landed.path)
        )
        cursor[landed.path] = {"fingerprint": landed.fingerprint, "sha256": sha}
        if sha not in known:
            new.setdefault(sha, landed.path)
    return cursor, list(new.items())


def file_sha256(store: Store, path: str) -> str:
    digest = hashlib.sha256()
    with store.open(path) as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_declaration(store: Store, path: str) -> BatchDeclaration:
    sidecar = path + SIDECAR_SUFFIX
    if not store.exists(sidecar):
        return BatchDeclaration()
    try:
        data = json.loads(store.read_bytes(sidecar))
        if not isinstance(data, dict) or set(data) - {"format", "collection", "positional_ids", "raters"}:
            raise ValueError("expected an object with `format`, `collection`, `positional_ids` and/or `raters`")
        return BatchDeclaration(
            format=data.get("format") or "auto",
            collection=data.get("collection") or None,
            positional_ids=data.get("positional_ids", False),
            raters=data.get("raters") or "expert",
        )
    except ValueError as exc:
        raise LandingError(f"{sidecar}: not a valid batch declaration: {exc}") from exc


def land_file(
    store: Store, prefix: str, name: str, data: bytes, declaration: BatchDeclaration
) -> tuple[str, str, bool]:
    """Put a file into the landing zone under a content-derived name, so landing it twice is one file.

    The declaration replaces the one the file had; the flag says it changed, so a file imported under another
    declaration (say, without --collection) can be imported again under this one.
    """
    sha = hashlib.sha256(data).hexdigest()
    rel = posixpath.join(prefix, f"{sha[:12]}-{posixpath.basename(name)}")
    sidecar = rel + SIDECAR_SUFFIX
    landed = store.exists(rel)
    changed = landed and _declared(store, rel) != declaration
    if declaration != BatchDeclaration() or store.exists(sidecar):
        body = {
            "format": declaration.format,
            "collection": declaration.collection,
            "positional_ids": declaration.positional_ids,
            "raters": declaration.raters,
        }
        store.write_bytes(sidecar, json.dumps(body, indent=2).encode())
    if not landed:
        store.write_bytes(rel, data)
    return rel, sha, changed


def _declared(store: Store, path: str) -> BatchDeclaration | None:
    try:
        return read_declaration(store, path)
    except LandingError:
        return None


def find_batch_file(store: Store, prefix: str, sha: str) -> LandingFile:
    """The landing file with this content; files landed by the CLI are found by name, others by hashing."""
    files = list_landing(store, prefix)
    named = [f for f in files if f.name.startswith(sha[:12] + "-")]
    for candidate in named + [f for f in files if f not in named]:
        if file_sha256(store, candidate.path) == sha:
            return candidate
    raise LandingError(f"no file with sha256 {sha} in the landing zone {store.url(prefix)}")
