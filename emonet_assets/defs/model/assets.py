import base64
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl

from emonet_assets.defs.dataset.assets import SPLITS_TABLE, read_splits
from emonet_assets.defs.taxonomy.assets import read_taxonomy
from emonet_assets.k8s_steps import gpu_step_tags
from emonet_assets.lib.shard_generation import MANIFEST_TABLE
from emonet_assets.metadata import markdown_table, table_metadata
from emonet_assets.resources import EmbedderResource, ProfileResource, StorageResource

EMBEDDINGS_TABLE = "image_embeddings"
MODEL_TABLE = "emotion_model"
TEST_PREDICTIONS_TABLE = "model_test_predictions"
CHART_PATH = "reports/model_evaluation/per_emotion_spearman.png"
# torch and the model code are imported inside the steps that use them: every process that loads this code
# location (each run and step of the daemon, every CLI command) would otherwise pay seconds for them.


@dg.asset(
    group_name="model",
    kinds={"pytorch", "parquet"},
    deps=[SPLITS_TABLE, MANIFEST_TABLE],
    pool="gpu",
    op_tags=gpu_step_tags(),
    description="One embedding per split image from the profile's vision backbone, keyed by (image sha256, "
    "backbone fingerprint): a re-run embeds only images this backbone has not seen. Undecodable images are "
    "skipped, counted and named.",
)
def image_embeddings(
    context: dg.AssetExecutionContext, storage: StorageResource, embedder: EmbedderResource
) -> dg.MaterializeResult:
    from emonet_assets.lib.embedding import images_to_embed

    store = storage.store()
    backbone = embedder.embedder()
    fingerprint = backbone.fingerprint
    existing = (
        store.read_table(EMBEDDINGS_TABLE, [fingerprint])
        if fingerprint in store.table_partitions(EMBEDDINGS_TABLE)
        else None
    )
    wanted = (
        read_splits(storage)
        .select("image_sha256")
        .join(store.read_table(MANIFEST_TABLE).select("image_sha256", "image_path"), on="image_sha256")
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
    path = store.write_table(EMBEDDINGS_TABLE, table, fingerprint)
    return dg.MaterializeResult(
        metadata={
            **table_metadata(table.drop("embedding"), store.url(path)),
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
    from emonet_assets.lib.embedding import check_embedding_table

    store = storage.store()
    fingerprint = embedder.embedder().fingerprint
    partitions = store.table_partitions(EMBEDDINGS_TABLE)
    if fingerprint not in partitions:
        others = store.read_table(EMBEDDINGS_TABLE, partitions) if partitions else pl.DataFrame()
        if others.height:
            check_embedding_table(others, fingerprint, embedder.embedder().name)
        raise dg.Failure(description=f"no embeddings from backbone {fingerprint} yet: materialize image_embeddings")
    return store.read_table(EMBEDDINGS_TABLE, [fingerprint])


@dg.asset(
    group_name="model",
    kinds={"pytorch", "safetensors"},
    deps=[image_embeddings, SPLITS_TABLE, "consensus_labels", "annotations", "taxonomy"],
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
    from emonet_assets.lib.annotation_batches import ANNOTATIONS_TABLE, rating_sources
    from emonet_assets.lib.emotion_model import ModelConfig, describe_architecture, model_fingerprint, save_model
    from emonet_assets.lib.emotion_model import train_model as fit
    from emonet_assets.lib.lineage import data_version, frame_hash
    from emonet_assets.lib.modeling import split_data, store_model

    store = storage.store()
    taxonomy = read_taxonomy(storage)
    emotion_ids = [e.id for e in taxonomy.emotions]
    splits_table = read_splits(storage)
    embeddings = current_embeddings(storage, embedder)
    consensus = store.read_table("consensus_labels")
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
            store.read_table(ANNOTATIONS_TABLE).filter(
                (pl.col("collection") == "generated")
                & (pl.col("scale") == "intensity")
                & pl.col("image_id").is_in(splits_table["image_sha256"].implode())
            )
        ).to_dicts(),
        "metrics": {"train_loss": best[1], "validation_loss": best[2], "best_epoch": model.best_epoch},
        "images": {split: len(d.image_sha256) for split, d in data.items()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, tmp, metadata)
        fingerprint = model_fingerprint(tmp)
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
    log = store.read_table(MODEL_TABLE) if MODEL_TABLE in store.table_names() else row.clear()
    store.write_table(MODEL_TABLE, pl.concat([log, row], how="vertical_relaxed"))
    history = pl.DataFrame(model.history, schema=["epoch", "train_loss", "validation_loss"], orient="row")
    return dg.MaterializeResult(
        metadata={
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


@dg.asset(
    group_name="model",
    kinds={"pytorch", "parquet"},
    deps=[emotion_model, image_embeddings, "emotion_agreement", "emotion_rollups"],
    description="The model on the test split against the consensus median: per-emotion Spearman with a "
    "bootstrap 95% CI, quadratic kappa, presence F1, beside the human ceiling and a random baseline, at every "
    "rollup level too.",
)
def model_evaluation(
    storage: StorageResource, embedder: EmbedderResource, profile: ProfileResource
) -> dg.MaterializeResult:
    from emonet_assets.lib.evaluation import evaluation_chart
    from emonet_assets.lib.modeling import evaluate_on_test, fetch_model, open_model, split_data

    store = storage.store()
    taxonomy = read_taxonomy(storage)
    row = store.read_table(MODEL_TABLE).sort("trained_at").row(-1, named=True)
    settings = profile.model
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = open_model(fetch_model(store, row["path"], Path(tmp)), taxonomy.version)
    emotion_ids = model.emotion_ids
    consensus = store.read_table("consensus_labels")
    test = split_data(read_splits(storage), current_embeddings(storage, embedder), consensus, emotion_ids)["test"]
    if not test.image_sha256:
        raise dg.Failure(description="the test split has no embedded images to evaluate on")
    report = evaluate_on_test(
        model,
        test,
        consensus,
        store.read_table("emotion_agreement"),
        store.read_table("emotion_rollups"),
        taxonomy.table().select("emotion_id", "emotion"),
        settings.bootstrap_resamples,
        settings.bootstrap_seed,
    )
    per_emotion, by_level = report.per_emotion, report.by_level
    summary = report.summary.with_columns(model_fingerprint=pl.lit(row["model_fingerprint"]))
    store.write_table("model_evaluation", per_emotion.with_columns(model_fingerprint=pl.lit(row["model_fingerprint"])))
    store.write_table("model_evaluation_summary", summary)
    store.write_table("model_evaluation_rollups", by_level)
    store.write_table(
        TEST_PREDICTIONS_TABLE, report.predictions.with_columns(model_fingerprint=pl.lit(row["model_fingerprint"]))
    )
    chart = evaluation_chart(per_emotion)
    store.write_bytes(CHART_PATH, chart)
    encoded = base64.b64encode(chart).decode()
    shown = ["emotion", "spearman", "spearman_ci_low", "spearman_ci_high", "human_ceiling_spearman"]
    return dg.MaterializeResult(
        metadata={
            "model_fingerprint": row["model_fingerprint"],
            "test_images": len(test.image_sha256),
            "mean_spearman": float(summary["mean_spearman"][0]),
            "random_mean_spearman": float(summary["mean_spearman"][1]),
            "summary": dg.MetadataValue.md(markdown_table(summary.drop("model_fingerprint"))),
            "per_emotion": dg.MetadataValue.md(markdown_table(per_emotion.select(shown).sort("spearman"), limit=40)),
            "rollups": dg.MetadataValue.md(
                markdown_table(by_level.select("rollup", "level", "n_images", "spearman", "kappa_quadratic"), 60)
            ),
            "chart": dg.MetadataValue.md(f"![model vs human ceiling](data:image/png;base64,{encoded})"),
            "chart_path": dg.MetadataValue.path(store.url(CHART_PATH)),
        }
    )


@dg.asset(
    group_name="model",
    kinds={"pytorch", "parquet"},
    deps=[emotion_model, "emotion_rollups"],
    description="The model on labelled real photos (the profile's `model.real_photo_sets`: a folder per class or "
    "a CSV of path,label, with a mapping onto the taxonomy): accuracy, macro F1, per-class recall and the "
    "confusion matrix, measuring the gap between synthetic training and real faces.",
)
def real_photo_evaluation(
    context: dg.AssetExecutionContext, storage: StorageResource, profile: ProfileResource
) -> dg.MaterializeResult:
    from emonet_assets.lib.modeling import fetch_model, score_photo_set

    store = storage.store()
    taxonomy = read_taxonomy(storage)
    rollups = store.read_table("emotion_rollups")
    row = store.read_table(MODEL_TABLE).sort("trained_at").row(-1, named=True)
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
    path = store.write_table("real_photo_evaluation", summary)
    classes = pl.concat(per_class) if per_class else pl.DataFrame()
    if per_class:
        store.write_table("real_photo_per_class", classes)
    return dg.MaterializeResult(
        metadata={
            **table_metadata(summary, store.url(path)),
            "sets": len(summaries),
            "per_class": dg.MetadataValue.md(markdown_table(classes, limit=40) if per_class else "no sets configured"),
        }
    )
