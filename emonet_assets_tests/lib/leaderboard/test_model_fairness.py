import numpy as np
import polars as pl

from emonet_assets.lib.leaderboard.model_fairness import ROBUSTNESS, model_fairness


def test_each_model_gets_the_fairness_gates_and_a_planted_disparity_fails_only_its_own():
    rng = np.random.default_rng(0)
    images = [f"img{i:03d}" for i in range(60)]
    slices = pl.DataFrame(
        {
            "image_id": images,
            "age": "30",
            "gender": ["man" if i % 2 else "woman" for i in range(60)],
            "ethnicity_group": "White",
            **{axis: "none" for axis in ROBUSTNESS},
        }
    )
    medians = rng.integers(0, 8, (60, 2)).astype(float)
    consensus = pl.DataFrame(
        {
            "image_id": np.repeat(images, 2),
            "emotion_id": ["anger", "joy"] * 60,
            "median_rating": medians.ravel(),
            "present": medians.ravel() >= 1,
        }
    )
    exact = consensus.select("image_id", "emotion_id", score="median_rating")
    inverted = exact.join(slices.select("image_id", "gender"), on="image_id").select(
        "image_id",
        "emotion_id",
        score=pl.when(pl.col("gender") == "man").then(7 - pl.col("score")).otherwise("score"),
    )
    predictions = pl.concat(
        [
            frame.with_columns(model_key=pl.lit(key), collection=pl.lit("generated"), intensity=pl.col("score"))
            for key, frame in (("exact", exact), ("biased", inverted))
        ]
    )
    limits = {"mean_mae": 0.5}
    report = model_fairness(predictions, ["exact", "biased", "absent"], consensus, slices, limits, 10, 100, 42)
    gates = {r["model_key"]: r for r in report.gates.iter_rows(named=True)}
    assert set(gates) == {"exact", "biased"}
    assert gates["exact"]["passed"] and not gates["biased"]["passed"]
    assert "across gender" in gates["biased"]["message"] and "worst man" in gates["biased"]["message"]
    attributes = set(report.gaps.filter(pl.col("model_key") == "biased")["attribute"])
    assert {"gender", "age x gender", *ROBUSTNESS} <= attributes


def test_a_model_of_ranks_only_is_judged_by_its_spearman_gaps_alone():
    images = [f"img{i:03d}" for i in range(20)]
    slices = pl.DataFrame(
        {"image_id": images, "age": "30", "gender": "man", "ethnicity_group": "White", **dict.fromkeys(ROBUSTNESS, "x")}
    )
    consensus = pl.DataFrame(
        {
            "image_id": images * 2,
            "emotion_id": ["joy"] * 20 + ["fear"] * 20,
            "median_rating": [float(i % 8) for i in range(40)],
            "present": True,
        }
    )
    ranks = consensus.select(
        "image_id", "emotion_id", model_key=pl.lit("z"), collection=pl.lit("generated"), score=pl.col("median_rating")
    ).with_columns(intensity=pl.lit(None, pl.Float64))
    limits = {"mean_spearman": 0.4, "mean_mae": 0.5}
    report = model_fairness(ranks, ["z"], consensus, slices, limits, 5, 50, 42)
    assert report.gates["metric"].to_list() == ["mean_spearman"]
    assert set(report.groups["metric"]) == {"mean_spearman"}
