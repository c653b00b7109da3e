import json

import dagster as dg
import polars as pl

from emonet_assets.automation import weekly_freshness
from emonet_assets.defs.dataset.assets import read_splits
from emonet_assets.defs.model.assets import MODEL_TABLE
from emonet_assets.defs.taxonomy.assets import read_taxonomy
from emonet_assets.lib.fairness import fairness_report as build_report
from emonet_assets.lib.fairness import image_demographics
from emonet_assets.lib.lineage import data_version
from emonet_assets.lib.shard_generation import MANIFEST_TABLE
from emonet_assets.resources import CatalogResource, ProfileResource, StorageResource

REPORT_PATH = "reports/fairness/report.html"
TABLE_PREFIX = "fairness_"


@dg.asset(
    group_name="fairness",
    kinds={"html", "parquet", "duckdb"},
    deps=[
        "model_evaluation",
        "emotion_model",
        "splits",
        "image_qc",
        "annotations",
        "prompt_design",
        "consensus_labels",
    ],
    pool="catalog",
    freshness_policy=weekly_freshness,
    description="The model's metrics by age, gender, ethnicity group and their intersections (fairlearn "
    "MetricFrame, bootstrap CIs, between-group gaps), beside the data side: images per split, QC and expert "
    "agreement per group. A self-contained HTML report, a Markdown summary here, tables in Parquet and DuckDB.",
)
def fairness_report(storage: StorageResource, catalog: CatalogResource, profile: ProfileResource):
    from emonet_assets.lib.emotion_model import CARD_FILE, CONFIG_FILE, render_model_card  # torch
    from emonet_assets.lib.fairness_report import model_card_fairness, render_html, render_markdown  # matplotlib

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
        "data": data_version(splits),
        "taxonomy": read_taxonomy(storage).version,
    }
    shown = {"min_group_size": settings.min_group_size, "gate_severity": settings.gate_severity}
    store.write_bytes(REPORT_PATH, render_html(report.tables, versions, report.notes, **shown).encode())
    names = []
    for name, table in report.tables.items():
        store.write_table(f"{TABLE_PREFIX}{name}", table)
        names.append(f"{TABLE_PREFIX}{name}")
    catalog.refresh(store, names)
    # The model's card was written at training, before this report existed: it now links the report.
    trained = store.read_table(MODEL_TABLE).filter(pl.col("model_fingerprint") == versions["model"])
    if trained.height:
        folder = trained["path"][-1]
        fairness = model_card_fairness(report.tables, versions, REPORT_PATH, folder, **shown)
        document = json.loads(store.read_bytes(f"{folder}/{CONFIG_FILE}"))
        store.write_bytes(f"{folder}/{CARD_FILE}", render_model_card(document, versions["model"], fairness).encode())
    gates = report.tables["gates"]
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(store.url(REPORT_PATH)),
            "summary": dg.MetadataValue.md(render_markdown(report.tables, versions, report.notes, **shown)),
            "groups": report.tables["group_metrics"].select("attribute", "group").n_unique(),
            "gates_failed": int((~gates["passed"]).sum()) if gates.height else 0,
            **{f"{k}_version": v for k, v in versions.items()},
        }
    )
