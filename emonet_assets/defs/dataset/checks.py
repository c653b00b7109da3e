import dagster as dg

from emonet_assets.defs.dataset.assets import read_splits, splits
from emonet_assets.lib.dataset.splits import leakage, share_deviation, thin_test_cells
from emonet_assets.metadata import markdown_table
from emonet_assets.resources import ProfileResource, StorageResource


@dg.asset_check(
    asset=splits,
    blocking=True,
    description="No prompt id and no near-duplicate pair (phash within the profile's distance) spans two splits.",
)
def splits_do_not_leak(storage: StorageResource, profile: ProfileResource) -> dg.AssetCheckResult:
    leaks = leakage(read_splits(storage), profile.dataset.near_duplicate_distance)
    return dg.AssetCheckResult(
        passed=leaks.is_empty(),
        metadata={"leaks": leaks.height, "examples": dg.MetadataValue.md(markdown_table(leaks))},
        description=None if leaks.is_empty() else f"{leaks.height} prompt or near-duplicate groups span splits",
    )


@dg.asset_check(
    asset=splits,
    description="Every emotion x analysis-group cell has at least `min_test_per_cell` test images; severity from "
    "the profile (WARN where the design is too small for that).",
)
def cells_have_test_images(storage: StorageResource, profile: ProfileResource) -> dg.AssetCheckResult:
    settings = profile.dataset
    thin = thin_test_cells(read_splits(storage), settings.min_test_per_cell)
    cells = [f"{row['emotion_id']} x {row['ethnicity_group']}" for row in thin.head(3).iter_rows(named=True)]
    return dg.AssetCheckResult(
        passed=thin.is_empty(),
        severity=dg.AssetCheckSeverity[settings.thin_cell_severity],
        metadata={
            "thin_cells": thin.height,
            "k": settings.min_test_per_cell,
            "cells": dg.MetadataValue.md(markdown_table(thin, limit=20)),
        },
        description=None
        if thin.is_empty()
        else f"{thin.height} cells below {settings.min_test_per_cell} test images, e.g. {', '.join(cells)} "
        "(more in the `cells` metadata)",
    )


@dg.asset_check(
    asset=splits,
    blocking=True,
    description="Each split's share of images is within the profile's tolerance of its target.",
)
def split_shares_on_target(storage: StorageResource, profile: ProfileResource) -> dg.AssetCheckResult:
    settings = profile.dataset
    shares = share_deviation(read_splits(storage), settings.ratios, settings.share_tolerance)
    off = shares.filter(~shares["within_tolerance"])
    return dg.AssetCheckResult(
        passed=off.is_empty(),
        metadata={"shares": dg.MetadataValue.md(markdown_table(shares)), "tolerance": settings.share_tolerance},
        description=None
        if off.is_empty()
        else "; ".join(f"{r['split']} {r['share']:.3f} vs target {r['target']:.2f}" for r in off.iter_rows(named=True)),
    )
