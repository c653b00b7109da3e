import dagster as dg
import polars as pl

from emonet_assets.lib.shared.tables import Table
from emonet_assets.resources import ProfileResource, StorageResource


@dg.asset_check(
    asset=Table.MODEL_FAIRNESS_GATES.key,
    description="Every registered model passes the fairness report's gates (`fairness.max_gap` per metric); the "
    "failing models and their widest gaps are named. Severity from the profile's `fairness.gate_severity`.",
)
def models_pass_fairness_gates(storage: StorageResource, profile: ProfileResource) -> dg.AssetCheckResult:
    gates = storage.store().read_table(Table.MODEL_FAIRNESS_GATES)
    failed = gates.filter(~pl.col("passed"))
    return dg.AssetCheckResult(
        passed=failed.is_empty(),
        severity=dg.AssetCheckSeverity[profile.fairness.gate_severity],
        description="; ".join(f"{r['model_key']}: {r['message']}" for r in failed.iter_rows(named=True))
        or f"{gates['model_key'].n_unique()} models pass every gate",
        metadata={"models": gates["model_key"].n_unique(), "gates_failed": failed.height},
    )
