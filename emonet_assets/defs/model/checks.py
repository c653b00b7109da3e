import dagster as dg

from emonet_assets.lib.model.evaluation import beats_random
from emonet_assets.lib.shared.tables import Table
from emonet_assets.resources import ProfileResource, StorageResource


@dg.asset_check(
    asset=Table.MODEL_EVALUATION.key,
    additional_deps=[Table.MODEL_EVALUATION_SUMMARY.key],
    description="Warns when the model's mean Spearman (lower CI bound) does not beat the random baseline's by "
    "the profile's margin; the numbers are in the result.",
)
def model_beats_random_baseline(storage: StorageResource, profile: ProfileResource) -> dg.AssetCheckResult:
    summary = storage.store().read_table(Table.MODEL_EVALUATION_SUMMARY)
    model = summary.filter(summary["predictor"] == "model")
    baseline = summary.filter(summary["predictor"] == "random baseline")
    passed, message = beats_random(model, baseline, profile.model.random_margin)
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=message,
        metadata={
            "model_mean_spearman": float(model["mean_spearman"][0]),
            "random_mean_spearman": float(baseline["mean_spearman"][0]),
            "margin": profile.model.random_margin,
        },
    )
