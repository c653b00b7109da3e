import json
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from emonet_assets.defs.release.checks import RELEASE_CHECKS, license_compatible, matches_manifest
from emonet_assets.defs.taxonomy.assets import read_taxonomy
from emonet_assets.lib.shared.catalog import read_columns, scratch_on_disk
from emonet_assets.lib.shared.lineage import library_versions
from emonet_assets.lib.shared.rules import GENERATED_INTENSITY
from emonet_assets.lib.shared.tables import FAIRNESS_TABLES, RELEASE_ROW_TABLES, Table
from emonet_assets.resources import EmbedderResource, ImageGeneratorResource, ProfileResource, StorageResource

PROFILE_SECTIONS = ("qc", "annotation", "dataset", "model", "fairness", "release")
# The fairness tables the dataset card summarizes.
RELEASED_FAIRNESS_NAMES = ("group_metrics", "disparities", "gates")
RELEASED_FAIRNESS = [FAIRNESS_TABLES[name] for name in RELEASED_FAIRNESS_NAMES]


def profile_snapshot(profile: ProfileResource, generator: ImageGeneratorResource, embedder: EmbedderResource) -> dict:
    """The settings a release was made under; the design's `source` names a file path, which differs per machine."""
    return {
        "name": profile.name,
        "design": {k: v for k, v in profile.design.items() if k != "source"},
        "rollups": profile.rollups,
        **{name: getattr(profile, name).model_dump(mode="json") for name in PROFILE_SECTIONS},
        "generation": generator.settings.model_dump(mode="json"),
        "embedding": embedder.settings.model_dump(mode="json"),
    }


def _fingerprints(store) -> dict[str, str]:
    summary = store.read_table(Table.MODEL_EVALUATION_SUMMARY)
    evaluated = summary.filter(pl.col("predictor") == "model")["model_fingerprint"].to_list()
    models = store.read_table(Table.EMOTION_MODEL).filter(pl.col("model_fingerprint").is_in(evaluated))
    if models.is_empty():
        return {}
    row = models.row(-1, named=True)
    return {"emotion_model": row["model_fingerprint"], "embedding_backbone": row["backbone_fingerprint"]}


@dg.asset(
    group_name="release",
    kinds={"parquet", "huggingface"},
    deps=[
        table.key
        for table in (
            *RELEASE_ROW_TABLES,
            Table.EMOTION_AGREEMENT,
            Table.EMOTION_MODEL,
            Table.MODEL_EVALUATION,
            Table.MODEL_EVALUATION_SUMMARY,
            Table.MODEL_LEADERBOARD,
            *RELEASED_FAIRNESS,
            Table.TAXONOMY,
        )
    ],
    description="The publishable benchmark under releases/<release id>/: Parquet shards per split with the images "
    "embedded (Hugging Face `datasets` loads them offline), a dataset card and a Croissant file written from the "
    "data, and a manifest of every file's sha256; the id is a hash of the content. Refused when the data is "
    "incomplete; the license check blocks images whose generation model's license forbids the release license, "
    "and releases/latest.json moves only to a release that passed both checks.",
    check_specs=RELEASE_CHECKS,
)
def benchmark_release(
    storage: StorageResource,
    profile: ProfileResource,
    generator: ImageGeneratorResource,
    embedder: EmbedderResource,
):
    # datasets and huggingface_hub take seconds to import: paid by this step only.
    from huggingface_hub import DatasetCard

    from emonet_assets.lib.leaderboard.leaderboard import EMOTION_ROLLUP
    from emonet_assets.lib.release.dataset_card import CardInputs, croissant, render_card
    from emonet_assets.lib.release.manifest import (
        GENERATION_COLUMNS,
        LIBRARIES,
        manifest,
        mark_latest,
        provenance,
        publish,
    )
    from emonet_assets.lib.release.rows import ReleaseRefused, release_rows
    from emonet_assets.lib.release.schema import CARD, CROISSANT
    from emonet_assets.lib.release.shards import write_shards
    from emonet_assets.lib.shared.rules import SPLITS

    store = storage.store()
    settings = profile.release
    taxonomy = read_taxonomy(storage)
    emotions = taxonomy.table().select("emotion_id", "emotion")
    with scratch_on_disk(store, profile.annotation.duckdb_settings()) as con:
        try:
            rows = release_rows(con, store, emotions["emotion_id"].to_list(), settings.max_failed_qc_share)
            files = write_shards(store, rows, settings.shard_bytes)
        except ReleaseRefused as exc:
            raise dg.Failure(description=f"release refused: {exc}") from exc
        generation = read_columns(con, store, Table.GENERATED_IMAGES, list(GENERATION_COLUMNS))
    images = rows.images
    source = provenance(
        profile_snapshot(profile, generator, embedder),
        images,
        generation,
        _fingerprints(store),
        library_versions(LIBRARIES),
    )
    inputs = CardInputs(
        name=settings.name,
        pretty_name=settings.pretty_name,
        version=settings.version,
        license=settings.license,
        rows=images,
        annotators=rows.annotators,
        batches=rows.batches,
        emotions=emotions,
        data_files={name: (sha, size) for name, (_, sha, size) in files.files.items()},
        agreement=store.read_table(Table.EMOTION_AGREEMENT).filter(GENERATED_INTENSITY),
        evaluation=store.read_table(Table.MODEL_EVALUATION),
        evaluation_summary=store.read_table(Table.MODEL_EVALUATION_SUMMARY),
        fairness={name: store.read_table(FAIRNESS_TABLES[name]) for name in RELEASED_FAIRNESS_NAMES},
        provenance=source,
        rating_sources=rows.rating_sources,
        fairness_settings={
            "min_group_size": profile.fairness.min_group_size,
            "gate_severity": profile.fairness.gate_severity,
        },
        leaderboard=(
            store.read_table(Table.MODEL_LEADERBOARD).filter(pl.col("rollup") == EMOTION_ROLLUP)
            if store.has_table(Table.MODEL_LEADERBOARD)
            else None
        ),
    )
    try:
        card = render_card(inputs)
        files.add(store, CARD, card.encode())
        files.add(store, CROISSANT, json.dumps(croissant(inputs), indent=2, sort_keys=True).encode())
        listed = manifest(files, source, datetime.now(UTC).isoformat())
        folder = publish(store, files, listed)
    finally:
        store.remove_tree(files.staging)
    checks = [license_compatible(images, settings.license), matches_manifest(store, folder)]
    passed = all(check.passed for check in checks)
    if passed:
        mark_latest(store, folder)
    return dg.MaterializeResult(
        metadata={
            "release_id": listed["release_id"],
            "path": dg.MetadataValue.path(store.url(folder)),
            "dagster/row_count": images.height,
            **{f"rows_{split}": files.rows[split] for split in SPLITS},
            "shards": sum(files.shards.values()),
            "bytes": sum(size for _, _, size in files.files.values()),
            "license": settings.license,
            "latest": passed,
            "card": dg.MetadataValue.md(DatasetCard(card).text),
        },
        check_results=checks,
    )
