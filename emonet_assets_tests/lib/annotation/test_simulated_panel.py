import ast
import json

import numpy as np
import polars as pl
import pytest

from emonet_assets.lib.annotation.simulated_panel import (
    PERCEPTION,
    PanelSpec,
    ground_truth,
    perceive,
    perceived_truth,
    simulate_ratings,
    write_hq_csv,
    write_label_studio_json,
    write_long_csv,
    write_panel,
)
from emonet_assets.lib.consensus.agreement import alpha_interval, item_statistics
from emonet_assets.lib.shared.rules import INTENSITY_MAX

IMAGES = [f"images/face-{k:03d}.png" for k in range(30)]
EMOTIONS = ["Amusement", "Anger", "Fear", "Sadness"]
EXTRA = {"Extra Dimensions|Arousal", "Extra Dimensions|Valence"}


@pytest.fixture
def ratings():
    spec = PanelSpec(missing=0.2)
    return simulate_ratings(ground_truth(IMAGES, EMOTIONS, spec), spec)


def test_panel_files_are_identical_for_a_seed_and_differ_across_seeds(tmp_path):
    first = write_panel(IMAGES, EMOTIONS, tmp_path / "a")
    again = write_panel(IMAGES, EMOTIONS, tmp_path / "b")
    other = write_panel(IMAGES, EMOTIONS, tmp_path / "c", PanelSpec(seed=8))
    assert set(first) == {"long_intensity", "long_binary", "hq", "label_studio"}
    for kind, path in first.items():
        assert path.parent == tmp_path / "a"
        assert path.read_bytes() == again[kind].read_bytes()
        assert path.read_bytes() != other[kind].read_bytes()


def test_ground_truth_marks_a_share_present_with_intensities_one_to_seven():
    truth = ground_truth([f"i{k}" for k in range(500)], EMOTIONS, PanelSpec(present_share=0.3))
    assert truth.schema == pl.Schema({"image_ref": pl.String, "emotion": pl.String, "intensity": pl.Int32})
    assert truth.height == 2000
    present = truth.filter(pl.col("intensity") > 0)["intensity"]
    assert present.min() == 1 and present.max() == 7
    assert present.len() / truth.height == pytest.approx(0.3, abs=0.03)


def test_ratings_drop_missing_and_stay_on_the_scale(ratings):
    assert ratings.schema == pl.Schema(
        {"image_ref": pl.String, "annotator": pl.String, "emotion": pl.String, "value": pl.Int32}
    )
    assert sorted(ratings["annotator"].unique()) == ["expert-1", "expert-2", "expert-3", "expert-4"]
    assert ratings["value"].min() >= 0 and ratings["value"].max() <= 7
    assert ratings.height / (len(IMAGES) * len(EMOTIONS) * 4) == pytest.approx(0.8, abs=0.06)
    assert not ratings.is_duplicated().any()


def test_long_csvs_read_back_to_the_ratings(ratings, tmp_path):
    write_long_csv(ratings, tmp_path / "long.csv")
    write_long_csv(ratings, tmp_path / "binary.csv", binary=True)
    long = pl.read_csv(tmp_path / "long.csv")
    binary = pl.read_csv(tmp_path / "binary.csv", infer_schema=False)
    assert long.columns == binary.columns == ["path", "annotator", "value", "emotion"]
    assert long["path"].to_list() == ratings["image_ref"].to_list()
    assert long["value"].to_list() == ratings["value"].to_list()
    assert binary["value"].to_list() == ["True" if v >= 1 else "False" for v in ratings["value"]]


def test_hq_csv_holds_one_dict_per_image_and_annotator(ratings, tmp_path):
    write_hq_csv(ratings, tmp_path / "hq.csv")
    hq = pl.read_csv(tmp_path / "hq.csv", infer_schema=False)
    assert hq.columns == ["image", "annotator", "human", "annotations"]
    assert hq.height == ratings.select("image_ref", "annotator").n_unique()
    assert (hq["human"] == "True").all()
    recovered = []
    for image, annotator, annotations in hq.select("image", "annotator", "annotations").iter_rows():
        scores = ast.literal_eval(annotations)
        assert set(scores) >= EXTRA and set(scores) - EXTRA <= set(EMOTIONS)
        assert 0 <= scores["Extra Dimensions|Arousal"] <= 7
        assert -3 <= scores["Extra Dimensions|Valence"] <= 3
        recovered += [(image, annotator, e, v) for e, v in scores.items() if e not in EXTRA]
    expected = ratings.select("image_ref", "annotator", "emotion", "value").rows()
    assert sorted(recovered) == sorted(expected)


def test_label_studio_export_maps_back_to_the_ratings(ratings, tmp_path):
    write_label_studio_json(ratings, tmp_path / "ls.json", image_url=lambda ref: f"s3://bucket/{ref}")
    tasks = json.loads((tmp_path / "ls.json").read_text())
    assert len(tasks) == ratings["image_ref"].n_unique()
    assert len({task["id"] for task in tasks}) == len(tasks)
    recovered = []
    ids = {}
    for task in tasks:
        ref = task["data"]["image_ref"]
        assert task["data"]["image"] == f"s3://bucket/{ref}"
        for annotation in task["annotations"]:
            assert annotation["was_cancelled"] is False and annotation["lead_time"] == 30.0
            annotator = annotation["completed_by"]["email"]
            ids.setdefault(annotator, annotation["completed_by"]["id"])
            assert ids[annotator] == annotation["completed_by"]["id"]
            for result in annotation["result"]:
                assert (result["to_name"], result["type"]) == ("image", "number")
                recovered.append((ref, annotator, result["from_name"], result["value"]["number"]))
    assert sorted(recovered) == sorted(ratings.select("image_ref", "annotator", "emotion", "value").rows())
    assert sorted(ids) == ["expert-1", "expert-2", "expert-3", "expert-4"]
    assert len(set(ids.values())) == 4


def test_median_of_the_panel_recovers_the_truth():
    spec = PanelSpec(noise=0.5, bias_sd=0.2)
    truth = ground_truth([f"i{k}" for k in range(200)], EMOTIONS, spec)
    median = simulate_ratings(truth, spec).group_by("image_ref", "emotion").agg(median=pl.col("value").median())
    joined = truth.join(median, on=["image_ref", "emotion"])
    assert joined.height > 0.99 * truth.height
    assert (joined["median"] - joined["intensity"]).abs().mean() < 0.5


def test_agreement_falls_as_noise_rises():
    images = [f"i{k}" for k in range(200)]
    emotions = ["Amusement", "Anger", "Fear", "Sadness", "Pride"]
    alphas = []
    for noise in (0.25, 1, 2, 4):
        spec = PanelSpec(noise=noise)
        ratings = simulate_ratings(ground_truth(images, emotions, spec), spec)
        stats = item_statistics(
            ratings.select(
                collection=pl.lit("sim"),
                scale=pl.lit("intensity"),
                emotion_id="emotion",
                image_id="image_ref",
                annotator="annotator",
                value="value",
            )
        )
        alphas.append([alpha_interval(stats.filter(pl.col("emotion_id") == emotion)) for emotion in emotions])
    assert (np.diff(alphas, axis=0) < 0).all(), alphas
    assert min(alphas[0]) > 0.9


def features(n_images=40, dim=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n_images, dim))


def test_perception_is_a_fixed_function_of_the_features():
    seen = features()
    expected = perceive(seen, len(EMOTIONS), PanelSpec())
    assert expected.shape == (40, len(EMOTIONS))
    assert ((expected > 0) & (expected < INTENSITY_MAX)).all()
    np.testing.assert_array_equal(perceive(seen.copy(), len(EMOTIONS), PanelSpec()), expected)
    assert not np.allclose(perceive(seen, len(EMOTIONS), PanelSpec(seed=8)), expected)
    changed = seen.copy()
    changed[0] = -changed[0]
    moved = perceive(changed, len(EMOTIONS), PanelSpec())
    assert np.abs(moved[0] - expected[0]).max() > 0.5, "an image that looks different is rated differently"
    assert not np.allclose(expected[1:], expected[1])


def test_perception_rates_most_emotions_faint_and_some_strong():
    expected = perceive(features(n_images=500), 20, PanelSpec())
    assert np.mean(expected < 2) > 0.5
    assert np.mean(expected > 5) > 0.05
    assert (expected.std(axis=0) > 1).all(), "every emotion is rated differently across images"


def test_the_panel_rates_around_what_it_perceives():
    refs = [f"i{k}" for k in range(200)]
    spec = PanelSpec(noise=0.5, bias_sd=0.2)
    truth = perceived_truth(refs, features(n_images=200), EMOTIONS, spec)
    assert truth.schema == pl.Schema({"image_ref": pl.String, "emotion": pl.String, "intensity": pl.Float64})
    assert truth["image_ref"].to_list()[: len(EMOTIONS) + 1] == ["i0"] * len(EMOTIONS) + ["i1"]
    mean = simulate_ratings(truth, spec).group_by("image_ref", "emotion").agg(mean=pl.col("value").mean())
    joined = truth.join(mean, on=["image_ref", "emotion"])
    assert np.corrcoef(joined["intensity"], joined["mean"])[0, 1] > 0.9


def test_perception_refuses_features_that_do_not_match_the_images():
    with pytest.raises(ValueError, match="3 image references but 40 rows of features"):
        perceived_truth(["a", "b", "c"], features(), EMOTIONS, PanelSpec())


def test_the_panel_metadata_says_the_ratings_are_simulated_and_how():
    metadata = PanelSpec().metadata()
    assert metadata["raters"].startswith("simulated")
    assert metadata["perception"] == PERCEPTION and "embedding" in PERCEPTION
    assert {"annotators", "noise", "bias_sd", "seed", "gain", "threshold"} <= set(metadata)
