"""Checking a published release folder against its manifest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from emonet_assets.lib.release.manifest import release_id
from emonet_assets.lib.release.schema import MANIFEST
from emonet_assets.lib.shared.storage import Store


@dataclass(frozen=True)
class Verification:
    release_id: str | None
    files: int
    bytes: int
    missing: list[str]
    changed: list[str]
    unexpected: list[str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.unexpected or self.problems)

    def differences(self) -> list[str]:
        return [
            *self.problems,
            *(f"missing {p}" for p in self.missing),
            *(f"changed {p}" for p in self.changed),
            *(f"unexpected {p}" for p in self.unexpected),
        ]


def verify(store: Store) -> Verification:
    """A release folder (the store's root) against its manifest: every listed file present with its sha256 and
    size, nothing else beside them, and the manifest's release id matching its own content."""
    try:
        listed = json.loads(store.read_bytes(MANIFEST))
        entries = {f["path"]: f for f in listed["files"]}
        stated_id = listed["release_id"]
        expected_id = release_id({p: f["sha256"] for p, f in entries.items()}, listed["provenance"])
    except FileNotFoundError:
        return Verification(None, 0, 0, [], [], [], [f"no {MANIFEST} in {store.root}: not a release folder"])
    except (ValueError, KeyError, TypeError) as exc:
        return Verification(None, 0, 0, [], [MANIFEST], [], [f"{MANIFEST} is not a release manifest: {exc}"])
    present = {path: size for path, size, _ in store.list_files("") if path != MANIFEST}
    missing = sorted(set(entries) - set(present))
    unexpected = sorted(set(present) - set(entries))
    changed = []
    for path in sorted(set(entries) & set(present)):
        entry = entries[path]
        if present[path] != entry["bytes"] or hashlib.sha256(store.read_bytes(path)).hexdigest() != entry["sha256"]:
            changed.append(path)
    problems = []
    if stated_id != expected_id:
        problems.append(f"{MANIFEST} states release id {stated_id}, its content hashes to {expected_id}")
    total = sum(f["bytes"] for f in entries.values())
    return Verification(stated_id, len(entries), total, missing, changed, unexpected, problems)
