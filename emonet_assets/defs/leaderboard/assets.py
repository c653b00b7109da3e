import base64
import tempfile
from pathlib import Path

import dagster as dg
import polars as pl

from emonet_assets.defs.leaderboard.partitions import model_partitions
from emonet_assets.defs.taxonomy.assets import read_taxonomy
from emonet_assets.lib.shared.tables import Table
from emonet_assets.metadata import markdown_table
from emonet_assets.resources import ProfileResource, StorageResource

FOREST_PATH = "reports/leaderboard/forest.png"
HEATMAP_PATH = "reports/leaderboard/heatmap.png"


@dg.asset(
    key=Table.MODEL_REGISTRY.key,
    group_name="leaderboard",
    kinds={"polars", "parquet"},
    deps=[Table.EMOTION_MODEL.key, Table.TAXONOMY.key],
    description="The models the leaderboard scores, one row per version: every trained emotion_model (heads), "
    "every predictions file in the landing zone (name, score scale, collection, license and source from its "
    "sidecar), the profile's zero-shot image-text models (version: weights fingerprint and prompts hash) and its "
    "VLM endpoints (version: base URL, model name and rating prompt hash; registering sends no request). "
    "Each registered version gets a model_versions partition; a model that cannot be used is listed as rejected, "
    "with the reason.",
)
def model_registry(
    context: dg.AssetExecutionContext, storage: StorageResource, profile: ProfileResource
) -> dg.MaterializeResult:
    from emonet_assets.lib.leaderboard.registry import (
        heads_entries,
        predictions_entries,
        registered,
        vlm_entry,
        zero_shot_entry,
    )
    from emonet_assets.lib.leaderboard.vlm import prompt_hash, rating_prompt
    from emonet_assets.lib.leaderboard.zero_shot import zero_shot_registration

    store = storage.store()
    taxonomy = read_taxonomy(storage)
    zero_shot = [
        zero_shot_entry(
            z.name,
            z.source,
            z.license,
            *zero_shot_registration(z.name, z.source, z.build_tiny, taxonomy, z.template, z.words),
        )
        for z in profile.leaderboard.zero_shot
    ]
    vlm_prompt_hash = prompt_hash(rating_prompt(taxonomy))
    vlm = [vlm_entry(v.name, v.base_url, v.model, v.license, vlm_prompt_hash) for v in profile.leaderboard.vlm]
    heads = (
        heads_entries(store.read_table(Table.EMOTION_MODEL), profile.release.license)
        if store.has_table(Table.EMOTION_MODEL)
        else None
    )
    files = predictions_entries(store, profile.leaderboard.landing)
    registry = pl.concat([frame for frame in (heads, files, *zero_shot, *vlm) if frame is not None])
    keys = registered(registry)["model_key"].to_list()
    new = [k for k in keys if not context.instance.has_dynamic_partition(model_partitions.name, k)]
    if new:
        context.instance.add_dynamic_partitions(model_partitions.name, new)
    for row in registry.filter(pl.col("status") == "rejected").iter_rows(named=True):
        context.log.warning(f"not registered: {row['message']}")
    return dg.MaterializeResult(
        metadata={
            **storage.write_table(Table.MODEL_REGISTRY, registry),
            "registered": len(keys),
            "new_partitions": dg.MetadataValue.json(new),
            "rejected": registry.height - len(keys),
        }
    )


def _prediction_spec(table: Table, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        table.key,
        group_name="leaderboard",
        kinds={"polars", "parquet"},
        deps=[
            Table.MODEL_REGISTRY.key,
            Table.EMOTION_MODEL.key,
            Table.IMAGE_EMBEDDINGS.key,
            Table.SPLITS.key,
            Table.CONSENSUS_LABELS.key,
            Table.TAXONOMY.key,
            Table.PROMPT_DESIGN.key,
            dg.AssetDep(Table.GENERATED_IMAGES.key, partition_mapping=dg.AllPartitionMapping()),
        ],
        partitions_def=model_partitions,
        automation_condition=dg.AutomationCondition.on_missing(),
        description=description,
    )


@dg.multi_asset(
    specs=[
        _prediction_spec(
            Table.MODEL_PREDICTIONS,
            "One registered model's scores (partition = model version): `score` as the model gives it, `intensity` "
            "on 0-7 where its scale has one, with the model fingerprint, image sha256 and prompt id; coverage of "
            "the evaluation images (the generated test split and the profile's leaderboard.collections).",
        ),
        _prediction_spec(
            Table.MODEL_PREDICTION_REJECTS,
            "The rows of a predictions file that were not accepted, each with its reason: read = accepted + "
            "rejected, always; for a VLM, each image it left unscored (invalid answer, failed request, budget spent).",
        ),
    ],
)
def model_predictions(context: dg.AssetExecutionContext, storage: StorageResource, profile: ProfileResource):
    from emonet_assets.lib.annotation.annotation_batches import platform_images
    from emonet_assets.lib.leaderboard.leaderboard import evaluation_truth
    from emonet_assets.lib.leaderboard.predictions import REJECT_SCHEMA, PredictionsFileError, load_predictions
    from emonet_assets.lib.leaderboard.scores import coverage, generated_image_files, head_scores, with_lineage
    from emonet_assets.lib.leaderboard.vlm import Endpoint, VlmError, endpoint_fingerprint, score_images
    from emonet_assets.lib.leaderboard.zero_shot import ZeroShotModel, emotion_prompts, prompt_hash
    from emonet_assets.lib.model.emotion_model import load_model
    from emonet_assets.lib.model.modeling import fetch_model
    from emonet_assets.lib.shared.profile_files import model_location

    store = storage.store()
    key = context.partition_key
    registry = store.read_table(Table.MODEL_REGISTRY).filter(pl.col("model_key") == key)
    if not registry.height:
        raise dg.Failure(description=f"model {key} is not in model_registry: materialize model_registry")
    entry = registry.row(0, named=True)
    taxonomy = read_taxonomy(storage)
    truth = evaluation_truth(
        store.read_table(Table.CONSENSUS_LABELS), store.read_table(Table.SPLITS), profile.leaderboard.collections
    )
    rejects, read, prompts_hash, vlm_counts = pl.DataFrame(schema=REJECT_SCHEMA), None, None, {}
    if entry["kind"] == "vlm":
        same = (v for v in profile.leaderboard.vlm if v.name == entry["name"])
        settings = next(
            (v for v in same if endpoint_fingerprint(v.base_url, v.model) == entry["model_fingerprint"]), None
        )
        if settings is None:
            raise dg.Failure(description=f"VLM {entry['name']} at this base_url and model is no longer in the profile")
        files = generated_image_files(truth, store.read_table(Table.GENERATED_IMAGES))
        images = [(sha, store.read_bytes(path)) for sha, path in files.iter_rows()]
        try:
            result = score_images(images, Endpoint(**settings.model_dump(exclude={"license"})), taxonomy, store)
        except VlmError as exc:
            raise dg.Failure(description=str(exc)) from exc
        scores, rejects, prompts_hash, vlm_counts = result.scores, result.rejects(), result.prompt_hash, result.counts
    elif entry["kind"] == "zero_shot":
        settings = next((z for z in profile.leaderboard.zero_shot if z.name == entry["name"]), None)
        if settings is None:
            raise dg.Failure(description=f"zero-shot model {entry['name']} is no longer in the profile")
        model = ZeroShotModel.load(model_location(settings.source, build=settings.build_tiny))
        prompts = emotion_prompts(taxonomy, settings.template, settings.words)
        prompts_hash = prompt_hash(prompts)
        files = generated_image_files(truth, store.read_table(Table.GENERATED_IMAGES))
        images = [(sha, store.read_bytes(path)) for sha, path in files.iter_rows()]
        scores = model.score(images, prompts)
    elif entry["kind"] == "heads":
        row = (
            store.read_table(Table.EMOTION_MODEL)
            .filter(pl.col("model_fingerprint") == entry["version"])
            .row(0, named=True)
        )
        backbone = row["backbone_fingerprint"]
        with tempfile.TemporaryDirectory() as tmp:
            model = load_model(fetch_model(store, row["path"], Path(tmp)), taxonomy.version, backbone)
        embeddings = store.read_table(Table.IMAGE_EMBEDDINGS, [backbone])
        scores = head_scores(model, embeddings, truth)
    else:
        try:
            validated = load_predictions(
                entry["source_file"],
                store.read_bytes(entry["source_file"]),
                taxonomy,
                platform_images(store),
                entry["collection"],
                entry["scale"],
            )
        except PredictionsFileError as exc:
            raise dg.Failure(description=f"file rejected: {exc}") from exc
        scores, rejects, read = validated.accepted, validated.rejects, validated.rows_read
    frame = with_lineage(
        scores,
        key,
        entry["model_fingerprint"],
        entry["collection"],
        entry["scale"],
        store.read_table(Table.GENERATED_IMAGES),
        prompts_hash,
    )
    covered = coverage(frame, truth)
    reasons = rejects.group_by("reason").agg(rows=pl.len()).sort("rows", descending=True)
    yield dg.MaterializeResult(
        asset_key=Table.MODEL_PREDICTIONS.key,
        metadata={
            **storage.write_table(Table.MODEL_PREDICTIONS, frame, key),
            "model_key": key,
            "kind": entry["kind"],
            "scale": entry["scale"],
            "rows_read": read if read is not None else frame.height,
            "accepted": frame.height,
            "rejected": rejects.height,
            "coverage": dg.MetadataValue.md(markdown_table(covered)),
            "reasons": dg.MetadataValue.md(markdown_table(reasons, limit=20)),
            **vlm_counts,
        },
    )
    yield dg.MaterializeResult(
        asset_key=Table.MODEL_PREDICTION_REJECTS.key,
        metadata=storage.write_table(Table.MODEL_PREDICTION_REJECTS, rejects.with_columns(model_key=pl.lit(key)), key),
    )


def _leaderboard_spec(table: Table, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        table.key,
        group_name="leaderboard",
        kinds={"polars", "parquet"},
        deps=[
            dg.AssetDep(Table.MODEL_PREDICTIONS.key, partition_mapping=dg.AllPartitionMapping()),
            Table.MODEL_REGISTRY.key,
            Table.SPLITS.key,
            Table.CONSENSUS_LABELS.key,
            Table.EMOTION_AGREEMENT.key,
            Table.AGREEMENT_ITEM_STATS.key,
            Table.ANNOTATIONS.key,
            Table.EMOTION_ROLLUPS.key,
        ],
        description=description,
    )


@dg.multi_asset(
    specs=[
        _leaderboard_spec(
            Table.MODEL_LEADERBOARD,
            "Every registered model on the same images, per evaluation collection and rollup (emotion, group, "
            "valence, the profile's mappings; a level scores an image by its strongest member emotion): mean over "
            "emotions or levels of Spearman vs the consensus median (paired bootstrap 95% CI: the same image draws "
            "for every row), quadratic kappa, presence F1, MAE and coverage; the paired difference from the best "
            "model and from the human ceiling, each with CI and p-value; the panel's alpha with the model as one "
            "more rater beside the panel's own; the experts' own agreement on the same images (each annotator vs "
            "the others' median, from annotations) and a random baseline beside them. Models under the coverage "
            "threshold are listed, not ranked.",
        ),
        _leaderboard_spec(
            Table.MODEL_LEADERBOARD_EMOTIONS,
            "The leaderboard's metrics per model and emotion (rollup `emotion`) or rollup level.",
        ),
        _leaderboard_spec(
            Table.MODEL_LEADERBOARD_BINARY,
            "Every model on the binary-labelled items (the generated test split's and each binary collection of "
            "leaderboard.collections): ROC AUC against the presence consensus and F1, per emotion and pooled.",
        ),
    ],
)
def model_leaderboard(storage: StorageResource, profile: ProfileResource):
    from emonet_assets.lib.leaderboard.binary import POOLED, binary_metrics, binary_truth
    from emonet_assets.lib.leaderboard.leaderboard import (
        EMOTION_ROLLUP,
        build_leaderboard,
        evaluation_truth,
        forest_plot,
        heatmap,
        shown_board,
    )
    from emonet_assets.lib.leaderboard.registry import registered
    from emonet_assets.lib.leaderboard.scores import SCORE_SCHEMA

    store = storage.store()
    settings = profile.leaderboard
    models = registered(store.read_table(Table.MODEL_REGISTRY))
    scored = [k for k in store.table_partitions(Table.MODEL_PREDICTIONS) if k in set(models["model_key"])]
    predictions = store.read_table(Table.MODEL_PREDICTIONS, scored) if scored else pl.DataFrame(schema=SCORE_SCHEMA)
    consensus, splits = store.read_table(Table.CONSENSUS_LABELS), store.read_table(Table.SPLITS)
    truth = evaluation_truth(consensus, splits, settings.collections)
    binary = binary_metrics(predictions, binary_truth(consensus, splits, settings.collections), scored)
    board = build_leaderboard(
        predictions,
        models,
        truth,
        store.read_table(Table.EMOTION_AGREEMENT),
        store.read_table(Table.ANNOTATIONS),
        settings.bootstrap_resamples,
        settings.bootstrap_seed,
        settings.min_coverage,
        store.read_table(Table.AGREEMENT_ITEM_STATS),
        store.read_table(Table.EMOTION_ROLLUPS),
        profile.annotation.min_pair_items,
    )
    emotions = board.summary.filter(pl.col("rollup") == EMOTION_ROLLUP)
    chart = forest_plot(emotions)
    store.write_bytes(FOREST_PATH, chart)
    encoded = base64.b64encode(chart).decode()
    grid = heatmap(emotions, board.per_level)
    store.write_bytes(HEATMAP_PATH, grid)
    levels = board.summary.group_by("rollup", maintain_order=True).agg(
        pl.col("n_levels").max(), pl.col("rank").max().alias("ranked")
    )
    yield dg.MaterializeResult(
        asset_key=Table.MODEL_LEADERBOARD.key,
        metadata={
            **storage.write_table(Table.MODEL_LEADERBOARD, board.summary, preview_rows=20),
            "leaderboard": dg.MetadataValue.md(markdown_table(shown_board(emotions), limit=50)),
            "rollups": dg.MetadataValue.md(markdown_table(levels)),
            "forest_plot": dg.MetadataValue.md(f"![leaderboard](data:image/png;base64,{encoded})"),
            "forest_plot_path": dg.MetadataValue.path(store.url(FOREST_PATH)),
            "heatmap": dg.MetadataValue.md(f"![heatmap](data:image/png;base64,{base64.b64encode(grid).decode()})"),
            "heatmap_path": dg.MetadataValue.path(store.url(HEATMAP_PATH)),
            "models": models.height,
        },
    )
    yield dg.MaterializeResult(
        asset_key=Table.MODEL_LEADERBOARD_EMOTIONS.key,
        metadata=storage.write_table(Table.MODEL_LEADERBOARD_EMOTIONS, board.per_level),
    )
    pooled = binary.filter(pl.col("emotion_id") == POOLED).drop("emotion_id")
    yield dg.MaterializeResult(
        asset_key=Table.MODEL_LEADERBOARD_BINARY.key,
        metadata={
            **storage.write_table(Table.MODEL_LEADERBOARD_BINARY, binary),
            "pooled": dg.MetadataValue.md(markdown_table(pooled.with_columns(pl.col(pl.Float64).round(3)), 50)),
        },
    )


def _fairness_spec(table: Table, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        table.key,
        group_name="leaderboard",
        kinds={"polars", "parquet"},
        deps=[
            dg.AssetDep(Table.MODEL_PREDICTIONS.key, partition_mapping=dg.AllPartitionMapping()),
            Table.MODEL_REGISTRY.key,
            Table.SPLITS.key,
            Table.CONSENSUS_LABELS.key,
            Table.PROMPT_DESIGN.key,
            dg.AssetDep(Table.GENERATED_IMAGES.key, partition_mapping=dg.AllPartitionMapping()),
        ],
        description=description,
    )


@dg.multi_asset(
    specs=[
        _fairness_spec(
            Table.MODEL_FAIRNESS_GROUPS,
            "Each registered model's metrics on the generated test images by age, gender, ethnicity group and their "
            "intersections, and by occlusion, lighting, pose and generator, with bootstrap CIs (lib/fairness).",
        ),
        _fairness_spec(
            Table.MODEL_FAIRNESS_GAPS,
            "Per model, attribute and metric: the best and worst group large enough to rank and their gap.",
        ),
        _fairness_spec(
            Table.MODEL_FAIRNESS_GATES,
            "Per model, the fairness report's gates (`fairness.max_gap`): the widest gap per metric, passed or not.",
        ),
    ],
)
def model_fairness(storage: StorageResource, profile: ProfileResource):
    from emonet_assets.lib.leaderboard.leaderboard import evaluation_truth
    from emonet_assets.lib.leaderboard.model_fairness import image_slices, model_fairness
    from emonet_assets.lib.leaderboard.registry import registered

    store = storage.store()
    settings = profile.fairness
    keys = registered(store.read_table(Table.MODEL_REGISTRY))["model_key"].to_list()
    scored = [k for k in store.table_partitions(Table.MODEL_PREDICTIONS) if k in set(keys)]
    truth = evaluation_truth(store.read_table(Table.CONSENSUS_LABELS), store.read_table(Table.SPLITS), [])
    report = model_fairness(
        store.read_table(Table.MODEL_PREDICTIONS, scored) if scored else pl.DataFrame(),
        scored,
        truth,
        image_slices(store.read_table(Table.GENERATED_IMAGES), store.read_table(Table.PROMPT_DESIGN)),
        settings.max_gap,
        settings.min_group_size,
        settings.bootstrap_resamples,
        settings.bootstrap_seed,
    )
    gates = report.gates.select("model_key", "metric", "max_difference", "passed", "message")
    yield dg.MaterializeResult(
        asset_key=Table.MODEL_FAIRNESS_GROUPS.key,
        metadata=storage.write_table(Table.MODEL_FAIRNESS_GROUPS, report.groups),
    )
    yield dg.MaterializeResult(
        asset_key=Table.MODEL_FAIRNESS_GAPS.key,
        metadata=storage.write_table(Table.MODEL_FAIRNESS_GAPS, report.gaps),
    )
    yield dg.MaterializeResult(
        asset_key=Table.MODEL_FAIRNESS_GATES.key,
        metadata={
            **storage.write_table(Table.MODEL_FAIRNESS_GATES, report.gates),
            "gates": dg.MetadataValue.md(markdown_table(gates, limit=60)),
            "models_failing": gates.filter(~pl.col("passed"))["model_key"].unique().sort().to_list(),
        },
    )
