import dagster as dg

from emonet_assets.lib.fairness.fairness import HIGHER_IS_BETTER, gate
from emonet_assets.lib.shared.tables import Table
from emonet_assets.resources import ProfileResource, StorageResource


def _gap_check(metric: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset="fairness_report",
        additional_deps=[Table.FAIRNESS_DISPARITIES.key],
        name=f"fairness_gap_{metric}",
        description=f"The gap in {metric} between the best and worst group of any attribute or intersection "
        "(groups large enough to rank) stays within the profile's `fairness.max_gap`; severity from the profile.",
    )
    def check(storage: StorageResource, profile: ProfileResource) -> dg.AssetCheckResult:
        settings = profile.fairness
        gaps = storage.store().read_table(Table.FAIRNESS_DISPARITIES)
        limit = settings.max_gap.get(metric)
        if limit is None:
            return dg.AssetCheckResult(passed=True, description=f"no gate configured for {metric}")
        passed, message = gate(gaps, metric, limit)
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity[settings.gate_severity],
            description=message,
            metadata={"metric": metric, "max_gap": limit},
        )

    return check


fairness_gap_checks = [_gap_check(metric) for metric in HIGHER_IS_BETTER]
