"""Image embeddings from a frozen vision backbone (SigLIP, CLIP): the features the emotion regressors train on.

Every row carries the backbone's fingerprint, so embeddings from different weights are never mixed in one
training set, and re-runs embed only the images that have no embedding from the current weights yet. Models
are read from a local folder or the local Hugging Face cache only; nothing is downloaded.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import polars as pl
import torch
from PIL import Image

from emonet_assets.lib.generation.generation import (
    GenerationError,
    build_model_folder,
    generate_with_backoff,
    hub_model_fingerprint,
    resolve_device,
    resolve_dtype,
    resolve_model,
)

if TYPE_CHECKING:  # transformers loads in seconds: import it where a backbone is built or loaded
    from transformers import BatchFeature, PreTrainedModel

BackboneKind = Literal["siglip", "clip", "tiny"]
REFERENCE_BACKBONES: dict[str, str] = {
    "siglip": "google/siglip2-so400m-patch16-384",
    "clip": "openai/clip-vit-large-patch14",
}
TINY_IMAGE_SIZE = 64
FAILED_SCHEMA = pl.Schema({"image_sha256": pl.String, "reason": pl.String})
# Vision towers by checkpoint model_type: full image-text checkpoints load their vision half only.
_VISION_CLASSES = {
    "siglip": "SiglipVisionModel",
    "siglip_vision_model": "SiglipVisionModel",
    "siglip2": "Siglip2VisionModel",  # NaFlex checkpoints; the fixed-resolution SigLIP2 ones say "siglip"
    "siglip2_vision_model": "Siglip2VisionModel",
    "clip": "CLIPVisionModelWithProjection",
    "clip_vision_model": "CLIPVisionModelWithProjection",
}
_KIND_MODEL_TYPES = {
    "siglip": {"siglip", "siglip_vision_model", "siglip2", "siglip2_vision_model"},
    "tiny": {"siglip_vision_model"},
    "clip": {"clip", "clip_vision_model"},
}
_TINY_FILES = ("config.json", "preprocessor_config.json", "model.safetensors")


class EmbeddingError(RuntimeError):
    """A backbone that cannot be found or loaded; the message says what to do."""


class EmbeddingMismatchError(ValueError):
    """Embeddings from another backbone than the caller's: their dimensions do not mean the same thing."""


@dataclass(frozen=True)
class BackboneSpec:
    """Which backbone embeds the images and how; `source` is a local folder or a Hugging Face id in the local cache.

    `workers` threads decode and preprocess images (None: one per CPU core, up to 16), since on a GPU that CPU
    work, not the model, sets the pace.
    """

    kind: BackboneKind
    source: str
    batch_size: int = 32
    device: str = "auto"
    dtype: str = "auto"
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(BackboneKind):
            raise ValueError(f"unknown backbone kind {self.kind!r}; use one of {', '.join(get_args(BackboneKind))}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")


@dataclass(frozen=True)
class EmbedResult:
    """`table` has one row per embedded image; `failed` names each image that could not be decoded, and why."""

    table: pl.DataFrame
    failed: pl.DataFrame


def embedding_schema(dim: int) -> pl.Schema:
    return pl.Schema(
        {
            "image_sha256": pl.String,
            "backbone": pl.String,
            "backbone_fingerprint": pl.String,
            "embedding": pl.Array(pl.Float32, dim),
        }
    )


def build_tiny_backbone(directory: str | Path, seed: int = 0) -> Path:
    """A random SigLIP vision model of a few hundred KB, saved like a real checkpoint, so tests and the demo run
    offline through the same loading path as the real backbone."""
    from transformers import SiglipVisionConfig, SiglipVisionModel
    from transformers.models.siglip import SiglipImageProcessorPil

    def save(staging: Path) -> None:
        config = SiglipVisionConfig(
            image_size=TINY_IMAGE_SIZE,
            patch_size=16,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SiglipVisionModel(config).eval()
        processor = SiglipImageProcessorPil(size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE})
        with quiet_transformers():
            model.save_pretrained(staging, safe_serialization=True)
        processor.save_pretrained(staging)

    try:
        return build_model_folder(Path(directory), _TINY_FILES, save, "tiny backbone")
    except GenerationError as exc:
        raise EmbeddingError(str(exc)) from None


class Embedder:
    """A backbone loaded once, embedding encoded images in batches; build one with `Embedder.load`."""

    def __init__(self, spec: BackboneSpec, model: PreTrainedModel, processor: Any, fingerprint: str) -> None:
        self.spec = spec
        self._model = model
        self._processor = processor
        self._fingerprint = fingerprint
        self._batch_size = spec.batch_size
        self._workers = spec.workers or min(16, os.cpu_count() or 1)
        self._clip = model.config.model_type == "clip_vision_model"
        self._dim = model.config.projection_dim if self._clip else model.config.hidden_size

    @classmethod
    def load(cls, spec: BackboneSpec) -> Embedder:
        """From local files only; the image processor is pinned to its PIL backend so that embeddings do not
        change with whether torchvision happens to be installed."""
        import transformers
        from transformers import AutoConfig, AutoImageProcessor

        try:
            folder = resolve_model(spec.source)
        except GenerationError as exc:
            reason = f"folder {Path(spec.source).absolute()} does not exist" if spec.kind == "tiny" else str(exc)
            raise EmbeddingError(f"{spec.kind} backbone: {reason}{_fetch_hint(spec)}") from None
        try:
            device = resolve_device(spec.device)
            dtype = resolve_dtype(spec.dtype, device)
        except GenerationError as exc:
            raise EmbeddingError(str(exc)) from None
        for name in ("config.json", "preprocessor_config.json"):
            if not (folder / name).is_file():
                raise EmbeddingError(f"{folder} is not a {spec.kind} backbone folder (no {name}){_fetch_hint(spec)}")
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        model_type = config.model_type
        if model_type not in _KIND_MODEL_TYPES[spec.kind]:
            raise EmbeddingError(
                f"{folder} holds a {model_type!r} model, not a {spec.kind} backbone "
                f"(expected model_type {' or '.join(sorted(_KIND_MODEL_TYPES[spec.kind]))})"
            )
        options: dict[str, Any] = {}
        if model_type == "clip":  # the projection's width is the full config's; the vision part may hold a default
            options["config"] = config.vision_config
            options["config"].projection_dim = config.projection_dim
        model_class = getattr(transformers, _VISION_CLASSES[model_type])
        with quiet_transformers():
            model, info = model_class.from_pretrained(
                folder,
                local_files_only=True,
                dtype=dtype,
                output_loading_info=True,
                ignore_mismatched_sizes=True,  # refused below with the names, not in the report this hides
                **options,
            )
        missing = sorted(info["missing_keys"])
        mismatched = sorted(info["mismatched_keys"])
        if missing or mismatched:
            example = (
                missing[0]
                if missing
                else f"{mismatched[0][0]} shaped {tuple(mismatched[0][1])}, not {tuple(mismatched[0][2])}"
            )
            raise EmbeddingError(
                f"{folder} lacks {len(missing)} and misshapes {len(mismatched)} weights of its vision model "
                f"(such as {example}); random weights in their place would give meaningless embeddings"
            )
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True, backend="pil")
        return cls(spec, model.to(device).eval(), processor, hub_model_fingerprint(folder))

    @property
    def name(self) -> str:
        """Readable only: `fingerprint` is what identifies the weights."""
        source = Path(self.spec.source).expanduser()
        label = source.resolve().name if source.is_dir() else self.spec.source
        return f"{self.spec.kind}:{label}"

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def workers(self) -> int:
        return self._workers

    def embed(
        self,
        images: Sequence[tuple[str, bytes]],
        progress: Callable[[int, int], None] | None = None,
    ) -> EmbedResult:
        """L2-normalised pooled embeddings of (image_sha256, encoded bytes) pairs, in input order.

        An image that does not decode is left out and named in `failed`; the rest of its batch still runs.
        A GPU out-of-memory error halves the batch and retries it, and later calls start at the size that
        worked. `progress(done, total)` is called after every batch.
        """
        items = list(images)
        done = 0

        def run_batch(chunk: list[tuple[str, bytes]]) -> list[tuple[str, np.ndarray | None, str | None]]:
            nonlocal done
            step = -(-len(chunk) // self._workers)
            parts = list(
                pool.map(self._prepare, [[data for _, data in chunk[i : i + step]] for i in range(0, len(chunk), step)])
            )
            reasons = [reason for part_reasons, _ in parts for reason in part_reasons]
            inputs = [features for _, features in parts if features is not None]
            vectors = iter(self._forward(inputs)) if inputs else iter(())
            done += len(chunk)
            if progress is not None:
                progress(done, len(items))
            return [
                (sha, None if reason else next(vectors), reason)
                for (sha, _), reason in zip(chunk, reasons, strict=True)
            ]

        with ThreadPoolExecutor(self._workers, thread_name_prefix="embed-decode") as pool:
            results, self._batch_size = generate_with_backoff(run_batch, items, self._batch_size)
        embedded = [(sha, vector) for sha, vector, reason in results if reason is None]
        matrix = np.stack([v for _, v in embedded]) if embedded else np.zeros((0, self._dim), np.float32)
        table = pl.DataFrame(
            {
                "image_sha256": [sha for sha, _ in embedded],
                "backbone": [self.name] * len(embedded),
                "backbone_fingerprint": [self._fingerprint] * len(embedded),
                "embedding": matrix,
            },
            schema=embedding_schema(self._dim),
        )
        failed = pl.DataFrame(
            [(sha, reason) for sha, _, reason in results if reason is not None], schema=FAILED_SCHEMA, orient="row"
        )
        return EmbedResult(table, failed)

    def _prepare(self, encoded: list[bytes]) -> tuple[list[str | None], BatchFeature | None]:
        """Model inputs for a slice of a batch, and for each image why it does not decode (None where it does).

        Runs in worker threads: Pillow's decoders and resampling release the GIL. Preprocessing errors are not
        caught: they come from the setup, not from one image.
        """
        reasons, images = [], []
        for data in encoded:
            try:
                images.append(decode_image(data))
                reasons.append(None)
            except Exception as exc:  # any decoder error is a property of that image, not of the run
                reasons.append(_failure_reason(exc))
        return reasons, self._processor(images=images, return_tensors="pt") if images else None

    def _forward(self, prepared: list[BatchFeature]) -> np.ndarray:
        device, dtype = self._model.device, self._model.dtype
        inputs = {}
        for key in prepared[0]:
            value = torch.cat([p[key] for p in prepared])
            inputs[key] = value.to(device, dtype=dtype) if value.is_floating_point() else value.to(device)
        with torch.inference_mode():
            output = self._model(**inputs)
        pooled = output.image_embeds if self._clip else output.pooler_output
        return torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()


def decode_image(data: bytes) -> Image.Image:
    """RGB pixels of an encoded image, fully read, so a truncated file fails here and not inside a batch."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, Image.UnidentifiedImageError):  # Pillow's message names the buffer's memory address
        return "UnidentifiedImageError: not an image format Pillow can read"
    return f"{type(exc).__name__}: {exc}"


def images_to_embed(images: pl.DataFrame, existing: pl.DataFrame | None, fingerprint: str) -> pl.DataFrame:
    """The images with no embedding from these weights yet, once each, so a re-run embeds only what is new."""
    todo = images.unique(subset="image_sha256", keep="first", maintain_order=True)
    if existing is None or existing.is_empty():
        return todo
    done = existing.filter(pl.col("backbone_fingerprint") == fingerprint)["image_sha256"]
    return todo.filter(~pl.col("image_sha256").is_in(done.implode()))


def check_embedding_table(table: pl.DataFrame, expected_fingerprint: str, expected_backbone: str | None = None) -> None:
    """Refuses embeddings made by other weights than the caller's backbone, naming what made them."""
    others = (
        table.filter(pl.col("backbone_fingerprint").ne_missing(expected_fingerprint))
        .group_by("backbone_fingerprint", "backbone")
        .len()
        .sort("backbone_fingerprint", "backbone")
    )
    if others.is_empty():
        return
    found = "; ".join(f"{fp} ({backbone}, {n} rows)" for fp, backbone, n in others.iter_rows())
    expected = f"{expected_fingerprint} ({expected_backbone})" if expected_backbone else expected_fingerprint
    raise EmbeddingMismatchError(
        f"embedding table holds embeddings from backbone fingerprint {found}; expected fingerprint {expected}. "
        "Re-embed the images with the current backbone, or use the backbone these embeddings came from"
    )


def embedding_matrix(table: pl.DataFrame) -> tuple[list[str], np.ndarray]:
    """(image_sha256s, float32 matrix with one row each) for training; refuses a table that mixes backbones."""
    fingerprints = table["backbone_fingerprint"].unique().sort().to_list()
    if len(fingerprints) > 1:
        raise EmbeddingMismatchError(
            f"embedding table mixes backbone fingerprints {', '.join(fingerprints)}; select one before training"
        )
    column = table["embedding"]
    if column.null_count():
        raise ValueError(f"embedding table has {column.null_count()} rows without an embedding")
    if isinstance(column.dtype, pl.List):
        widths = column.list.len().unique().to_list()
        if len(widths) > 1:
            raise ValueError(f"embeddings have different lengths: {sorted(widths)}")
        column = column.cast(pl.Array(pl.Float32, widths[0] if widths else 0))
    matrix = column.cast(pl.Array(pl.Float32, column.dtype.size)).to_numpy()
    return table["image_sha256"].to_list(), np.ascontiguousarray(matrix, dtype=np.float32)


def _fetch_hint(spec: BackboneSpec) -> str:
    if spec.kind == "tiny":
        return f"; build it with emonet_assets.lib.model.embedding.build_tiny_backbone({spec.source!r})"
    reference = REFERENCE_BACKBONES[spec.kind]
    return "" if spec.source == reference else f"; the reference {spec.kind} backbone is {reference}"


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Loading a full image-text checkpoint reports its text tower as unexpected weights, which is the point:
    only the vision tower is wanted, and missing vision weights are refused by `Embedder.load` instead."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
