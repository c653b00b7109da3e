"""The annotation landing zone: files dropped under the storage root become batches keyed by their sha256.

A file may carry a sidecar `<file>.batch.json` declaring its format and external collection, so the
declaration travels with the file whoever drops it (the CLI writes one when given --format/--collection).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from datetime import datetime

from emonet_assets.lib.storage import Store

SIDECAR_SUFFIX = ".batch.json"
_HASH_CHUNK = 8 << 20


class LandingError(ValueError):
    """A landing-zone file or declaration that cannot be used; the message names the file."""


@dataclass(frozen=True)
class BatchDeclaration:
    format: str = "auto"
    collection: str | None = None


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
        if not isinstance(data, dict) or set(data) - {"format", "collection"}:
            raise ValueError("expected an object with `format` and/or `collection`")
        return BatchDeclaration(format=data.get("format") or "auto", collection=data.get("collection") or None)
    except ValueError as exc:
        raise LandingError(f"{sidecar}: not a valid batch declaration: {exc}") from exc


def land_file(store: Store, prefix: str, name: str, data: bytes, declaration: BatchDeclaration) -> tuple[str, str]:
    """Put a file into the landing zone under a content-derived name, so landing it twice is one file."""
    sha = hashlib.sha256(data).hexdigest()
    rel = posixpath.join(prefix, f"{sha[:12]}-{posixpath.basename(name)}")
    if declaration != BatchDeclaration():
        body = {"format": declaration.format, "collection": declaration.collection}
        store.write_bytes(rel + SIDECAR_SUFFIX, json.dumps(body, indent=2).encode())
    if not store.exists(rel):
        store.write_bytes(rel, data)
    return rel, sha


def find_batch_file(store: Store, prefix: str, sha: str) -> LandingFile:
    """The landing file with this content; files landed by the CLI are found by name, others by hashing."""
    files = list_landing(store, prefix)
    named = [f for f in files if f.name.startswith(sha[:12] + "-")]
    for candidate in named + [f for f in files if f not in named]:
        if file_sha256(store, candidate.path) == sha:
            return candidate
    raise LandingError(f"no file with sha256 {sha} in the landing zone {store.url(prefix)}")
