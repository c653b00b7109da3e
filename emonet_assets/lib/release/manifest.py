"""A release's manifest: every file with its sha256 and size, the provenance, and the release id.

The release id hashes the files' paths and sha256 and the provenance, nothing else (no timestamps): the same
data under the same profile and libraries gives the same id.
"""

from __future__ import annotations

import hashlib
import json

import polars as pl

from emonet_assets.lib.release.schema import LATEST, MANIFEST, RELEASES_DIR
from emonet_assets.lib.release.shards import ReleaseFiles
from emonet_assets.lib.shared.storage import Store

ID_LENGTH = 16
# The libraries whose installed versions the provenance records.
LIBRARIES = (
    "emonet-face",
    "dagster",
    "datasets",
    "pyarrow",
    "polars",
    "duckdb",
    "dbt-core",
    "torch",
    "diffusers",
    "transformers",
    "pillow",
    "numpy",
    "krippendorff",
    "fairlearn",
)


# The generation manifest's columns the provenance reads.
GENERATION_COLUMNS = (
    "image_sha256",
    "model",
    "model_fingerprint",
    "license",
    "torch_version",
    "diffusers_version",
    "transformers_version",
)


def provenance(
    profile: dict, images: pl.DataFrame, generated: pl.DataFrame, fingerprints: dict[str, str], libraries: dict
) -> dict:
    """What the release was made from and with: the profile (without where it is stored or who is alerted),
    library versions here and at generation time, and every model fingerprint. `images` are the released images
    (`ReleaseRows.images`), `generated` the generation manifest's GENERATION_COLUMNS."""
    used = generated.filter(pl.col("image_sha256").is_in(images["image_sha256"].implode()))
    generation = (
        used.group_by("model", "model_fingerprint", "license", "torch_version", "diffusers_version")
        .agg(pl.col("transformers_version").first(), images=pl.len())
        .sort("model", "model_fingerprint", "torch_version", "diffusers_version")
    )
    return {
        "profile": {k: v for k, v in profile.items() if k not in ("storage", "alerts", "schedules", "source")},
        "library_versions": libraries,
        "generation_models": generation.to_dicts(),
        "model_fingerprints": dict(sorted(fingerprints.items())),
        "design_versions": sorted(images["design_version"].unique().to_list()),
        "taxonomy_versions": sorted(images["taxonomy_version"].unique().to_list()),
    }


def release_id(files: dict[str, str], provenance_: dict) -> str:
    """Hash of every file's path and sha256 plus the provenance: same content, same id."""
    canonical = json.dumps({"files": sorted(files.items()), "provenance": provenance_}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:ID_LENGTH]


def manifest(files: ReleaseFiles, provenance_: dict, created_at: str) -> dict:
    """`created_at` is the one field outside the hashed content."""
    listed = [{"path": n, "sha256": sha, "bytes": size} for n, (_, sha, size) in sorted(files.files.items())]
    return {
        "release_id": release_id(files.digests(), provenance_),
        "hashed": "sha256 of the files' paths and sha256 plus the provenance (created_at is not hashed)",
        "created_at": created_at,
        "rows": files.rows,
        "shards": files.shards,
        "files": listed,
        "provenance": provenance_,
    }


def publish(store: Store, files: ReleaseFiles, manifest_: dict) -> str:
    """Moves the staged files into releases/<id>/ and writes the manifest last, so a folder with a manifest is
    complete; a release that already exists with that id has the same content and is left as it is."""
    folder = f"{RELEASES_DIR}/{manifest_['release_id']}"
    if not store.exists(f"{folder}/{MANIFEST}"):
        for name, (staged, _, _) in sorted(files.files.items()):
            store.move(staged, f"{folder}/{name}")
        store.write_bytes(f"{folder}/{MANIFEST}", json.dumps(manifest_, indent=2, sort_keys=True).encode())
    store.remove_tree(files.staging)
    return folder


def mark_latest(store: Store, folder: str) -> None:
    """Only a release that passed its checks becomes the one `latest.json` points readers at."""
    store.write_bytes(LATEST, json.dumps({"release_id": folder.rsplit("/", 1)[-1], "path": folder}).encode())


def latest_release(store: Store) -> str:
    """The folder (relative to the root) of the newest release that passed its checks."""
    if not store.exists(LATEST):
        raise FileNotFoundError(f"no release under {store.url(RELEASES_DIR)} yet")
    return json.loads(store.read_bytes(LATEST))["path"]
