"""QC over every generated image in storage: per-image inspection plus near-duplicates across the dataset."""

from __future__ import annotations

import polars as pl

from emonet_assets.lib.generation.image_qc import inspect_image, near_duplicates, qc_table
from emonet_assets.lib.shared.storage import Store


def run_image_qc(store: Store, manifest: pl.DataFrame, settings) -> pl.DataFrame:
    """One row per manifest row, in design order, so that of two (near-)identical images the earlier prompt's
    is kept and the later quarantined; identical bytes are decoded once.

    `settings` carries face_detection, blank_std and near_duplicate_distance (the profile's qc section).
    """
    inspected: dict[str, dict] = {}
    records = []
    for row in manifest.sort("position", "model_fingerprint").iter_rows(named=True):
        sha = row["image_sha256"]
        if sha not in inspected:
            try:
                data = store.read_bytes(row["image_path"])
            except FileNotFoundError:
                data = None
            result = inspect_image(
                data or b"",
                (row["width"], row["height"]),
                detect_faces=settings.face_detection,
                blank_std=settings.blank_std,
            )
            if data is None:
                result["reasons"] = [f"image file missing: {row['image_path']}"]
            inspected[sha] = result
        records.append(
            {
                "id": f"{row['prompt_id']}:{row['model_fingerprint']}",
                "sha": sha,
                **inspected[sha],
                "prompt_id": row["prompt_id"],
                "shard": row["shard"],
                "model_fingerprint": row["model_fingerprint"],
            }
        )
    hashes = [(r["id"], r["phash"]) for r in records if r["phash"]]
    table = qc_table(records, near_duplicates(hashes, settings.near_duplicate_distance))
    return table.rename({"sha": "image_sha256"}).drop("id")


def reason_counts(qc: pl.DataFrame) -> pl.DataFrame:
    """Quarantine reasons without their particulars (which sha, which std), counted: what a reviewer scans first."""
    kind = pl.col("reasons").str.replace(r"^size \d+x\d+.*", "wrong size").str.replace(r" \(.*|: .*| of .*", "")
    return (
        qc.explode("reasons")
        .drop_nulls("reasons")
        .group_by(kind.alias("reason"))
        .agg(images=pl.len())
        .sort("images", "reason", descending=[True, False])
    )
