import json

import dagster as dg

from emonet_assets.defs.release.assets import benchmark_release
from emonet_assets.lib.release import MANIFEST, latest_release, license_conflicts, read_release_rows, verify
from emonet_assets.metadata import markdown_table
from emonet_assets.resources import StorageResource


@dg.asset_check(
    asset=benchmark_release,
    blocking=True,
    description="Every row's generation-model license permits the license the release declares (the explicit "
    "table in lib/licenses.py); a non-commercial model under a cc-by-4.0 release fails, naming the models.",
)
def release_license_compatible(storage: StorageResource) -> dg.AssetCheckResult:
    store = storage.store()
    folder = latest_release(store)
    declared = json.loads(store.read_bytes(f"{folder}/{MANIFEST}"))["provenance"]["profile"]["release"]["license"]
    rows = read_release_rows(store, folder, ["generation_model", "model_fingerprint", "license"])
    conflicts = license_conflicts(rows, declared)
    named = ", ".join(f"{r['generation_model']} ({r['license']}, {r['images']} images)" for r in conflicts.to_dicts())
    return dg.AssetCheckResult(
        passed=conflicts.is_empty(),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "release_license": declared,
            "conflicting_models": conflicts.height,
            "models": dg.MetadataValue.md(markdown_table(conflicts)),
        },
        description=None if conflicts.is_empty() else f"licenses that forbid a {declared} release: {named}",
    )


@dg.asset_check(
    asset=benchmark_release,
    blocking=True,
    description="The release folder as written matches its manifest: no file missing, changed or unexpected, "
    "and the release id is the hash of the listed content.",
)
def release_matches_manifest(storage: StorageResource) -> dg.AssetCheckResult:
    store = storage.store()
    folder = latest_release(store)
    result = verify(store.child(folder))
    differences = result.differences()
    return dg.AssetCheckResult(
        passed=result.ok,
        metadata={"release_id": result.release_id or "unknown", "files": result.files, "differences": len(differences)},
        description=None if result.ok else "; ".join(differences[:10]),
    )
