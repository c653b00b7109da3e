"""The glue between tables and the emotion model: matrices per split, lineage hashes, stored models, prediction.

Models live under the storage root as `models/emotion_model/<fingerprint>/` (weights, config, card); a
local copy is what torch reads, so object-store roots work the same way.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from emonet_assets.lib.model.embedding import BackboneSpec, Embedder, embedding_matrix
from emonet_assets.lib.model.emotion_model import (
    CARD_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    ModelFileError,
    TrainedModel,
    load_model,
)
from emonet_assets.lib.model.evaluation import beside_human, evaluate, random_baseline, rollup_metrics
from emonet_assets.lib.model.external_sets import check_mapping, read_class_mapping, read_external_set, score_external
from emonet_assets.lib.shared.profile_files import model_location
from emonet_assets.lib.shared.rules import GENERATED_INTENSITY, SPLITS, newest_model
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table
from emonet_assets.lib.taxonomy.taxonomy import Taxonomy

MODEL_FILES = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE)
MODELS_PREFIX = "models/emotion_model"


@dataclass(frozen=True)
class SplitData:
    image_sha256: list[str]
    x: np.ndarray
    y: np.ndarray


def consensus_matrix(consensus: pl.DataFrame, image_sha256: list[str], emotion_ids: list[str]) -> np.ndarray:
    """Median intensity per (image, emotion) in the given orders; NaN where the image has no consensus."""
    rated = consensus.filter(GENERATED_INTENSITY)
    wide = (
        pl.DataFrame({"image_id": image_sha256})
        .join(
            rated.pivot(on="emotion_id", index="image_id", values="median_rating"),
            on="image_id",
            how="left",
        )
        .select([pl.col(e) if e in rated["emotion_id"].unique() else pl.lit(None).alias(e) for e in emotion_ids])
    )
    return wide.cast(pl.Float32).to_numpy().astype(np.float32)


def split_data(
    splits: pl.DataFrame, embeddings: pl.DataFrame, consensus: pl.DataFrame, emotion_ids: list[str]
) -> dict[str, SplitData]:
    """Embeddings and consensus medians per split, rows in sha256 order so every run sees the same order."""
    data = {}
    for split in SPLITS:
        members = splits.filter(pl.col("split") == split).select("image_sha256")
        table = embeddings.join(members, on="image_sha256", how="semi").sort("image_sha256")
        shas, x = embedding_matrix(table)
        data[split] = SplitData(shas, x, consensus_matrix(consensus, shas, emotion_ids))
    return data


def predictions_frame(image_ids: list[str], predicted: np.ndarray, emotion_ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "image_id": np.repeat(np.array(image_ids, dtype=object), len(emotion_ids)),
            "emotion_id": np.tile(np.array(emotion_ids, dtype=object), len(image_ids)),
            "predicted": predicted.reshape(-1).astype(np.float64),
        },
        schema={"image_id": pl.String, "emotion_id": pl.String, "predicted": pl.Float64},
    )


def store_model(store: Store, directory: Path, fingerprint: str) -> str:
    prefix = f"{MODELS_PREFIX}/{fingerprint}"
    for name in MODEL_FILES:
        store.write_bytes(f"{prefix}/{name}", (directory / name).read_bytes())
    return prefix


def fetch_model(store: Store, prefix: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        (directory / name).write_bytes(store.read_bytes(f"{prefix}/{name}"))
    return directory


def saved_metadata(directory: Path) -> dict:
    return json.loads((Path(directory) / CONFIG_FILE).read_text(encoding="utf-8")).get("metadata") or {}


def check_model_dir(directory: Path) -> None:
    """A folder without a model config is named with what a model folder holds, and the model folder inside it
    when there is exactly one: people point at the emotion_model folder of a root rather than one model in it."""
    directory = Path(directory)
    if (directory / CONFIG_FILE).is_file():
        return
    message = (
        f"{directory} is not a saved model folder: it has no {CONFIG_FILE} "
        f"(a model folder holds {CONFIG_FILE}, {WEIGHTS_FILE} and {CARD_FILE})"
    )
    inside = sorted(p.parent for p in directory.glob(f"*/{CONFIG_FILE}"))
    if len(inside) == 1:
        message += f"; the model folder inside it is {inside[0]}"
    elif inside:
        message += f"; it holds {len(inside)} model folders, name one of them: {', '.join(p.name for p in inside)}"
    raise ModelFileError(message)


def open_model(directory: Path, taxonomy_version: str) -> tuple[TrainedModel, Embedder]:
    """The model and the backbone it was trained on; refuses a model of another taxonomy or backbone."""
    check_model_dir(directory)
    metadata = saved_metadata(directory)
    backbone = metadata.get("backbone") or {}
    if not backbone.get("kind") or not backbone.get("source"):
        raise ValueError(f"model at {directory} does not record its backbone (metadata.backbone.kind/source)")
    # A relative source is a profile's folder, under the project folder whatever the working directory.
    source = model_location(backbone["source"])
    embedder = Embedder.load(BackboneSpec(kind=backbone["kind"], source=source, device="cpu"))
    model = load_model(directory, taxonomy_version, embedder.fingerprint)
    return model, embedder


def predict_files(paths: list[Path], model_dir: Path, taxonomy_version: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Intensities (0–7) of every emotion for image files, and the files that could not be read or decoded."""
    model, embedder = open_model(model_dir, taxonomy_version)
    items, unreadable = [], []
    for path in paths:
        try:
            items.append((str(path), Path(path).read_bytes()))
        except OSError as exc:
            unreadable.append((str(path), f"cannot read: {exc.strerror or exc}"))
    result = embedder.embed(items)
    failed = pl.concat(
        [
            pl.DataFrame(unreadable, schema={"path": pl.String, "reason": pl.String}, orient="row"),
            result.failed.rename({"image_sha256": "path"}),
        ]
    )
    names, x = embedding_matrix(result.table) if result.table.height else ([], np.zeros((0, model.input_dim)))
    predicted = model.predict(x) if names else np.zeros((0, len(model.emotion_ids)), dtype=np.float32)
    frame = predictions_frame(names, predicted, model.emotion_ids).rename({"image_id": "path"})
    return frame, failed


def latest_model_dir(store: Store, scratch: Path | None = None) -> Path:
    """The newest trained model of this storage root, as a local folder."""
    if not store.has_table(Table.EMOTION_MODEL):
        raise FileNotFoundError(
            f"no trained emotion model under {store.root} yet: run `emonet demo` (it trains one on the tiny "
            "profile), or name a saved model folder with --model"
        )
    row = newest_model(store)
    if store.is_local:
        return Path(store.url(row["path"]))
    scratch = scratch or Path(tempfile.mkdtemp(prefix="emonet-model-"))
    return fetch_model(store, row["path"], scratch / row["model_fingerprint"])


@dataclass(frozen=True)
class TestReport:
    predictions: pl.DataFrame
    per_emotion: pl.DataFrame
    summary: pl.DataFrame
    by_level: pl.DataFrame


def evaluate_on_test(
    model: TrainedModel,
    test: SplitData,
    consensus: pl.DataFrame,
    agreement: pl.DataFrame,
    rollups: pl.DataFrame,
    emotion_names: pl.DataFrame,
    resamples: int,
    seed: int,
) -> TestReport:
    """The release's metrics on the test split, beside the human ceiling of the same collection and scale and
    a random baseline, per emotion and at every rollup level."""
    predictions = predictions_frame(test.image_sha256, model.predict(test.x), model.emotion_ids)
    generated = GENERATED_INTENSITY
    truth = consensus.filter(generated & pl.col("image_id").is_in(test.image_sha256)).select(
        "image_id", "emotion_id", "median_rating", "present"
    )
    humans = agreement.filter(generated)
    scored = evaluate(predictions, truth, resamples, seed)
    baseline = random_baseline(predictions, truth, resamples, seed)
    per_emotion = beside_human(scored.per_emotion, humans).join(emotion_names, on="emotion_id", how="left")
    summary = pl.concat(
        [
            scored.summary.with_columns(predictor=pl.lit("model")),
            baseline.summary.with_columns(predictor=pl.lit("random baseline")),
        ]
    ).with_columns(human_ceiling_spearman=pl.lit(humans["human_ceiling_spearman"].mean(), pl.Float64))
    by_level = rollup_metrics(predictions, truth, rollups.select("rollup", "level", "emotion_id"), resamples, seed)
    return TestReport(predictions, per_emotion, summary, by_level)


def score_photo_set(
    name: str, path: str, mapping_path: str, model_dir: Path, taxonomy: Taxonomy, rollups: pl.DataFrame
) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    """(summary row, per-class scores, skipped files) of the model on one labelled set of real photos."""
    mapping = read_class_mapping(mapping_path, taxonomy, rollups)
    truth = read_external_set(path)
    check_mapping(truth["label"].unique().to_list(), mapping)
    predicted, failed = predict_files([Path(p) for p in truth["path"]], model_dir, taxonomy.version)
    scored_truth = truth.join(failed.select("path"), on="path", how="anti")
    score = score_external(predicted, scored_truth, mapping)
    summary = {
        "set": name,
        "images": scored_truth.height,
        "skipped": failed.height,
        "accuracy": score.accuracy,
        "macro_f1": score.macro_f1,
    }
    return summary, score.per_class.with_columns(set=pl.lit(name)), failed
