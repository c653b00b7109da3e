import io

import numpy as np
import polars as pl
import pytest
from PIL import Image
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score, f1_score

from emonet_assets.lib.consensus.agreement import draw_counts, resample_indices
from emonet_assets.lib.model.evaluation import (
    SpearmanColumns,
    beats_random,
    beside_human,
    evaluate,
    evaluation_chart,
    per_emotion_metrics,
    permuted_predictions,
    random_baseline,
    rollup_metrics,
    spearman_draws,
    summary,
    to_scale,
)
from emonet_assets.lib.taxonomy.taxonomy import builtin_rollups, load_taxonomy
from emonet_assets_tests import reference_bootstrap

EMOTIONS = ["anger", "fear", "joy"]


def make_split(n_images=120, emotions=EMOTIONS, noise=1.0, seed=0, signal=None):
    """Consensus medians on the half-point grid and predictions that follow them with `noise`; emotions outside
    `signal` (when given) get predictions unrelated to the image."""
    rng = np.random.default_rng(seed)
    images = [f"img{i:04d}" for i in range(n_images)]
    rows, preds = [], []
    for emotion in emotions:
        median = rng.integers(0, 15, n_images) / 2
        linked = signal is None or emotion in signal
        predicted = (median if linked else rng.uniform(0, 7, n_images)) + rng.normal(0, noise, n_images)
        rows += [(i, emotion, float(m), bool(m >= 1)) for i, m in zip(images, median, strict=True)]
        preds += [(i, emotion, float(p)) for i, p in zip(images, np.clip(predicted, 0, 7), strict=True)]
    consensus = pl.DataFrame(rows, schema=["image_id", "emotion_id", "median_rating", "present"], orient="row")
    predictions = pl.DataFrame(preds, schema=["image_id", "emotion_id", "predicted"], orient="row")
    return predictions, consensus


def test_bootstrap_spearman_equals_scipy_on_every_resample():
    rng = np.random.default_rng(3)
    n = 40
    truth = rng.integers(0, 8, (n, 3)).astype(float)
    predicted = truth + rng.normal(0, 2, (n, 3))
    predicted[:, 1] = np.round(predicted[:, 1])  # ties on both sides
    truth[5:9, 2] = np.nan  # an emotion missing some images
    point, draws = spearman_draws(predicted, truth, resamples=150, seed=11)
    indices = np.concatenate(list(resample_indices(n, 150, 11)))
    for c in range(3):
        observed = ~np.isnan(truth[:, c])
        assert point[c] == pytest.approx(spearmanr(predicted[observed, c], truth[observed, c]).statistic, abs=1e-12)
        for r, drawn in enumerate(indices):
            kept = drawn[observed[drawn]]
            expected = spearmanr(predicted[kept, c], truth[kept, c]).statistic
            assert draws[c, r] == pytest.approx(expected, abs=1e-12)
    again = spearman_draws(predicted, truth, resamples=150, seed=11)[1]
    np.testing.assert_array_equal(draws, again)
    assert not np.array_equal(draws, spearman_draws(predicted, truth, resamples=150, seed=12)[1])


def test_fused_kernel_equals_the_numpy_reference():
    """Ties on both sides, continuous and half-point values, missing cells, a constant column and an empty one."""
    rng = np.random.default_rng(8)
    n = 500
    truth = rng.integers(0, 15, (n, 6)) / 2
    predicted = np.clip(truth + rng.normal(0, 1.5, truth.shape), 0, 7)
    predicted[:, 1] = np.round(predicted[:, 1])
    truth[rng.random(truth.shape) < 0.1] = np.nan
    predicted[:, 3] = 2.0
    truth[:, 4] = np.nan
    point, draws = spearman_draws(predicted, truth, resamples=230, seed=42)
    expected_point, expected_draws = reference_bootstrap.spearman_draws(predicted, truth, 230, 42)
    for ours, expected in ((point, expected_point), (draws, expected_draws)):
        assert np.array_equal(np.isnan(ours), np.isnan(expected))
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    assert np.isnan(draws[3]).all() and np.isnan(draws[4]).all() and np.isfinite(draws[[0, 1, 2, 5]]).all()


def test_draw_counts_widen_past_a_byte_and_spearman_reads_either_width():
    """An image drawn 255 times or more in one resample is counted in int64, and the kernel gives the same rho
    from either width."""
    rng = np.random.default_rng(3)
    indices = np.stack([np.r_[np.zeros(300, np.int64), rng.integers(0, 400, 100)], rng.integers(0, 400, 400)])
    counts = draw_counts(indices, 400)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, [np.bincount(drawn, minlength=400) for drawn in indices])
    predicted, truth = rng.normal(size=(400, 3)), rng.integers(0, 8, (400, 3)).astype(float)
    predicted[:, 0] = np.round(predicted[:, 0])  # ties on both sides
    columns = SpearmanColumns.of(predicted, truth)
    narrow = draw_counts(indices[1:], 400)
    assert narrow.dtype == np.uint8
    np.testing.assert_array_equal(columns.spearman(narrow), columns.spearman(counts[1:]))
    drawn = predicted.repeat(counts[0], axis=0), truth.repeat(counts[0], axis=0)
    weighted = [spearmanr(drawn[0][:, c], drawn[1][:, c])[0] for c in range(3)]
    np.testing.assert_allclose(columns.spearman(counts[:1])[:, 0], weighted, rtol=0, atol=1e-12)


def test_constant_side_gives_nan_like_scipy():
    truth = np.array([[1.0], [2.0], [3.0], [4.0]])
    point, draws = spearman_draws(np.full((4, 1), 2.0), truth, resamples=5, seed=0)
    assert np.isnan(point[0]) and np.isnan(draws).all()


def test_per_emotion_metrics_ci_brackets_point_and_is_deterministic():
    predictions, consensus = make_split()
    metrics = per_emotion_metrics(predictions, consensus, resamples=300, seed=5)
    assert metrics["emotion_id"].to_list() == EMOTIONS
    assert metrics["n_images"].to_list() == [120] * 3
    assert (metrics["spearman_ci_low"] <= metrics["spearman"]).all()
    assert (metrics["spearman"] <= metrics["spearman_ci_high"]).all()
    assert (metrics["spearman_ci_high"] - metrics["spearman_ci_low"] > 0.01).all()
    assert metrics.equals(per_emotion_metrics(predictions, consensus, resamples=300, seed=5))


def test_kappa_f1_and_mae_equal_sklearn_on_rounded_inputs():
    predictions, consensus = make_split(noise=1.5)
    metrics = per_emotion_metrics(predictions, consensus, resamples=20)
    joined = consensus.join(predictions, on=["image_id", "emotion_id"])
    for emotion in EMOTIONS:
        part = joined.filter(pl.col("emotion_id") == emotion)
        p, t = part["predicted"].to_numpy(), part["median_rating"].to_numpy()
        row = metrics.filter(pl.col("emotion_id") == emotion).row(0, named=True)
        kappa = cohen_kappa_score(to_scale(t), to_scale(p), labels=range(8), weights="quadratic")
        assert row["kappa_quadratic"] == pytest.approx(kappa, abs=1e-12)
        assert row["presence_f1"] == pytest.approx(f1_score(part["present"].to_numpy(), to_scale(p) >= 1), abs=1e-12)
        assert row["mae"] == pytest.approx(np.abs(p - t).mean(), abs=1e-12)
        assert row["spearman"] == pytest.approx(spearmanr(p, t).statistic, abs=1e-12)


def test_rounding_keeps_half_a_point_below_presence():
    np.testing.assert_array_equal(to_scale(np.array([-1.0, 0.5, 1.5, 2.5, 6.6, 9.0])), [0, 0, 2, 2, 7, 7])


def test_perfect_predictor_scores_one():
    _, consensus = make_split()
    perfect = consensus.select("image_id", "emotion_id", predicted=pl.col("median_rating"))
    metrics = per_emotion_metrics(perfect, consensus, resamples=50)
    for column in ("spearman", "spearman_ci_low", "spearman_ci_high", "kappa_quadratic", "presence_f1"):
        assert metrics[column].to_list() == pytest.approx([1.0] * 3)
    assert metrics["mae"].to_list() == [0.0] * 3


def test_missing_prediction_is_an_error():
    predictions, consensus = make_split(n_images=10)
    with pytest.raises(ValueError, match="predictions lack 1 test items"):
        evaluate(predictions.slice(1), consensus, resamples=5)


def test_summary_is_the_mean_over_emotions_with_a_bracketing_ci():
    predictions, consensus = make_split()
    result = evaluate(predictions, consensus, resamples=200)
    row = result.summary.row(0, named=True)
    assert row["n_images"] == 120 and row["n_emotions"] == 3 and row["resamples"] == 200
    assert row["mean_spearman"] == pytest.approx(result.per_emotion["spearman"].mean())
    assert row["mean_kappa_quadratic"] == pytest.approx(result.per_emotion["kappa_quadratic"].mean())
    assert row["mean_presence_f1"] == pytest.approx(result.per_emotion["presence_f1"].mean())
    assert row["mean_spearman_ci_low"] < row["mean_spearman"] < row["mean_spearman_ci_high"]
    assert summary(predictions, consensus, resamples=200).equals(result.summary)


def test_random_baseline_keeps_the_marginal_and_stays_near_zero():
    predictions, consensus = make_split(n_images=400, noise=0.5)
    shuffled = permuted_predictions(predictions, consensus, seed=1)
    for emotion in EMOTIONS:
        original = predictions.filter(pl.col("emotion_id") == emotion)["predicted"].sort()
        assert shuffled.filter(pl.col("emotion_id") == emotion)["predicted"].sort().equals(original)
    assert shuffled.equals(permuted_predictions(predictions, consensus, seed=1))
    baseline = random_baseline(predictions, consensus, resamples=100, seed=1)
    assert baseline.per_emotion["spearman"].abs().max() < 0.15
    assert abs(baseline.summary["mean_spearman"][0]) < 0.1
    assert abs(baseline.summary["mean_kappa_quadratic"][0]) < 0.15


def test_beside_human_ratio_is_null_without_a_positive_ceiling():
    metrics = pl.DataFrame({"emotion_id": ["a", "b", "c", "d", "e"], "spearman": [0.4, 0.3, 0.2, 0.1, float("nan")]})
    agreement = pl.DataFrame(
        {
            "emotion_id": ["a", "b", "c", "e"],
            "human_ceiling_spearman": [0.8, 0.0, -0.2, 0.5],
            "alpha_interval": [0.7, 0.1, 0.0, 0.4],
            "kappa_quadratic_mean": [0.6, 0.05, -0.1, 0.3],
        }
    )
    joined = beside_human(metrics, agreement)
    assert joined["model_to_human_ratio"].to_list() == [pytest.approx(0.5), None, None, None, None]
    assert joined["human_alpha_interval"].to_list() == [0.7, 0.1, 0.0, None, 0.4]
    assert joined["human_kappa_quadratic"].to_list()[0] == 0.6
    with pytest.raises(ValueError, match="select one collection and scale"):
        beside_human(metrics, pl.concat([agreement, agreement]))


def test_rollup_levels_aggregate_members_by_max():
    consensus = pl.DataFrame(
        {
            "image_id": ["i1", "i1", "i2", "i2", "i3", "i3"],
            "emotion_id": ["a", "b"] * 3,
            "median_rating": [1.0, 5.0, 0.0, 0.0, 3.0, 2.0],
            "present": [True, True, False, False, True, True],
        }
    )
    predictions = consensus.select("image_id", "emotion_id", predicted=pl.Series([0.0, 6.0, 0.4, 0.0, 2.0, 3.0]))
    rollups = pl.DataFrame({"rollup": ["pair"] * 2, "level": ["both"] * 2, "emotion_id": ["a", "b"]})
    row = rollup_metrics(predictions, consensus, rollups, resamples=20).row(0, named=True)
    # per image max: truth (5, 0, 3), predicted (6, 0.4, 3)
    assert (row["rollup"], row["level"], row["n_images"]) == ("pair", "both", 3)
    assert row["spearman"] == pytest.approx(1.0)
    assert row["mae"] == pytest.approx((1 + 0.4 + 0) / 3)
    assert row["presence_f1"] == pytest.approx(1.0)


def test_planted_signal_shows_at_its_group_level():
    taxonomy = load_taxonomy()
    rollups = builtin_rollups(taxonomy)
    negative = [e.id for e in taxonomy.emotions if e.group == "negative_high_energy_emotions"]
    predictions, consensus = make_split(
        n_images=150, emotions=[e.id for e in taxonomy.emotions], noise=0.5, signal=set(negative)
    )
    metrics = rollup_metrics(predictions, consensus, rollups, resamples=50)
    assert set(metrics["rollup"].unique()) == {"group", "valence"}
    assert metrics.filter(pl.col("rollup") == "group").height == 7
    group = dict(metrics.filter(pl.col("rollup") == "group").select("level", "spearman").iter_rows())
    assert group.pop("Negative High-Energy Emotions") > 0.6
    assert max(abs(v) for v in group.values()) < 0.3


def test_beats_random_on_good_and_useless_models():
    good, consensus = make_split(n_images=200, noise=0.8)
    useless, _ = make_split(n_images=200, signal=set())
    random_summary = random_baseline(good, consensus, resamples=200).summary
    passed, message = beats_random(summary(good, consensus, resamples=200), random_summary, margin=0.05)
    assert passed and message.startswith("model beats random")
    useless_summary = summary(useless, consensus, resamples=200)
    passed, message = beats_random(useless_summary, random_baseline(useless, consensus, resamples=200).summary, 0.05)
    assert not passed
    assert f"mean Spearman {useless_summary['mean_spearman'][0]:.3f}" in message
    assert "margin 0.050" in message


def test_chart_is_a_png_pil_can_open():
    predictions, consensus = make_split()
    metrics = per_emotion_metrics(predictions, consensus, resamples=50)
    agreement = pl.DataFrame(
        {
            "emotion_id": EMOTIONS,
            "human_ceiling_spearman": [0.7, None, 0.5],
            "alpha_interval": [0.6, 0.5, 0.4],
            "kappa_quadratic_mean": [0.5, 0.4, 0.3],
        }
    )
    png = evaluation_chart(beside_human(metrics, agreement))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 100
