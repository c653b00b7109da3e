import json

import dagster as dg
import polars as pl

from emonet_assets.defs.automation.conditions import weekly_freshness
from emonet_assets.defs.dataset.assets import read_splits
from emonet_assets.defs.taxonomy.assets import read_taxonomy
from emonet_assets.lib.fairness.fairness import build_fairness_report, read_scored
from emonet_assets.lib.shared.catalog import quote_literal, read_columns, scratch
from emonet_assets.lib.shared.lineage import data_version
from emonet_assets.lib.shared.tables import FAIRNESS_TABLES, Table
from emonet_assets.resources import ProfileResource, StorageResource

REPORT_PATH = "reports/fairness/report.html"

# What the report reads: the model's test predictions and the data side (splits, QC, dbt's per-item agreement
# statistics, designed demographics).
_REPORT_DEPS = [
    Table.MODEL_TEST_PREDICTIONS.key,
    Table.EMOTION_MODEL.key,
    Table.SPLITS.key,
    Table.IMAGE_QC.key,
    Table.AGREEMENT_ITEM_STATS.key,
    Table.PROMPT_DESIGN.key,
    Table.GENERATED_IMAGES.key,
    Table.CONSENSUS_LABELS.key,
    Table.TAXONOMY.key,
]
_TABLE_DESCRIPTIONS = {
    Table.FAIRNESS_GROUP_METRICS: "The model's metrics per group of each attribute and intersection, with "
    "bootstrap CIs and whether the group is large enough to rank.",
    Table.FAIRNESS_DISPARITIES: "Per attribute and metric: best and worst rankable group, their difference and "
    "ratio, and the groups left out for size.",
    Table.FAIRNESS_GATES: "One gate per metric of the profile's `fairness.max_gap`: the largest gap, passed or not.",
    Table.FAIRNESS_DATA_BALANCE: "Per attribute and group: images generated, passed QC and their share, and images "
    "per split.",
    Table.FAIRNESS_AGREEMENT: "Per attribute and group: how well the experts agree on that group's faces.",
    Table.FAIRNESS_EMOTION_BY_GROUP: "Spearman per emotion and ethnicity group: which emotions a group's gap comes "
    "from.",
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "fairness_report",
            group_name="fairness",
            kinds={"html"},
            deps=[
                *_REPORT_DEPS,
                Table.MODEL_LEADERBOARD.key,
                Table.MODEL_FAIRNESS_GATES.key,
                Table.MODEL_FAIRNESS_GAPS.key,
                Table.MODEL_FAIRNESS_GROUPS.key,
            ],
            freshness_policy=weekly_freshness,
            description="The model's metrics by age, gender, ethnicity group and their intersections (the values "
            "fairlearn's MetricFrame gives, bootstrap CIs, between-group gaps), beside the data side: images per "
            "split, QC and expert agreement per group, the leaderboard of every registered model "
            "(model_leaderboard, per emotion) and each registered model's gates and gaps (model_fairness_*). A "
            "self-contained HTML report and a Markdown summary here; its tables are the fairness_* assets.",
        ),
        *(
            dg.AssetSpec(
                table.key,
                group_name="fairness",
                kinds={"parquet"},
                deps=_REPORT_DEPS,
                freshness_policy=weekly_freshness,
                description=_TABLE_DESCRIPTIONS[table],
            )
            for table in FAIRNESS_TABLES.values()
        ),
    ],
)
def fairness_report(storage: StorageResource, profile: ProfileResource):
    from emonet_assets.lib.fairness.rendering import model_card_fairness, render_html, render_markdown  # matplotlib
    from emonet_assets.lib.leaderboard.leaderboard import EMOTION_ROLLUP, shown_board
    from emonet_assets.lib.model.emotion_model import CARD_FILE, CONFIG_FILE, render_model_card  # torch

    store = storage.store()
    settings = profile.fairness
    predictions = store.read_table(Table.MODEL_TEST_PREDICTIONS)
    splits = read_splits(storage)
    items = f"read_parquet({quote_literal(store.table_glob(Table.AGREEMENT_ITEM_STATS))})"
    with scratch(store, profile.annotation.duckdb_settings()) as con:
        consensus, demographics = read_scored(con, store, predictions)
        report = build_fairness_report(
            predictions.select("image_id", "emotion_id", "predicted"),
            consensus,
            demographics,
            splits,
            read_columns(con, store, Table.IMAGE_QC, ["image_sha256", "passed"]),
            items,
            settings.max_gap,
            settings.min_group_size,
            settings.bootstrap_resamples,
            settings.bootstrap_seed,
            con,
        )
    versions = {
        "model": predictions["model_fingerprint"][0] if predictions.height else "none",
        "data": data_version(splits),
        "taxonomy": read_taxonomy(storage).version,
    }
    shown = {"min_group_size": settings.min_group_size, "gate_severity": settings.gate_severity}
    board = (
        shown_board(store.read_table(Table.MODEL_LEADERBOARD).filter(pl.col("rollup") == EMOTION_ROLLUP))
        if store.has_table(Table.MODEL_LEADERBOARD)
        else None
    )
    per_model = (Table.MODEL_FAIRNESS_GATES, Table.MODEL_FAIRNESS_GAPS, Table.MODEL_FAIRNESS_GROUPS)
    models = tuple(store.read_table(t) for t in per_model) if all(store.has_table(t) for t in per_model) else None
    page = render_html(report.tables, versions, report.notes, **shown, leaderboard=board, models=models)
    store.write_bytes(REPORT_PATH, page.encode())
    for name, table in FAIRNESS_TABLES.items():
        yield dg.MaterializeResult(asset_key=table.key, metadata=storage.write_table(table, report.tables[name]))
    # The model's card was written at training, before this report existed: it now links the report.
    trained = store.read_table(Table.EMOTION_MODEL).filter(pl.col("model_fingerprint") == versions["model"])
    if trained.height:
        folder = trained["path"][-1]
        fairness = model_card_fairness(report.tables, versions, REPORT_PATH, folder, **shown)
        document = json.loads(store.read_bytes(f"{folder}/{CONFIG_FILE}"))
        store.write_bytes(f"{folder}/{CARD_FILE}", render_model_card(document, versions["model"], fairness).encode())
    gates = report.tables["gates"]
    yield dg.MaterializeResult(
        asset_key="fairness_report",
        metadata={
            "report": dg.MetadataValue.path(store.url(REPORT_PATH)),
            "summary": dg.MetadataValue.md(render_markdown(report.tables, versions, report.notes, **shown)),
            "groups": report.tables["group_metrics"].select("attribute", "group").n_unique(),
            "gates_failed": int((~gates["passed"]).sum()) if gates.height else 0,
            **{f"{k}_version": v for k, v in versions.items()},
        },
    )
