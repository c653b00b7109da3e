import base64
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl

from emonet_assets.defs.dataset.assets import read_splits
from emonet_assets.defs.execution.executor import gpu_step_tags
from emonet_assets.defs.taxonomy.assets import read_taxonomy
from emonet_assets.lib.shared.rules import GENERATED_INTENSITY, newest_model
from emonet_assets.lib.shared.tables import Table
from emonet_assets.metadata import markdown_table
from emonet_assets.resources import EmbedderResource, ProfileResource, StorageResource

CHART_PATH = "reports/model_evaluation/per_emotion_spearman.png"
# torch and the model code are imported inside the steps that use them: every process that loads this code
# location (each run and step of the daemon, every CLI command) would otherwise pay seconds for them.


@dg.asset(
    group_name="model",
    kinds={"pytorch", "parquet"},
    deps=[Table.SPLITS.key, Table.GENERATED_IMAGES.key],
    pool="gpu",
    op_tags=gpu_step_tags(),
    description="One embedding per split image from the profile's vision backbone, keyed by (image sha256, "
    "backbone fingerprint): a re-run embeds only images this backbone has not seen. Undecodable images are "
    "skipped, counted and named.",
)
def image_embeddings(
    context: dg.AssetExecutionContext, storage: StorageResource, embedder: EmbedderResource
) -> dg.MaterializeResult:
    from emonet_assets.lib.model.embedding import images_to_embed

    store = storage.store()
    backbone = embedder.embedder()
    fingerprint = backbone.fingerprint
    existing = (
        store.read_table(Table.IMAGE_EMBEDDINGS, [fingerprint])
        if fingerprint in store.table_partitions(Table.IMAGE_EMBEDDINGS)
        else None
    )
    wanted = (
        read_splits(storage)
        .select("image_sha256")
        .join(store.read_table(Table.GENERATED_IMAGES).select("image_sha256", "image_path"), on="image_sha256")
    )
    todo = images_to_embed(wanted, existing, fingerprint)
    context.log.info(f"{backbone.name} ({fingerprint}): {todo.height} of {wanted.height} images to embed")
    result = backbone.embed(
        [(row["image_sha256"], store.read_bytes(row["image_path"])) for row in todo.iter_rows(named=True)],
        progress=lambda done, total: context.log.debug(f"embedded {done}/{total}"),
    )
    for failure in result.failed.iter_rows(named=True):
        context.log.warning(f"skipped image {failure['image_sha256']}: {failure['reason']}")
    table = result.table if existing is None else pl.concat([existing, result.table])
    return dg.MaterializeResult(
        metadata={
            **storage.write_table(Table.IMAGE_EMBEDDINGS, table, fingerprint, preview_drop=["embedding"]),
            "backbone": backbone.name,
            "backbone_fingerprint": fingerprint,
            "dim": backbone.dim,
            "embedded_now": result.table.height,
            "reused": 0 if existing is None else existing.height,
            "failed": result.failed.height,
            "failed_images": dg.MetadataValue.md(markdown_table(result.failed, limit=20)),
        }
    )


def current_embeddings(storage: StorageResource, embedder: EmbedderResource) -> pl.DataFrame:
    """This backbone's embeddings; another backbone's are refused by name rather than silently mixed in."""
    from emonet_assets.lib.model.embedding import check_embedding_table

    store = storage.store()
    fingerprint = embedder.embedder().fingerprint
    partitions = store.table_partitions(Table.IMAGE_EMBEDDINGS)
    if fingerprint not in partitions:
        others = store.read_table(Table.IMAGE_EMBEDDINGS, partitions) if partitions else pl.DataFrame()
        if others.height:
            check_embedding_table(others, fingerprint, embedder.embedder().name)
        raise dg.Failure(description=f"no embeddings from backbone {fingerprint} yet: materialize image_embeddings")
    return store.read_table(Table.IMAGE_EMBEDDINGS, [fingerprint])


@dg.asset(
    group_name="model",
    kinds={"pytorch", "safetensors"},
    deps=[image_embeddings, Table.SPLITS.key, Table.CONSENSUS_LABELS.key, Table.ANNOTATIONS.key, Table.TAXONOMY.key],
    pool="gpu",
    op_tags=gpu_step_tags(),
    description="40 emotion intensities (0–7) from embeddings: 40 independent MLP heads (the reference design) "
    "or one shared MLP, trained on train, early-stopped on validation, deterministic under the seed. Saved as "
    "safetensors with its config and a model card carrying the training data's lineage hashes and who rated it.",
)
def emotion_model(
    storage: StorageResource,
    embedder: EmbedderResource,
    profile: ProfileResource,
) -> dg.MaterializeResult:
    from emonet_assets.lib.annotation.annotation_batches import rating_sources
    from emonet_assets.lib.model.emotion_model import (
        ModelConfig,
        describe_architecture,
        emotion_model_fingerprint,
        save_model,
    )
    from emonet_assets.lib.model.emotion_model import train_model as fit
    from emonet_assets.lib.model.modeling import split_data, store_model
    from emonet_assets.lib.shared.lineage import data_version, frame_hash

    store = storage.store()
    taxonomy = read_taxonomy(storage)
    emotion_ids = [e.id for e in taxonomy.emotions]
    splits_table = read_splits(storage)
    embeddings = current_embeddings(storage, embedder)
    consensus = store.read_table(Table.CONSENSUS_LABELS)
    data = split_data(splits_table, embeddings, consensus, emotion_ids)
    settings = profile.model
    config = ModelConfig(
        architecture=settings.architecture,
        hidden=tuple(settings.hidden),
        dropout=settings.dropout,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        batch_size=settings.batch_size,
        max_epochs=settings.max_epochs,
        patience=settings.patience,
        seed=settings.seed,
    )
    model = fit(data["train"].x, data["train"].y, data["validation"].x, data["validation"].y, config, emotion_ids)
    backbone = embedder.embedder()
    best = next(h for h in model.history if h[0] == model.best_epoch)
    metadata = {
        "taxonomy_version": taxonomy.version,
        "backbone_name": backbone.name,
        "backbone_fingerprint": backbone.fingerprint,
        "backbone": {"kind": embedder.settings.kind, "source": embedder.settings.source},
        "lineage": {
            "splits": data_version(splits_table),
            "embeddings": frame_hash(embeddings.select("image_sha256", "backbone_fingerprint")),
            "consensus": frame_hash(consensus.select("collection", "scale", "image_id", "emotion_id", "median_rating")),
        },
        "ratings": rating_sources(
            store.read_table(Table.ANNOTATIONS).filter(
                GENERATED_INTENSITY & pl.col("image_id").is_in(splits_table["image_sha256"].implode())
            )
        ).to_dicts(),
        "metrics": {"train_loss": best[1], "validation_loss": best[2], "best_epoch": model.best_epoch},
        "images": {split: len(d.image_sha256) for split, d in data.items()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, tmp, metadata)
        fingerprint = emotion_model_fingerprint(tmp)
        prefix = store_model(store, Path(tmp), fingerprint)
    row = pl.DataFrame(
        [
            {
                "model_fingerprint": fingerprint,
                "path": prefix,
                "architecture": config.architecture,
                "backbone_fingerprint": backbone.fingerprint,
                "taxonomy_version": taxonomy.version,
                "best_epoch": model.best_epoch,
                "validation_loss": best[2],
                "trained_at": datetime.now(UTC),
            }
        ]
    )
    log = store.read_table(Table.EMOTION_MODEL) if store.has_table(Table.EMOTION_MODEL) else row.clear()
    history = pl.DataFrame(model.history, schema=["epoch", "train_loss", "validation_loss"], orient="row")
    return dg.MaterializeResult(
        metadata={
            **storage.write_table(Table.EMOTION_MODEL, pl.concat([log, row], how="vertical_relaxed")),
            "model_fingerprint": fingerprint,
            "path": dg.MetadataValue.path(store.url(prefix)),
            "model_card": dg.MetadataValue.md(store.read_bytes(f"{prefix}/MODEL_CARD.md").decode()),
            "architecture": describe_architecture(config, model.input_dim, len(emotion_ids)),
            "best_epoch": model.best_epoch,
            "epochs_run": len(model.history),
            "validation_loss": best[2],
            "images": dg.MetadataValue.json(metadata["images"]),
            "history": dg.MetadataValue.md(markdown_table(history.tail(15), limit=15)),
        }
    )


def _evaluation_spec(table: Table, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        table.key,
        group_name="model",
        kinds={"pytorch", "parquet"},
        deps=[
            Table.EMOTION_MODEL.key,
            Table.IMAGE_EMBEDDINGS.key,
            Table.SPLITS.key,
            Table.CONSENSUS_LABELS.key,
            Table.EMOTION_AGREEMENT.key,
            Table.EMOTION_ROLLUPS.key,
            Table.TAXONOMY.key,
        ],
        description=description,
    )


@dg.multi_asset(
    specs=[
        _evaluation_spec(
            Table.MODEL_EVALUATION,
            "The model on the test split against the consensus median: per-emotion Spearman with a bootstrap 95% "
            "CI, quadratic kappa, presence F1, beside the human ceiling and a random baseline.",
        ),
        _evaluation_spec(
            Table.MODEL_EVALUATION_SUMMARY,
            "Mean Spearman, kappa and presence F1 over the emotions, for the model and the random baseline.",
        ),
        _evaluation_spec(
            Table.MODEL_EVALUATION_ROLLUPS,
            "The same metrics at every rollup level (emotion groups, valence, the profile's mappings).",
        ),
        _evaluation_spec(
            Table.MODEL_TEST_PREDICTIONS,
            "The model's predicted intensity for every test image and emotion: what the fairness report ranks.",
        ),
    ],
)
def model_evaluation(storage: StorageResource, embedder: EmbedderResource, profile: ProfileResource):
    from emonet_assets.lib.model.evaluation import evaluation_chart
    from emonet_assets.lib.model.modeling import evaluate_on_test, fetch_model, open_model, split_data

    store = storage.store()
    taxonomy = read_taxonomy(storage)
    row = newest_model(store)
    settings = profile.model
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = open_model(fetch_model(store, row["path"], Path(tmp)), taxonomy.version)
    emotion_ids = model.emotion_ids
    consensus = store.read_table(Table.CONSENSUS_LABELS)
    test = split_data(read_splits(storage), current_embeddings(storage, embedder), consensus, emotion_ids)["test"]
    if not test.image_sha256:
        raise dg.Failure(description="the test split has no embedded images to evaluate on")
    report = evaluate_on_test(
        model,
        test,
        consensus,
        store.read_table(Table.EMOTION_AGREEMENT),
        store.read_table(Table.EMOTION_ROLLUPS),
        taxonomy.table().select("emotion_id", "emotion"),
        settings.bootstrap_resamples,
        settings.bootstrap_seed,
    )
    fingerprint = pl.lit(row["model_fingerprint"])
    per_emotion, by_level = report.per_emotion, report.by_level
    summary = report.summary.with_columns(model_fingerprint=fingerprint)
    chart = evaluation_chart(per_emotion)
    store.write_bytes(CHART_PATH, chart)
    encoded = base64.b64encode(chart).decode()
    shown = ["emotion", "spearman", "spearman_ci_low", "spearman_ci_high", "human_ceiling_spearman"]
    yield dg.MaterializeResult(
        asset_key=Table.MODEL_EVALUATION.key,
        metadata={
            **storage.write_table(Table.MODEL_EVALUATION, per_emotion.with_columns(model_fingerprint=fingerprint)),
            "model_fingerprint": row["model_fingerprint"],
            "test_images": len(test.image_sha256),
            "mean_spearman": float(summary["mean_spearman"][0]),
            "random_mean_spearman": float(summary["mean_spearman"][1]),
            "per_emotion": dg.MetadataValue.md(markdown_table(per_emotion.select(shown).sort("spearman"), limit=40)),
            "chart": dg.MetadataValue.md(f"![model vs human ceiling](data:image/png;base64,{encoded})"),
            "chart_path": dg.MetadataValue.path(store.url(CHART_PATH)),
        },
    )
    yield dg.MaterializeResult(
        asset_key=Table.MODEL_EVALUATION_SUMMARY.key,
        metadata={
            **storage.write_table(Table.MODEL_EVALUATION_SUMMARY, summary),
            "summary": dg.MetadataValue.md(markdown_table(summary.drop("model_fingerprint"))),
        },
    )
    yield dg.MaterializeResult(
        asset_key=Table.MODEL_EVALUATION_ROLLUPS.key,
        metadata={
            **storage.write_table(Table.MODEL_EVALUATION_ROLLUPS, by_level),
            "rollups": dg.MetadataValue.md(
                markdown_table(by_level.select("rollup", "level", "n_images", "spearman", "kappa_quadratic"), 60)
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key=Table.MODEL_TEST_PREDICTIONS.key,
        metadata=storage.write_table(
            Table.MODEL_TEST_PREDICTIONS, report.predictions.with_columns(model_fingerprint=fingerprint)
        ),
    )


_REAL_PHOTO_DEPS = [Table.EMOTION_MODEL.key, Table.EMOTION_ROLLUPS.key, Table.TAXONOMY.key]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            Table.REAL_PHOTO_EVALUATION.key,
            group_name="model",
            kinds={"pytorch", "parquet"},
            deps=_REAL_PHOTO_DEPS,
            description="The model on labelled real photos (the profile's `model.real_photo_sets`: a folder per "
            "class or a CSV of path,label, with a mapping onto the taxonomy): accuracy and macro F1 per set, "
            "measuring the gap between synthetic training and real faces.",
        ),
        dg.AssetSpec(
            Table.REAL_PHOTO_PER_CLASS.key,
            group_name="model",
            kinds={"pytorch", "parquet"},
            deps=_REAL_PHOTO_DEPS,
            skippable=True,
            description="Per-class recall and the confusion matrix of each real-photo set; not written while the "
            "profile names no set.",
        ),
    ],
)
def real_photo_evaluation(context: dg.AssetExecutionContext, storage: StorageResource, profile: ProfileResource):
    from emonet_assets.lib.model.modeling import fetch_model, score_photo_set

    store = storage.store()
    taxonomy = read_taxonomy(storage)
    rollups = store.read_table(Table.EMOTION_ROLLUPS)
    row = newest_model(store)
    summaries, per_class = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = fetch_model(store, row["path"], Path(tmp))
        for photo_set in profile.model.real_photo_sets:
            row_summary, classes, failed = score_photo_set(
                photo_set.name, photo_set.path, photo_set.mapping, folder, taxonomy, rollups
            )
            for failure in failed.iter_rows(named=True):
                context.log.warning(f"{photo_set.name}: skipped {failure['path']}: {failure['reason']}")
            summaries.append({**row_summary, "model_fingerprint": row["model_fingerprint"]})
            per_class.append(classes)
    if not summaries:
        context.log.info("no real-photo sets configured (profile model.real_photo_sets): nothing to score")
    summary = pl.DataFrame(
        summaries,
        schema={
            "set": pl.String,
            "images": pl.Int64,
            "skipped": pl.Int64,
            "accuracy": pl.Float64,
            "macro_f1": pl.Float64,
            "model_fingerprint": pl.String,
        },
    )
    yield dg.MaterializeResult(
        asset_key=Table.REAL_PHOTO_EVALUATION.key,
        metadata={**storage.write_table(Table.REAL_PHOTO_EVALUATION, summary), "sets": len(summaries)},
    )
    if per_class:
        classes = pl.concat(per_class)
        yield dg.MaterializeResult(
            asset_key=Table.REAL_PHOTO_PER_CLASS.key,
            metadata=storage.write_table(Table.REAL_PHOTO_PER_CLASS, classes, preview_rows=40),
        )
