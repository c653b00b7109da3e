"""Emotion-intensity regressors on image embeddings: training, prediction, saving and loading.

Two architectures are supported. "heads" follows the reference Empathic-Insight-Face design: one independent MLP
per emotion (Small: in→128→32→1, Large: in→1024→512→256→1), evaluated together as one module whose per-head
weights are stacked so all heads run in one batched matmul per layer. "shared" is one multi-output MLP
(in→hidden…→n_emotions) whose hidden layers every emotion uses.

Training runs on CPU (embeddings are small) and is bit-reproducible for a given seed and thread count.

A saved model directory holds:
    model.safetensors   network weights plus the training-set input mean/std (``input_mean``, ``input_std``)
    config.json         format_version, ModelConfig, emotion_ids (output order), input_dim, best_epoch,
                        history, and the caller's metadata
    MODEL_CARD.md       rendered from the above; nothing in it is measured unless the metadata says so
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from emonet_assets.lib.annotation.landing import describe_rating_sources
from emonet_assets.lib.shared.rules import INTENSITY_MAX, INTENSITY_MIN

SMALL_HIDDEN = (128, 32)
LARGE_HIDDEN = (1024, 512, 256)
ARCHITECTURES = ("heads", "shared")
FORMAT_VERSION = 1
FINGERPRINT_LENGTH = 16
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "MODEL_CARD.md"
_PREDICT_CHUNK = 4096
_STD_FLOOR = 1e-6


class ModelCompatibilityError(ValueError):
    """A saved model that was trained for a different taxonomy or embedding backbone than the caller's."""


class ModelFileError(ValueError):
    """A saved model file that is missing or unreadable; the message names the file."""


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = "heads"
    hidden: tuple[int, ...] = SMALL_HIDDEN
    dropout: float = 0.1
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 15
    seed: int = 42

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        hidden = self.hidden
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, (tuple, list)):
            raise ValueError(f"hidden must be a sequence of positive layer widths, got {hidden!r}")
        if not all(_is_int(h) and h > 0 for h in hidden):
            raise ValueError(f"hidden layer widths must be positive integers, got {list(hidden)}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        for name in ("dropout", "learning_rate", "weight_decay"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay}")
        for name in ("batch_size", "max_epochs", "patience"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Unknown keys are refused so a typo in a config file does not silently fall back to a default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


class StackedHeads(nn.Module):
    """Independent per-emotion MLPs with weights stacked on a leading head axis.

    Head h computes exactly what ``nn.Sequential(Linear, ReLU, Dropout, …, Linear(·, 1))`` with weights
    ``weights[i][h].T`` and biases ``biases[i][h]`` would; no parameter is shared between heads, so one batched
    matmul per layer replaces 40 small ones.
    """

    def __init__(self, n_heads: int, in_dim: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        dims = [in_dim, *hidden, 1]
        self.n_heads = n_heads
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(dims[:-1], dims[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default initialisation, per head
            self.weights.append(nn.Parameter(torch.empty(n_heads, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n_heads, 1, fan_out).uniform_(-bound, bound)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0).expand(self.n_heads, *x.shape)
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(bias, h, weight)
            if i < last:
                h = self.dropout(torch.relu(h))
        return h.squeeze(-1).transpose(0, 1)


def _shared_mlp(n_outputs: int, in_dim: int, hidden: tuple[int, ...], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


class EmotionRegressor(nn.Module):
    """Standardises raw embeddings with the stored training statistics, so callers never have to."""

    def __init__(self, config: ModelConfig, input_dim: int, n_outputs: int) -> None:
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(input_dim))
        self.register_buffer("input_std", torch.ones(input_dim))
        if config.architecture == "heads":
            self.net: nn.Module = StackedHeads(n_outputs, input_dim, config.hidden, config.dropout)
        else:
            self.net = _shared_mlp(n_outputs, input_dim, config.hidden, config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.input_mean) / self.input_std)


@dataclass
class TrainedModel:
    network: EmotionRegressor
    config: ModelConfig
    emotion_ids: list[str]
    input_dim: int
    best_epoch: int
    history: list[tuple[int, float, float]] = field(default_factory=list)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Intensities on the 0–7 rating scale, one column per emotion in ``emotion_ids`` order."""
        outputs = _eval_outputs(self.network, _as_features(x, "x", self.input_dim))
        return outputs.clamp(INTENSITY_MIN, INTENSITY_MAX).numpy()

    def evaluate_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        """The validation criterion used for early stopping: masked MSE of unclipped outputs."""
        features = _as_features(x, "x", self.input_dim)
        return _eval_loss(self.network, features, _as_targets(y, "y", len(features), len(self.emotion_ids)))


def _eval_outputs(network: EmotionRegressor, x: torch.Tensor) -> torch.Tensor:
    """Chunked so large sets never materialise heads × rows × dims at once."""
    network.eval()
    with torch.no_grad():
        return torch.cat([network(chunk) for chunk in torch.split(x, _PREDICT_CHUNK)])


def _eval_loss(network: EmotionRegressor, x: torch.Tensor, y: torch.Tensor) -> float:
    return _mean_loss(*_masked_sse(_eval_outputs(network, x), y))


def train_model(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    config: ModelConfig,
    emotion_ids: list[str],
) -> TrainedModel:
    """Fit with AdamW on masked MSE (NaN targets are unlabelled), keeping the weights of the best validation epoch.

    Bit-reproducible on CPU for the same inputs, seed and ``torch.get_num_threads()``: parameter init and dropout
    draw from a forked global RNG seeded with ``config.seed`` (the caller's RNG state is restored afterwards),
    batch order from a dedicated generator, and deterministic algorithms are enforced for the duration.
    """
    emotion_ids = list(emotion_ids)
    if not emotion_ids or len(set(emotion_ids)) != len(emotion_ids):
        raise ValueError("emotion_ids must be a non-empty list of unique ids")
    train_features = _as_features(train_x, "train_x")
    input_dim = train_features.shape[1]
    val_features = _as_features(val_x, "val_x", input_dim)
    n_outputs = len(emotion_ids)
    train_targets = _as_targets(train_y, "train_y", len(train_features), n_outputs)
    val_targets = _as_targets(val_y, "val_y", len(val_features), n_outputs)
    for name, targets in (("train_y", train_targets), ("val_y", val_targets)):
        if not (~torch.isnan(targets)).any():
            raise ValueError(f"{name} has no labelled entries (every target is NaN)")

    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            return _fit(train_features, train_targets, val_features, val_targets, config, emotion_ids)
    finally:
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)


def _fit(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    config: ModelConfig,
    emotion_ids: list[str],
) -> TrainedModel:
    input_dim = train_x.shape[1]
    network = EmotionRegressor(config, input_dim, len(emotion_ids))
    network.input_mean.copy_(train_x.mean(dim=0))
    network.input_std.copy_(train_x.std(dim=0, correction=0).clamp_min(_STD_FLOOR))
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    model = TrainedModel(network, config, emotion_ids, input_dim, best_epoch=0)

    best_loss = math.inf
    best_state: dict[str, torch.Tensor] = {}
    for epoch in range(1, config.max_epochs + 1):
        network.train()
        epoch_sse, epoch_count = 0.0, 0
        for batch in torch.split(torch.randperm(len(train_x), generator=generator), config.batch_size):
            sse, count = _masked_sse(network(train_x[batch]), train_y[batch])
            loss = sse / max(count, 1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_sse += sse.item()
            epoch_count += count
        train_loss = _mean_loss(epoch_sse, epoch_count)
        val_loss = _eval_loss(network, val_x, val_y)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise FloatingPointError(
                f"training diverged at epoch {epoch} (train loss {train_loss}, val loss {val_loss}); "
                "lower learning_rate"
            )
        model.history.append((epoch, train_loss, val_loss))
        if val_loss < best_loss:
            best_loss, model.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(network.state_dict())
        elif epoch - model.best_epoch >= config.patience:
            break
    network.load_state_dict(best_state)
    network.eval()
    return model


def _masked_sse(outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    mask = ~torch.isnan(targets)
    errors = torch.where(mask, outputs - torch.nan_to_num(targets), torch.zeros_like(outputs))
    return errors.square().sum(), int(mask.sum())


def _mean_loss(sse: torch.Tensor | float, count: int) -> float:
    return float(sse) / count if count else math.nan


def _as_features(x: np.ndarray, name: str, input_dim: int | None = None) -> torch.Tensor:
    array = np.asarray(x, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows, embedding dims), got shape {array.shape}")
    if input_dim is not None and array.shape[1] != input_dim:
        raise ValueError(f"{name} has {array.shape[1]} embedding dims; the model expects {input_dim}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite embedding values")
    return torch.from_numpy(np.require(array, requirements=["C", "W"]))


def _as_targets(y: np.ndarray, name: str, n_rows: int, n_outputs: int) -> torch.Tensor:
    array = np.asarray(y, dtype=np.float32)
    if array.shape != (n_rows, n_outputs):
        raise ValueError(f"{name} must have shape ({n_rows}, {n_outputs}), got {array.shape}")
    if np.isinf(array).any():
        raise ValueError(f"{name} contains infinite targets; use NaN for missing labels")
    return torch.from_numpy(np.ascontiguousarray(array))


def save_model(model: TrainedModel, directory: str | Path, metadata: Mapping[str, Any]) -> Path:
    """Write weights, config and model card; returns the directory.

    Metadata keys the card renders: ``taxonomy_version``, ``backbone_name``, ``backbone_fingerprint``,
    ``lineage`` (name → hash), ``metrics`` (name → value, or split → {name → value}), ``real_photo_evaluation``
    and ``demographic_metrics`` (same shapes as ``metrics``), ``ratings`` (`annotation_batches.rating_sources`
    rows). ``taxonomy_version`` and ``backbone_fingerprint`` are what ``load_model`` checks. Any other
    JSON-serialisable key is stored and listed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "emotion_ids": list(model.emotion_ids),
        "input_dim": model.input_dim,
        "best_epoch": model.best_epoch,
        "history": [list(row) for row in model.history],
        "metadata": dict(metadata),
    }
    try:
        config_text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model metadata must be JSON-serialisable without NaN: {exc}") from exc
    state = {name: tensor.detach().contiguous() for name, tensor in model.network.state_dict().items()}
    save_file(state, directory / WEIGHTS_FILE)
    (directory / CONFIG_FILE).write_text(config_text + "\n", encoding="utf-8")
    (directory / CARD_FILE).write_text(
        render_model_card(document, emotion_model_fingerprint(directory)), encoding="utf-8"
    )
    return directory


def load_model(
    directory: str | Path,
    expected_taxonomy_version: str | None = None,
    expected_backbone_fingerprint: str | None = None,
) -> TrainedModel:
    """Load a saved model, refusing one whose outputs or inputs would not mean what the caller thinks."""
    directory = Path(directory)
    document = _read_config(directory)
    metadata = document.get("metadata") or {}
    saved_taxonomy = metadata.get("taxonomy_version")
    if expected_taxonomy_version is not None and saved_taxonomy != expected_taxonomy_version:
        raise ModelCompatibilityError(
            f"model at {directory} was trained on taxonomy version {saved_taxonomy or 'unrecorded'}; "
            f"the current taxonomy is {expected_taxonomy_version}"
        )
    saved_backbone = metadata.get("backbone_fingerprint")
    if expected_backbone_fingerprint is not None and saved_backbone != expected_backbone_fingerprint:
        raise ModelCompatibilityError(
            f"model at {directory} was trained on embeddings from backbone fingerprint "
            f"{saved_backbone or 'unrecorded'}; "
            f"the current backbone fingerprint is {expected_backbone_fingerprint}"
        )

    config_path = directory / CONFIG_FILE
    try:
        config = ModelConfig.from_dict(document["config"])
        emotion_ids = [str(e) for e in document["emotion_ids"]]
        input_dim = int(document["input_dim"])
        best_epoch = int(document["best_epoch"])
        history = [(int(e), float(t), float(v)) for e, t, v in document["history"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{config_path} is not a valid model config: {exc}") from exc

    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ModelFileError(f"model weights file {weights_path} is missing")
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read model weights {weights_path}: {exc}") from exc
    network = EmotionRegressor(config, input_dim, len(emotion_ids))
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(f"weights in {weights_path} do not match {config_path}: {exc}") from exc
    network.eval()
    return TrainedModel(network, config, emotion_ids, input_dim, best_epoch, history)


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ModelFileError(f"model config file {path} is missing")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"model config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ModelFileError(f"model config file {path} does not hold a JSON object")
    if document.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"model config file {path} has format_version {document.get('format_version')!r}; "
            f"this code reads version {FORMAT_VERSION}"
        )
    return document


def emotion_model_fingerprint(directory: str | Path) -> str:
    """Content hash of weights and config, so downstream lineage changes exactly when the model does."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        path = directory / name
        if not path.is_file():
            raise ModelFileError(f"cannot fingerprint model: {path} is missing")
        with path.open("rb") as handle:
            digest.update(f"{name}\0{hashlib.file_digest(handle, 'sha256').hexdigest()}\n".encode())
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


def describe_architecture(config: ModelConfig, input_dim: int, n_outputs: int) -> str:
    widths = " → ".join(str(w) for w in (input_dim, *config.hidden))
    if config.architecture == "heads":
        return f"{n_outputs} independent MLP regression heads, each {widths} → 1 (ReLU, dropout {config.dropout})"
    return f"one shared MLP {widths} → {n_outputs} (ReLU, dropout {config.dropout})"


def _ratings_line(sources: list[dict] | None) -> str:
    """Where the labels come from, as recorded at training: a card must not call simulated ratings expert ones."""
    bounds = "they measure perceived expression, not felt emotion, and rater disagreement bounds attainable accuracy."
    if not sources:
        return f"- Intensity labels are consensus medians of ratings whose raters this model did not record; {bounds}"
    line = f"- Intensity labels are consensus medians of ratings: {describe_rating_sources(sources)}; {bounds}"
    if any(source["raters"] == "simulated" for source in sources):
        line += " The ratings are simulated, so the model learns the simulation, not how people perceive these faces."
    return line


def render_model_card(document: Mapping[str, Any], fingerprint: str, fairness: Mapping[str, Any] | None = None) -> str:
    """Everything stated as measured comes from the saved document; absent measurements are said to be absent.

    `fairness` (``headline``, ``gates`` as metric → outcome, ``report`` path, ``link`` from the card to it, ``data``
    version) is the fairness report of this model, added once that report exists: the report is measured after
    training, so the card written at training says it is not measured yet.
    """
    config = ModelConfig.from_dict(document["config"])
    metadata = document.get("metadata") or {}
    emotion_ids = document["emotion_ids"]
    history = document["history"]
    best = next((row for row in history if row[0] == document["best_epoch"]), None)
    stopped = f"stopped after epoch {history[-1][0]} of at most {config.max_epochs}" if history else "no epochs run"
    best_text = f"; weights from epoch {best[0]} (validation masked MSE {_cell(best[2])})" if best else ""

    lines = [
        "# Emotion intensity model",
        "",
        "## Model details",
        "",
        f"- Task: regress the intensity (0–7) of {len(emotion_ids)} emotions from one face-image embedding.",
        f"- Architecture: {describe_architecture(config, document['input_dim'], len(emotion_ids))}.",
        f"- Input: {document['input_dim']}-dim embeddings from backbone `{metadata.get('backbone_name', 'unrecorded')}`"
        f" (fingerprint `{metadata.get('backbone_fingerprint', 'unrecorded')}`), standardised with the training-set"
        " mean and std stored in the weights file.",
        f"- Taxonomy version: `{metadata.get('taxonomy_version', 'unrecorded')}`; outputs in `config.json`"
        " `emotion_ids` order.",
        f"- Training: AdamW (lr {config.learning_rate}, weight decay {config.weight_decay}), batch size"
        f" {config.batch_size}, masked MSE ignoring unlabelled targets, early stopping with patience"
        f" {config.patience}, seed {config.seed}; {stopped}{best_text}.",
        f"- Model fingerprint: `{fingerprint}` (sha256 over `{WEIGHTS_FILE}` and `{CONFIG_FILE}`).",
        "",
        "## Training data lineage",
        "",
    ]
    lineage = metadata.get("lineage") or {}
    if lineage:
        lines += ["| Input | Hash |", "| --- | --- |"]
        lines += [f"| {_cell(name)} | `{_cell(value)}` |" for name, value in sorted(lineage.items())]
    else:
        lines.append("No lineage hashes were recorded with this model.")
    lines += ["", "## Metrics", "", *_metrics_table(metadata.get("metrics"), "No evaluation metrics were recorded.")]

    real_photo = metadata.get("real_photo_evaluation")
    if real_photo:
        real_photo_line = "- Evaluated on real photographs only as far as the results below go."
    else:
        real_photo_line = "- Not validated on real photographs; expect a domain shift from synthetic faces."
    demographic = metadata.get("demographic_metrics")
    demographic_line = "- Performance may differ across demographic groups (apparent age, gender, ethnicity); " + (
        "per-group results below."
        if demographic or fairness
        else "not measured yet: the fairness_report asset measures it on the test split after evaluation and adds "
        "it to this card."
    )
    lines += [
        "",
        "## Intended use",
        "",
        "Research on fine-grained emotion recognition on synthetic faces: benchmarking, ablations and analysis of"
        " how models perceive the emotions in the taxonomy.",
        "",
        "## Limitations",
        "",
        "- Trained only on synthetic (generated) face images; the images carry the generator's biases.",
        _ratings_line(metadata.get("ratings")),
        "- Not for decisions about individuals (hiring, education, policing, health, access to services).",
        real_photo_line,
        demographic_line,
    ]
    if real_photo:
        lines += ["", "### Real-photo evaluation", "", *_metrics_table(real_photo, "")]
    if demographic:
        lines += ["", "### Demographic breakdown", "", *_metrics_table(demographic, "")]
    if fairness:
        lines += ["", "### Fairness report", "", fairness["headline"], ""]
        lines += [f"- gate {metric}: {outcome}" for metric, outcome in fairness["gates"].items()]
        lines.append(
            f"- the report: [{fairness['report']}]({fairness['link']}) under the storage root, on data "
            f"`{fairness['data']}` (the hash of the image-to-split assignment, the `splits` lineage hash above)"
        )

    rendered = {"taxonomy_version", "backbone_name", "backbone_fingerprint", "lineage", "metrics", "ratings"}
    rendered |= {"real_photo_evaluation", "demographic_metrics"}
    other = {k: v for k, v in metadata.items() if k not in rendered}
    if other:
        lines += ["", "## Other metadata", ""]
        lines += [f"- {_cell(key)}: `{json.dumps(value, sort_keys=True)}`" for key, value in sorted(other.items())]
    return "\n".join(lines) + "\n"


def _metrics_table(metrics: Any, empty: str) -> list[str]:
    """Flat name → value mappings become one column; nested row → {name → value} mappings a grid."""
    if not metrics:
        return [empty]
    if not isinstance(metrics, Mapping):
        return [_cell(metrics)]
    if all(isinstance(v, Mapping) for v in metrics.values()):
        columns = list(dict.fromkeys(k for row in metrics.values() for k in row))
        lines = ["| | " + " | ".join(_cell(c) for c in columns) + " |", "| --- |" + " --- |" * len(columns)]
        for name, row in metrics.items():
            lines.append(f"| {_cell(name)} | " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
        return lines
    return ["| Metric | Value |", "| --- | --- |", *(f"| {_cell(k)} | {_cell(v)} |" for k, v in metrics.items())]


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return re.sub(r"\s+", " ", text).replace("|", "\\|")
