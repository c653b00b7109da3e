import krippendorff
import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from emonet_assets.lib.consensus.agreement import item_statistics, reliability_matrix, resample_indices
from emonet_assets.lib.leaderboard.leaderboard import (
    HUMAN_KEY,
    RANDOM_KEY,
    alpha_with_model,
    build_leaderboard,
    evaluation_truth,
)
from emonet_assets.lib.model.evaluation import percentile_interval, to_scale

EMOTIONS = ["anger", "fear", "joy"]


ANNOTATORS = ["a1", "a2", "a3", "a4"]


def planted(n_images=60, seed=0):
    """Four annotators' ratings of one generated collection (each a shared intensity plus their own noise), their
    consensus medians, and per-emotion kappa and alpha."""
    rng = np.random.default_rng(seed)
    rows = [
        ("generated", "intensity", f"img{i:03d}", e, a, int(np.clip(base + rng.integers(-2, 3), 0, 7)))
        for e in EMOTIONS
        for i, base in enumerate(rng.integers(0, 8, n_images))
        for a in ANNOTATORS
    ]
    ratings = pl.DataFrame(
        rows, schema=["collection", "scale", "image_id", "emotion_id", "annotator", "value"], orient="row"
    )
    truth = (
        ratings.group_by("collection", "image_id", "emotion_id")
        .agg(median_rating=pl.col("value").median().cast(pl.Float64))
        .with_columns(present=pl.col("median_rating") >= 1)
        .sort("collection", "image_id", "emotion_id")
    )
    agreement = pl.DataFrame(
        {
            "collection": "generated",
            "scale": "intensity",
            "emotion_id": EMOTIONS,
            "kappa_quadratic_mean": [0.4, 0.3, 0.2],
            "alpha_interval": [0.3, 0.2, 0.1],
        }
    )
    return truth, agreement, ratings


def annotator_matrices(ratings):
    """Per emotion, images × annotators ratings (every annotator rated every image)."""
    return [
        ratings.filter(pl.col("emotion_id") == e)
        .pivot(on="annotator", index="image_id", values="value")
        .sort("image_id")
        .select(ANNOTATORS)
        .to_numpy()
        .astype(float)
        for e in EMOTIONS
    ]


def human_ceiling(matrices, rows):
    """Per emotion, the mean over annotators of scipy's Spearman between their ratings and the median of the other
    three, on the images `rows` picks (a bootstrap draw repeats some)."""
    ceiling = []
    for m in matrices:
        drawn = m[rows]
        rhos = [
            spearmanr(drawn[:, a], np.median(np.delete(drawn, a, axis=1), axis=1))[0] for a in range(len(ANNOTATORS))
        ]
        ceiling.append(np.nanmean(rhos))
    return np.array(ceiling)


def model(key, truth, score):
    return truth.select("image_id", "emotion_id", model_key=pl.lit(key), score=score, intensity=score)


def registry(*keys, kind="predictions"):
    return pl.DataFrame({"model_key": list(keys), "name": list(keys), "kind": kind})


def test_the_consensus_median_ranks_first_and_a_constant_file_is_listed_not_ranked():
    truth, agreement, ratings = planted()
    rng = np.random.default_rng(1)
    noisy = pl.col("median_rating") + pl.Series(rng.normal(0, 2, truth.height))
    predictions = pl.concat(
        [
            model("oracle", truth, pl.col("median_rating")),
            model("noisy", truth, noisy.clip(0, 7)),
            model("constant", truth, pl.lit(3.0)),
        ]
    )
    board = build_leaderboard(predictions, registry("oracle", "noisy", "constant"), truth, agreement, ratings, 200, 42)
    rows = {r["model_key"]: r for r in board.summary.iter_rows(named=True)}
    assert rows["oracle"]["rank"] == 1 and rows["oracle"]["mean_spearman"] == pytest.approx(1.0)
    assert rows["oracle"]["mean_kappa_quadratic"] == pytest.approx(1.0) and rows["oracle"]["mean_mae"] == 0
    ceiling = human_ceiling(annotator_matrices(ratings), slice(None)).mean()
    assert rows["oracle"]["mean_spearman"] > rows[HUMAN_KEY]["mean_spearman"] == pytest.approx(ceiling, abs=1e-12)
    assert rows["oracle"]["diff_vs_human"] > 0 and rows["oracle"]["diff_vs_human_ci_low"] > 0
    assert rows["noisy"]["rank"] == 2
    assert rows[RANDOM_KEY]["mean_spearman"] < rows["noisy"]["mean_spearman"] < rows["oracle"]["mean_spearman"]
    assert rows["noisy"]["p_vs_best"] < 0.05 and rows["noisy"]["diff_vs_best_ci_high"] < 0
    assert rows["constant"]["rank"] is None and np.isnan(rows["constant"]["mean_spearman"])
    assert "constant scores" in rows["constant"]["note"]
    assert rows[HUMAN_KEY]["rank"] is None and rows[RANDOM_KEY]["rank"] is None
    assert board.summary["model_key"].to_list()[:2] == ["oracle", "noisy"]
    per_emotion = board.per_level.filter(pl.col("model_key") == "oracle")
    assert per_emotion["spearman"].to_list() == pytest.approx([1.0] * 3)


def test_a_model_under_the_coverage_threshold_is_listed_with_its_coverage_not_ranked():
    truth, agreement, ratings = planted()
    half = truth.filter(pl.col("image_id") < "img030")
    predictions = pl.concat([model("half", half, pl.col("median_rating")), model("full", truth, pl.lit(1.0))])
    board = build_leaderboard(
        predictions, registry("half", "full"), truth, agreement, ratings, 50, 42, min_coverage=0.9
    )
    half_row = board.summary.filter(pl.col("model_key") == "half").row(0, named=True)
    assert half_row["coverage"] == pytest.approx(0.5) and half_row["rank"] is None
    assert "coverage 50% < 90%" in half_row["note"] and half_row["mean_spearman"] == pytest.approx(1.0)


def test_the_differences_from_the_best_and_from_the_human_ceiling_are_the_paired_numpy_bootstrap():
    """scipy's Spearman on each drawn sample of `resample_indices`, for both models and for each annotator against
    the others' median: the leaderboard's paired differences, their CIs and p-values are these draws'."""
    truth, agreement, ratings = planted(n_images=30)
    rng = np.random.default_rng(5)
    predictions = pl.concat(
        [
            model(key, truth, pl.col("median_rating") + pl.Series(rng.normal(0, noise, truth.height)))
            for key, noise in (("a", 1.0), ("b", 3.0))
        ]
    )
    resamples, seed = 200, 42
    board = build_leaderboard(predictions, registry("a", "b"), truth, agreement, ratings, resamples, seed)
    images = sorted(truth["image_id"].unique())

    def matrix(key):
        wide = predictions.filter(pl.col("model_key") == key).pivot(on="emotion_id", index="image_id", values="score")
        return wide.sort("image_id").select(EMOTIONS).to_numpy()

    medians = truth.pivot(on="emotion_id", index="image_id", values="median_rating").sort("image_id")
    medians = medians.select(EMOTIONS).to_numpy()
    scores = {key: matrix(key) for key in "ab"}
    annotators = annotator_matrices(ratings)
    draws = {k: [] for k in ("a", "b", HUMAN_KEY)}
    for indices in resample_indices(len(images), resamples, seed):
        for row in indices:
            for key in "ab":
                drawn = scores[key][row]
                draws[key].append(np.mean([spearmanr(drawn[:, c], medians[row, c])[0] for c in range(3)]))
            draws[HUMAN_KEY].append(human_ceiling(annotators, row).mean())
    draws = {key: np.array(values) for key, values in draws.items()}
    rows = {r["model_key"]: r for r in board.summary.iter_rows(named=True)}
    for key, reference, name in (("b", "a", "best"), ("a", HUMAN_KEY, "human"), ("b", HUMAN_KEY, "human")):
        difference = draws[key] - draws[reference]
        low, high = percentile_interval(difference)
        row = rows[key]
        assert row[f"diff_vs_{name}"] == pytest.approx(
            row["mean_spearman"] - rows[reference]["mean_spearman"], abs=1e-12
        )
        assert row[f"diff_vs_{name}_ci_low"] == pytest.approx(low, abs=1e-9)
        assert row[f"diff_vs_{name}_ci_high"] == pytest.approx(high, abs=1e-9)
        p = min(1.0, 2 * min((difference <= 0).mean(), (difference >= 0).mean()))
        assert row[f"p_vs_{name}"] == pytest.approx(p)
    assert rows[HUMAN_KEY]["mean_spearman"] == pytest.approx(human_ceiling(annotators, slice(None)).mean(), abs=1e-12)
    low, high = percentile_interval(draws[HUMAN_KEY])
    assert (rows[HUMAN_KEY]["mean_spearman_ci_low"], rows[HUMAN_KEY]["mean_spearman_ci_high"]) == pytest.approx(
        (low, high), abs=1e-9
    )


def test_evaluation_images_are_the_test_split_and_the_declared_collections():
    consensus = pl.DataFrame(
        {
            "collection": ["generated", "generated", "generated", "hq", "other"],
            "scale": ["intensity", "intensity", "binary", "intensity", "intensity"],
            "image_id": ["t1", "tr1", "t1", "hq/1", "other/1"],
            "emotion_id": "joy",
            "median_rating": [1.0, 2.0, 1.0, 3.0, 4.0],
            "present": True,
        }
    )
    splits = pl.DataFrame({"image_sha256": ["t1", "tr1"], "split": ["test", "train"]})
    truth = evaluation_truth(consensus, splits, ["hq"])
    assert truth.select("collection", "image_id").rows() == [("generated", "t1"), ("hq", "hq/1")]


def test_alpha_with_the_model_as_one_more_rater_equals_krippendorff_with_an_extra_coder():
    rng = np.random.default_rng(7)
    rows = []
    for image in range(30):
        truth = rng.integers(0, 8)
        for emotion in EMOTIONS:
            for annotator in range(3):
                value = int(np.clip(truth + rng.integers(-2, 3), 0, 7))
                rows.append(("c", "intensity", emotion, f"img{image:02d}", f"a{annotator}", value))
    columns = ["collection", "scale", "emotion_id", "image_id", "annotator", "value"]
    ratings = pl.DataFrame(rows, schema=columns, orient="row")
    model_scores = ratings.group_by("emotion_id", "image_id").agg(intensity=pl.col("value").mean() + 0.4)
    as_rater = model_scores.select(
        "emotion_id",
        "image_id",
        collection=pl.lit("c"),
        scale=pl.lit("intensity"),
        annotator=pl.lit("model"),
        value=pl.Series(to_scale(model_scores["intensity"].to_numpy())),
    ).select(columns)
    alphas = alpha_with_model(item_statistics(ratings), model_scores)
    with_model = pl.concat([ratings, as_rater])
    for row in alphas.iter_rows(named=True):
        emotion = row["emotion_id"]
        for frame, column in ((ratings, "panel_alpha"), (with_model, "alpha_with_model")):
            expected = krippendorff.alpha(
                reliability_data=reliability_matrix(frame, emotion), level_of_measurement="interval"
            )
            assert row[column] == pytest.approx(expected, abs=1e-9)
    assert (alphas["alpha_with_model"] > alphas["panel_alpha"]).all()


def test_a_rollup_level_scores_each_image_by_its_strongest_member_on_every_side():
    """One rollup with two levels: a model of each level's strongest consensus median is exact at the level, and
    the ceiling is each annotator's strongest member rating against the median of the others' (scipy)."""
    truth, agreement, ratings = planted(n_images=40)
    rollups = pl.DataFrame(
        {"rollup": "mine", "level": ["negative", "negative", "positive"], "emotion_id": ["anger", "fear", "joy"]}
    )
    board = build_leaderboard(
        model("oracle", truth, pl.col("median_rating")),
        registry("oracle"),
        truth,
        agreement,
        ratings,
        50,
        42,
        rollups=rollups,
    )
    assert set(board.summary["rollup"]) == {"emotion", "mine"}
    mine = board.per_level.filter(pl.col("rollup") == "mine")
    oracle = mine.filter(pl.col("model_key") == "oracle")
    # the model's level score is the max of its member scores, i.e. of the member medians: Spearman 1 at each level
    assert oracle.sort("level")["spearman"].to_list() == pytest.approx([1.0, 1.0])
    by_level = (
        ratings.with_columns(
            emotion_id=pl.when(pl.col("emotion_id") == "joy").then(pl.lit("positive")).otherwise(pl.lit("negative"))
        )
        .group_by("collection", "scale", "image_id", "emotion_id", "annotator")
        .agg(pl.col("value").max())
    )
    expected = {}
    for level in ("negative", "positive"):
        wide = (
            by_level.filter(pl.col("emotion_id") == level)
            .pivot(on="annotator", index="image_id", values="value")
            .sort("image_id")
            .select(ANNOTATORS)
            .to_numpy()
            .astype(float)
        )
        expected[level] = np.nanmean(
            [spearmanr(wide[:, a], np.median(np.delete(wide, a, axis=1), axis=1))[0] for a in range(len(ANNOTATORS))]
        )
    human = dict(mine.filter(pl.col("model_key") == HUMAN_KEY).select("level", "spearman").iter_rows())
    assert human == pytest.approx(expected, abs=1e-12)


def test_a_rollup_levels_panel_agreement_and_alpha_with_the_model_equal_sklearn_and_krippendorff():
    """At a rollup's levels each annotator's rating is their strongest member rating: the ceiling's kappa is the
    mean of sklearn's quadratic kappa over annotator pairs, its alpha and a model's alpha as one more rater are
    `krippendorff`'s on those ratings, as they are at the emotion level from dbt's tables."""
    from sklearn.metrics import cohen_kappa_score

    truth, agreement, ratings = planted(n_images=40)
    rollups = pl.DataFrame(
        {"rollup": "mine", "level": ["negative", "negative", "positive"], "emotion_id": ["anger", "fear", "joy"]}
    )
    rng = np.random.default_rng(3)
    noisy = model("noisy", truth, (pl.col("median_rating") + pl.Series(rng.normal(0, 1.5, truth.height))).clip(0, 7))
    board = build_leaderboard(
        noisy,
        registry("noisy"),
        truth,
        agreement,
        ratings,
        20,
        42,
        item_stats=item_statistics(ratings),
        rollups=rollups,
    )
    mine = board.per_level.filter(pl.col("rollup") == "mine")
    level_of = pl.when(pl.col("emotion_id") == "joy").then(pl.lit("positive")).otherwise(pl.lit("negative"))
    by_level = (
        ratings.with_columns(emotion_id=level_of)
        .group_by("image_id", "emotion_id", "annotator")
        .agg(pl.col("value").max())
    )
    scores = noisy.with_columns(emotion_id=level_of).group_by("image_id", "emotion_id").agg(pl.col("score").max())
    as_rater = scores.select(
        "image_id", "emotion_id", annotator=pl.lit("model"), value=to_scale(scores["score"].to_numpy())
    )
    human = mine.filter(pl.col("model_key") == HUMAN_KEY)
    scored = mine.filter(pl.col("model_key") == "noisy")
    for level in ("negative", "positive"):
        wide = by_level.filter(pl.col("emotion_id") == level).pivot(on="annotator", index="image_id", values="value")
        pairs = [(a, b) for i, a in enumerate(ANNOTATORS) for b in ANNOTATORS[i + 1 :]]
        kappas = [cohen_kappa_score(wide[a], wide[b], labels=list(range(8)), weights="quadratic") for a, b in pairs]
        panel = krippendorff.alpha(
            reliability_data=reliability_matrix(by_level, level), level_of_measurement="interval"
        )
        with_model = krippendorff.alpha(
            reliability_data=reliability_matrix(pl.concat([by_level, as_rater], how="vertical_relaxed"), level),
            level_of_measurement="interval",
        )
        ceiling = human.filter(pl.col("level") == level).row(0, named=True)
        assert ceiling["kappa_quadratic"] == pytest.approx(np.mean(kappas), abs=1e-12)
        assert ceiling["panel_alpha"] == pytest.approx(panel, abs=1e-9)
        row = scored.filter(pl.col("level") == level).row(0, named=True)
        assert row["panel_alpha"] == pytest.approx(panel, abs=1e-9)
        assert row["alpha_with_model"] == pytest.approx(with_model, abs=1e-9)
