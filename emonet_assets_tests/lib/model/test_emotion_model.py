import json

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from emonet_assets.lib.model.emotion_model import (
    CARD_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    ModelCompatibilityError,
    ModelConfig,
    ModelFileError,
    StackedHeads,
    emotion_model_fingerprint,
    load_model,
    render_model_card,
    save_model,
    train_model,
)

N_EMOTIONS = 40
DIM = 32
EMOTION_IDS = [f"emotion_{i:02d}" for i in range(N_EMOTIONS)]
FAST = ModelConfig(hidden=(32, 16), learning_rate=3e-3, batch_size=128, max_epochs=60, patience=10)


@pytest.fixture(autouse=True)
def one_thread():
    """Bit-identical CPU results need a fixed thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def planted(n: int, seed: int = 0, noise: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Intensities that are a noisy, rounded linear function of the embedding, so a model can learn them."""
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(1234).normal(0, 1 / np.sqrt(DIM), size=(DIM, N_EMOTIONS))
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    y = np.clip(np.round(3.5 + 2 * (x @ w) + rng.normal(0, noise, size=(n, N_EMOTIONS))), 0, 7)
    return x, y.astype(np.float32)


def mean_spearman(pred: np.ndarray, y: np.ndarray) -> float:
    rhos = []
    for k in range(y.shape[1]):
        rho = spearmanr(pred[:, k], y[:, k]).statistic
        rhos.append(0.0 if np.isnan(rho) else rho)
    return float(np.mean(rhos))


@pytest.fixture(scope="module")
def splits():
    return planted(600, seed=1), planted(200, seed=2), planted(300, seed=3)


@pytest.mark.parametrize(
    ("architecture", "hidden"),
    # Shared hidden layers carry all 40 emotions at once, so they need to be at least as wide as the embedding.
    [("heads", (32, 16)), ("shared", (64, 64))],
)
def test_learns_planted_signal_but_not_shuffled_labels(splits, architecture, hidden):
    (tx, ty), (vx, vy), (ex, ey) = splits
    config = ModelConfig(**{**FAST.to_dict(), "architecture": architecture, "hidden": hidden})
    model = train_model(tx, ty, vx, vy, config, EMOTION_IDS)
    assert mean_spearman(model.predict(ex), ey) > 0.6

    shuffled = ty[np.random.default_rng(7).permutation(len(ty))]
    chance = train_model(tx, shuffled, vx, vy, config, EMOTION_IDS)
    assert abs(mean_spearman(chance.predict(ex), ey)) < 0.15


@pytest.mark.parametrize("architecture", ["heads", "shared"])
def test_training_is_deterministic(splits, architecture):
    (tx, ty), (vx, vy), (ex, _) = splits
    config = ModelConfig(**{**FAST.to_dict(), "architecture": architecture, "max_epochs": 10})
    first = train_model(tx, ty, vx, vy, config, EMOTION_IDS)
    second = train_model(tx, ty, vx, vy, config, EMOTION_IDS)
    a, b = first.network.state_dict(), second.network.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert np.array_equal(first.predict(ex), second.predict(ex))
    assert first.history == second.history

    reseeded = train_model(tx, ty, vx, vy, ModelConfig(**{**config.to_dict(), "seed": 43}), EMOTION_IDS)
    assert not np.array_equal(first.predict(ex), reseeded.predict(ex))


def test_training_leaves_global_torch_state_alone(splits):
    (tx, ty), (vx, vy), _ = splits
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    train_model(tx, ty, vx, vy, ModelConfig(**{**FAST.to_dict(), "max_epochs": 2}), EMOTION_IDS)
    assert torch.equal(torch.rand(3), expected)
    assert not torch.are_deterministic_algorithms_enabled()


def test_early_stopping_restores_best_weights():
    tx, ty = planted(80, seed=4, noise=2.0)
    vx, vy = planted(200, seed=5, noise=2.0)
    config = ModelConfig(hidden=(128, 64), dropout=0.0, learning_rate=1e-2, batch_size=16, max_epochs=200, patience=5)
    model = train_model(tx, ty, vx, vy, config, EMOTION_IDS)
    last_epoch = model.history[-1][0]
    val_losses = [v for _, _, v in model.history]
    assert last_epoch < config.max_epochs
    assert model.best_epoch < last_epoch
    assert last_epoch - model.best_epoch == config.patience
    assert model.history[model.best_epoch - 1][2] == min(val_losses)
    assert model.evaluate_loss(vx, vy) == min(val_losses)


def test_nan_labels_are_ignored(splits):
    (tx, ty), (vx, vy), (ex, ey) = splits
    rng = np.random.default_rng(9)
    sparse_ty = np.where(rng.random(ty.shape) < 0.3, np.nan, ty).astype(np.float32)
    sparse_vy = np.where(rng.random(vy.shape) < 0.3, np.nan, vy).astype(np.float32)
    model = train_model(tx, sparse_ty, vx, sparse_vy, FAST, EMOTION_IDS)
    assert all(np.isfinite(t) and np.isfinite(v) for _, t, v in model.history)
    assert mean_spearman(model.predict(ex), ey) > 0.6


def test_all_nan_targets_are_refused(splits):
    (tx, ty), (vx, vy), _ = splits
    with pytest.raises(ValueError, match="val_y has no labelled entries"):
        train_model(tx, ty, vx, np.full_like(vy, np.nan), FAST, EMOTION_IDS)


def test_heads_are_independent():
    torch.manual_seed(0)
    heads = StackedHeads(n_heads=5, in_dim=8, hidden=(6, 4), dropout=0.0)
    x = torch.randn(10, 8)
    k = 2
    heads(x)[:, k].sum().backward()
    for param in heads.parameters():
        for j in range(5):
            if j == k:
                assert param.grad[j].abs().sum() > 0
            else:
                assert torch.all(param.grad[j] == 0)

    before = heads(x).detach()
    with torch.no_grad():
        heads.weights[0][k].add_(1.0)
    after = heads(x).detach()
    others = [j for j in range(5) if j != k]
    assert torch.equal(before[:, others], after[:, others])
    assert not torch.equal(before[:, k], after[:, k])


def test_stacked_heads_equal_separate_mlps():
    torch.manual_seed(0)
    heads = StackedHeads(n_heads=4, in_dim=8, hidden=(6, 3), dropout=0.0)
    x = torch.randn(7, 8)
    for h in range(4):
        layers = []
        for i, (weight, bias) in enumerate(zip(heads.weights, heads.biases, strict=True)):
            linear = nn.Linear(*weight.shape[1:])
            linear.weight.data = weight[h].T.detach().clone()
            linear.bias.data = bias[h, 0].detach().clone()
            layers += [linear] if i == len(heads.weights) - 1 else [linear, nn.ReLU()]
        torch.testing.assert_close(heads(x)[:, h], nn.Sequential(*layers)(x)[:, 0])


def test_predictions_are_clipped_to_rating_scale(splits):
    (tx, ty), (vx, vy), _ = splits
    model = train_model(tx, ty, vx, vy, ModelConfig(**{**FAST.to_dict(), "max_epochs": 5}), EMOTION_IDS)
    pred = model.predict(np.random.default_rng(0).normal(0, 50, size=(50, DIM)).astype(np.float32))
    assert pred.shape == (50, N_EMOTIONS)
    assert pred.min() >= 0 and pred.max() <= 7
    assert model.predict(np.zeros((0, DIM), dtype=np.float32)).shape == (0, N_EMOTIONS)
    with pytest.raises(ValueError, match="expects 32"):
        model.predict(np.zeros((3, DIM + 1), dtype=np.float32))


METADATA = {
    "taxonomy_version": "tax_aaaaaaaa",
    "backbone_name": "tiny-siglip",
    "backbone_fingerprint": "bb_1111111111",
    "lineage": {"train_embeddings": "lin_train_0123456789", "consensus_labels": "lin_labels_abcdef"},
    "metrics": {"test": {"spearman": 0.8123, "mae": 0.7345}, "val": {"spearman": 0.7999, "mae": 0.7711}},
}


@pytest.fixture(scope="module")
def saved(splits, tmp_path_factory):
    (tx, ty), (vx, vy), _ = splits
    torch.set_num_threads(1)
    model = train_model(tx, ty, vx, vy, ModelConfig(**{**FAST.to_dict(), "max_epochs": 8}), EMOTION_IDS)
    directory = save_model(model, tmp_path_factory.mktemp("model") / "emotion_model", METADATA)
    return model, directory


def test_save_load_round_trip(saved, splits):
    model, directory = saved
    ex = splits[2][0]
    loaded = load_model(
        directory,
        expected_taxonomy_version=METADATA["taxonomy_version"],
        expected_backbone_fingerprint=METADATA["backbone_fingerprint"],
    )
    assert np.array_equal(loaded.predict(ex), model.predict(ex))
    assert loaded.config == model.config
    assert loaded.emotion_ids == EMOTION_IDS
    assert loaded.input_dim == DIM
    assert loaded.best_epoch == model.best_epoch
    assert loaded.history == model.history
    document = json.loads((directory / CONFIG_FILE).read_text())
    assert document["metadata"] == METADATA
    assert document["emotion_ids"] == EMOTION_IDS


def test_model_card_renders_metrics_and_lineage(saved):
    _, directory = saved
    card = (directory / CARD_FILE).read_text()
    for text in ("lin_train_0123456789", "lin_labels_abcdef", "0.8123", "0.7345", "tax_aaaaaaaa", "bb_1111111111"):
        assert text in card
    assert emotion_model_fingerprint(directory) in card
    assert "40 independent MLP regression heads, each 32 → 32 → 16 → 1" in card
    assert "Not validated on real photographs" in card
    assert "not for decisions about individuals" in card.lower()


def test_model_card_says_when_nothing_was_measured(saved, tmp_path):
    model, _ = saved
    card = (save_model(model, tmp_path, {}) / CARD_FILE).read_text()
    assert "No evaluation metrics were recorded." in card
    assert "No lineage hashes were recorded" in card
    assert "ratings whose raters this model did not record" in card
    assert "demographic groups (apparent age, gender, ethnicity); not measured yet: the fairness_report asset" in card


def test_model_card_says_who_rated_and_links_the_fairness_report_once_it_exists(saved, tmp_path):
    model, _ = saved
    ratings = [{"raters": "simulated", "batches": 3, "annotators": 4, "ratings": 9000}]
    directory = save_model(model, tmp_path, {"ratings": ratings})
    card = (directory / CARD_FILE).read_text()
    assert "consensus medians of ratings: 4 simulated raters (a program imitating expert raters, not people)" in card
    assert "The ratings are simulated, so the model learns the simulation" in card
    assert "expert raters;" not in card and "Other metadata" not in card
    fairness = {
        "headline": "Gates: 3 passed. Widest ranked gap: mean_spearman 0.100 across gender.",
        "gates": {"mean_spearman": "passed"},
        "report": "reports/fairness/report.html",
        "link": "../../../reports/fairness/report.html",
        "data": "f3b332948e2f3aa1",
    }
    document = json.loads((directory / CONFIG_FILE).read_text())
    updated = render_model_card(document, emotion_model_fingerprint(directory), fairness)
    assert "not measured yet" not in updated and "per-group results below." in updated
    assert "### Fairness report\n\nGates: 3 passed. Widest ranked gap" in updated
    assert "[reports/fairness/report.html](../../../reports/fairness/report.html)" in updated
    assert "data `f3b332948e2f3aa1`" in updated


def test_fingerprint_tracks_content(saved, tmp_path):
    model, directory = saved
    again = save_model(model, tmp_path / "again", METADATA)
    assert emotion_model_fingerprint(again) == emotion_model_fingerprint(directory)
    other = save_model(model, tmp_path / "other", {**METADATA, "taxonomy_version": "tax_bbbbbbbb"})
    assert emotion_model_fingerprint(other) != emotion_model_fingerprint(directory)


def test_load_refuses_other_taxonomy_version(saved):
    _, directory = saved
    with pytest.raises(ModelCompatibilityError, match="tax_aaaaaaaa.*tax_zzzzzzzz"):
        load_model(directory, expected_taxonomy_version="tax_zzzzzzzz")


def test_load_refuses_other_backbone(saved):
    _, directory = saved
    with pytest.raises(ModelCompatibilityError, match="bb_1111111111.*bb_2222222222"):
        load_model(directory, expected_backbone_fingerprint="bb_2222222222")


def test_missing_or_corrupt_files_are_named(saved, tmp_path):
    model, _ = saved
    directory = save_model(model, tmp_path / "m", METADATA)
    (directory / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFileError, match=WEIGHTS_FILE):
        load_model(directory)
    (directory / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelFileError, match=f"{WEIGHTS_FILE} is missing"):
        load_model(directory)
    (directory / CONFIG_FILE).write_text("{truncated")
    with pytest.raises(ModelFileError, match=CONFIG_FILE):
        load_model(directory)
    with pytest.raises(ModelFileError, match=f"{CONFIG_FILE} is missing"):
        load_model(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"architecture": "transformer"}, "architecture"),
        ({"hidden": (32, 0)}, "hidden"),
        ({"hidden": "128"}, "hidden"),
        ({"dropout": 1.0}, "dropout"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_epochs": 2.5}, "max_epochs"),
        ({"patience": True}, "patience"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_config_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**changes)


def test_config_round_trips_through_json():
    config = ModelConfig(architecture="shared", hidden=(1024, 512, 256), dropout=0.2)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"hiden": [8]})
