import dagster as dg
import polars as pl

from emonet_assets.automation import weekly_freshness
from emonet_assets.defs.dataset.assets import read_splits
from emonet_assets.defs.taxonomy.assets import read_taxonomy
from emonet_assets.lib.fairness import fairness_report as build_report
from emonet_assets.lib.fairness import image_demographics
from emonet_assets.lib.shard_generation import MANIFEST_TABLE
from emonet_assets.resources import CatalogResource, ProfileResource, StorageResource

REPORT_PATH = "reports/fairness/report.html"
TABLE_PREFIX = "fairness_"


@dg.asset(
    group_name="fairness",
    kinds={"html", "parquet", "duckdb"},
    deps=["model_evaluation", "splits", "image_qc", "annotations", "prompt_design", "consensus_labels"],
    pool="catalog",
    freshness_policy=weekly_freshness,
    description="The model's metrics by age, gender, ethnicity group and their intersections (fairlearn "
    "MetricFrame, bootstrap CIs, between-group gaps), beside the data side: images per split, QC and expert "
    "agreement per group. A self-contained HTML report, a Markdown summary here, tables in Parquet and DuckDB.",
)
def fairness_report(storage: StorageResource, catalog: CatalogResource, profile: ProfileResource):
    from emonet_assets.lib.fairness_report import render_html, render_markdown  # matplotlib
    from emonet_assets.lib.modeling import frame_hash  # torch

    store = storage.store()
    settings = profile.fairness
    predictions = store.read_table("model_test_predictions")
    splits = read_splits(storage)
    report = build_report(
        predictions.select("image_id", "emotion_id", "predicted"),
        store.read_table("consensus_labels").filter(
            (pl.col("collection") == "generated") & (pl.col("scale") == "intensity")
        ),
        image_demographics(store.read_table(MANIFEST_TABLE), store.read_table("prompt_design")),
        splits,
        store.read_table("image_qc"),
        store.read_table("annotations"),
        settings.max_gap,
        settings.min_group_size,
        settings.bootstrap_resamples,
        settings.bootstrap_seed,
    )
    versions = {
        "model": predictions["model_fingerprint"][0] if predictions.height else "none",
        "data": frame_hash(splits.select("image_sha256", "split")),
        "taxonomy": read_taxonomy(storage).version,
    }
    store.write_bytes(REPORT_PATH, render_html(report.tables, versions, report.notes).encode())
    names = []
    for name, table in report.tables.items():
        store.write_table(f"{TABLE_PREFIX}{name}", table)
        names.append(f"{TABLE_PREFIX}{name}")
    catalog.refresh(store, names)
    gates = report.tables["gates"]
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(store.url(REPORT_PATH)),
            "summary": dg.MetadataValue.md(render_markdown(report.tables, versions, report.notes)),
            "groups": report.tables["group_metrics"].select("attribute", "group").n_unique(),
            "gates_failed": int((~gates["passed"]).sum()) if gates.height else 0,
            **{f"{k}_version": v for k, v in versions.items()},
        }
    )
