"""The release's checks run inside the asset, against the folder it just wrote: `latest.json` moves to that
folder only when both pass, so readers of the latest release never get one that failed."""

import dagster as dg
import polars as pl

from emonet_assets.lib.shared.storage import Store
from emonet_assets.metadata import markdown_table

LICENSE_CHECK = dg.AssetCheckSpec(
    "release_license_compatible",
    asset="benchmark_release",
    blocking=True,
    description="Every row's generation-model license permits the license the release declares (the explicit "
    "table in lib/release/licenses.py); a non-commercial model under a cc-by-4.0 release fails, naming the models.",
)
MANIFEST_CHECK = dg.AssetCheckSpec(
    "release_matches_manifest",
    asset="benchmark_release",
    blocking=True,
    description="The release folder as written matches its manifest: no file missing, changed or unexpected, "
    "and the release id is the hash of the listed content.",
)
RELEASE_CHECKS = [LICENSE_CHECK, MANIFEST_CHECK]


def license_compatible(rows: pl.DataFrame, declared: str) -> dg.AssetCheckResult:
    """On the rows packed into the shards: the release id hashes them, so the manifest check vouches for the rest."""
    from emonet_assets.lib.release.rows import license_conflicts

    conflicts = license_conflicts(rows, declared)
    named = ", ".join(f"{r['generation_model']} ({r['license']}, {r['images']} images)" for r in conflicts.to_dicts())
    return dg.AssetCheckResult(
        check_name=LICENSE_CHECK.name,
        passed=conflicts.is_empty(),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "release_license": declared,
            "conflicting_models": conflicts.height,
            "models": dg.MetadataValue.md(markdown_table(conflicts)),
        },
        description=None if conflicts.is_empty() else f"licenses that forbid a {declared} release: {named}",
    )


def matches_manifest(store: Store, folder: str) -> dg.AssetCheckResult:
    from emonet_assets.lib.release.verify import verify

    result = verify(store.child(folder))
    differences = result.differences()
    return dg.AssetCheckResult(
        check_name=MANIFEST_CHECK.name,
        passed=result.ok,
        metadata={"release_id": result.release_id or "unknown", "files": result.files, "differences": len(differences)},
        description=None if result.ok else "; ".join(differences[:10]),
    )
