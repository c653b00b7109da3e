import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import f1_score

from emonet_assets.lib.consensus.agreement import alpha_interval, item_statistics
from emonet_assets.lib.fairness import fairness
from emonet_assets.lib.fairness.fairness import (
    BALANCE_SCHEMA,
    DISPARITY_SCHEMA,
    GROUP_SCHEMA,
    MISSING,
    SINGLE_GROUP,
    agreement_by_group,
    data_balance,
    disparities,
    emotion_by_group,
    fairness_notes,
    gate,
    gate_table,
    group_metrics,
    metric_frame,
)
from emonet_assets.lib.model.evaluation import to_scale
from emonet_assets_tests import reference_bootstrap

EMOTIONS = ["anger", "fear", "joy", "sadness"]
ETHNICITIES = ["group_a", "group_b", "group_c"]
METRICS = ["mean_spearman", "mean_mae", "mean_presence_f1"]


def make_data(n_images=240, noise=0.8, noisy_group=None, seed=0, ethnicities=ETHNICITIES):
    """Consensus medians on the half-point grid, predictions that follow them with `noise`, and demographics drawn
    independently; images of `noisy_group` get predictions unrelated to the face."""
    rng = np.random.default_rng(seed)
    images = [f"img{i:04d}" for i in range(n_images)]
    demographics = pl.DataFrame(
        {
            "image_id": images,
            "age": rng.choice([20, 40, 60], n_images),
            "gender": rng.choice(["man", "woman"], n_images),
            "ethnicity_group": rng.choice(ethnicities, n_images),
        }
    )
    noisy = demographics["ethnicity_group"].to_numpy() == noisy_group
    median = rng.integers(0, 15, (n_images, len(EMOTIONS))) / 2
    predicted = median + rng.normal(0, noise, median.shape)
    predicted[noisy] = rng.uniform(0, 7, (noisy.sum(), len(EMOTIONS)))
    cells = {"image_id": np.repeat(images, len(EMOTIONS)), "emotion_id": np.tile(EMOTIONS, n_images)}
    consensus = pl.DataFrame({**cells, "median_rating": median.ravel(), "present": median.ravel() >= 1})
    predictions = pl.DataFrame({**cells, "predicted": np.clip(predicted, 0, 7).ravel()})
    return predictions, consensus, demographics


def direct_metrics(predictions, consensus, images):
    """The three metrics of one group straight from scipy, sklearn and numpy, emotion by emotion."""
    joined = consensus.join(predictions, on=["image_id", "emotion_id"]).filter(
        pl.col("image_id").is_in(images.implode())
    )
    rho, mae, f1 = [], [], []
    for emotion in EMOTIONS:
        part = joined.filter(pl.col("emotion_id") == emotion)
        p, t = part["predicted"].to_numpy(), part["median_rating"].to_numpy()
        rho.append(spearmanr(p, t).statistic)
        mae.append(np.abs(p - t).mean())
        f1.append(f1_score(part["present"].to_numpy(), to_scale(p) >= 1, zero_division=np.nan))
    return {"mean_spearman": np.nanmean(rho), "mean_mae": np.mean(mae), "mean_presence_f1": np.nanmean(f1)}


def test_metric_frame_values_equal_a_direct_computation_per_group():
    predictions, consensus, demographics = make_data(n_images=150)
    table = group_metrics(predictions, consensus, demographics, min_group_size=10, resamples=20)
    assert table.schema == pl.Schema(GROUP_SCHEMA)
    labels = demographics.with_columns(pl.col("age").cast(pl.String))
    checked = 0
    for attribute, columns in (("gender", ["gender"]), ("age x ethnicity_group", ["age", "ethnicity_group"])):
        for key, part in labels.group_by(columns):
            rows = table.filter(pl.col("attribute") == attribute, pl.col("group") == " x ".join(key))
            assert rows["n_images"].unique().to_list() == [part.height]
            expected = direct_metrics(predictions, consensus, part["image_id"])
            for metric in METRICS:
                value = rows.filter(pl.col("metric") == metric)["value"].item()
                assert value == pytest.approx(expected[metric], abs=1e-12)
                checked += 1
    assert checked == 3 * (2 + 9)
    attributes = table["attribute"].unique(maintain_order=True).to_list()
    assert attributes == [
        "age",
        "gender",
        "ethnicity_group",
        "age x gender",
        "age x ethnicity_group",
        "gender x ethnicity_group",
        "age x gender x ethnicity_group",
    ]


def test_group_values_are_fairlearn_metric_frame_s_for_every_attribute_and_intersection():
    """The report computes each group's values beside its draws; fairlearn's MetricFrame over the same cells is the
    reference, group by group and in its order."""
    predictions, consensus, demographics = make_data(n_images=180, noisy_group="group_a", seed=3)
    table = group_metrics(predictions, consensus, demographics, min_group_size=15, resamples=10)
    compared = 0
    for combination in fairness._combinations(fairness.ATTRIBUTES):
        attribute = " x ".join(combination)
        ours = table.filter(pl.col("attribute") == attribute)
        by_group = metric_frame(predictions, consensus, demographics, list(combination)).by_group
        expected = by_group.dropna(subset=["n_images"])
        groups = [" x ".join(key if isinstance(key, tuple) else (key,)) for key in expected.index]
        assert ours["group"].unique(maintain_order=True).to_list() == groups
        for metric in ["n_images", *METRICS]:
            column = "n_images" if metric == "n_images" else "value"
            values = ours.filter(pl.col("metric") == (METRICS[0] if metric == "n_images" else metric))[column]
            np.testing.assert_array_equal(values.to_numpy(), expected[metric].to_numpy(dtype=float))
            compared += len(groups)
    assert compared == 4 * table.filter(pl.col("metric") == METRICS[0]).height


def test_fairlearn_difference_and_ratio_equal_our_disparities():
    predictions, consensus, demographics = make_data(n_images=240, noisy_group="group_b")
    table = group_metrics(predictions, consensus, demographics, min_group_size=20, resamples=20)
    ours = disparities(table)
    for attributes in (["ethnicity_group"], ["age", "gender"]):
        frame = metric_frame(predictions, consensus, demographics, attributes)
        assert table.filter(pl.col("attribute") == " x ".join(attributes), pl.col("too_small")).is_empty()
        for metric in METRICS:
            row = ours.filter(pl.col("attribute") == " x ".join(attributes), pl.col("metric") == metric).row(
                0, named=True
            )
            assert row["difference"] == pytest.approx(frame.difference()[metric], abs=1e-12)
            assert row["ratio"] == pytest.approx(frame.ratio()[metric], abs=1e-12)
            assert max(row["best_value"], row["worst_value"]) == pytest.approx(frame.group_max()[metric], abs=1e-12)


def test_intervals_bracket_the_value_and_follow_the_seed():
    predictions, consensus, demographics = make_data(n_images=200)
    table = group_metrics(predictions, consensus, demographics, attributes=["gender"], resamples=200, seed=3)
    assert (table["ci_low"] <= table["value"]).all() and (table["value"] <= table["ci_high"]).all()
    assert (table["ci_high"] - table["ci_low"] > 0.005).all()
    again = group_metrics(predictions, consensus, demographics, attributes=["gender"], resamples=200, seed=3)
    other = group_metrics(predictions, consensus, demographics, attributes=["gender"], resamples=200, seed=4)
    assert table.equals(again)
    assert not table["ci_low"].equals(other["ci_low"])


def test_intervals_equal_the_numpy_reference_with_the_draws_made_once(monkeypatch):
    predictions, consensus, demographics = make_data(n_images=260, noisy_group="group_b", seed=7)
    cells = fairness._cells(predictions, consensus, demographics, fairness.ATTRIBUTES)
    cells.truth[3:9, 1] = np.nan  # an emotion some images lack
    groups = fairness._rows_by_group(cells, ["ethnicity_group"])
    draws, original = [], fairness.resample_indices

    def counted(*args):
        draws.append(args)
        return original(*args)

    monkeypatch.setattr(fairness, "resample_indices", counted)
    for rows in groups.values():
        _, ours = fairness._values_and_intervals(cells, rows, 120, 5)
        expected = reference_bootstrap.intervals(cells, rows, 120, 5)
        for metric in METRICS:
            np.testing.assert_allclose(ours[metric], expected[metric], rtol=0, atol=1e-12)
    assert draws == [(rows.size, 120, 5) for rows in groups.values()]


def test_planted_disparity_is_the_worst_group_and_fails_the_gate():
    predictions, consensus, demographics = make_data(n_images=300, noisy_group="group_c")
    table = disparities(group_metrics(predictions, consensus, demographics, resamples=50))
    ethnicity = table.filter(pl.col("attribute") == "ethnicity_group")
    spearman = ethnicity.filter(pl.col("metric") == "mean_spearman").row(0, named=True)
    assert spearman["worst_group"] == "group_c" and spearman["difference"] > 0.6
    mae = ethnicity.filter(pl.col("metric") == "mean_mae").row(0, named=True)
    assert mae["worst_group"] == "group_c" and mae["worst_value"] > mae["best_value"] + 1

    passed, message = gate(ethnicity, "mean_spearman", max_difference=0.1)
    assert not passed
    assert message.startswith("fairness gate failed: mean_spearman differs by")
    assert f"{spearman['difference']:.3f} across ethnicity_group" in message
    assert f"worst group_c {spearman['worst_value']:.3f}" in message
    passed_all, message_all = gate(table, "mean_spearman", max_difference=0.1)
    assert not passed_all and "group_c" in message_all and "also over" in message_all
    passed, message = gate(table, "mean_spearman", max_difference=2.0)
    assert passed and message.startswith("fairness gate passed") and "within 2.000" in message

    gates = gate_table(table, {"mean_spearman": 0.1, "mean_mae": 5.0})
    assert gates["passed"].to_list() == [False, True]
    with pytest.raises(ValueError, match="unknown metric"):
        gate(table, "accuracy", 0.1)


def test_a_gap_tied_with_its_intersections_is_named_by_the_plain_attribute():
    def row(attribute: str, difference: float) -> dict:
        return {"attribute": attribute, "metric": "mean_spearman", "best_group": "b", "worst_group": "w",
                "best_value": 1.0, "worst_value": 1.0 - difference, "difference": difference, "ratio": None,
                "n_groups_ranked": 2, "groups_too_small": [], "note": None}  # fmt: skip

    table = pl.DataFrame(
        [row("age x gender", 2.0), row("gender x ethnicity_group", 2.0), row("gender", 1.9999999999999998)],
        schema=DISPARITY_SCHEMA,
        orient="row",
    )
    passed, message = gate(table, "mean_spearman", max_difference=0.15)
    assert not passed
    assert "differs by 2.000 across gender (" in message
    assert message.endswith("also over: age x gender 2.000, gender x ethnicity_group 2.000")
    wider = pl.concat([table, pl.DataFrame([row("age x gender", 2.5)], schema=DISPARITY_SCHEMA, orient="row")])
    assert "differs by 2.500 across age x gender (" in gate(wider, "mean_spearman", 0.15)[1]


def test_too_small_groups_are_flagged_and_never_ranked():
    predictions, consensus, demographics = make_data(n_images=200, noise=1.0)
    rare = demographics["image_id"].head(6)
    demographics = demographics.with_columns(
        ethnicity_group=pl.when(pl.col("image_id").is_in(rare.implode()))
        .then(pl.lit("rare"))
        .otherwise("ethnicity_group")
    )
    # the rare group's predictions are perfect, so it would be the best group if it were ranked
    predictions = predictions.join(consensus, on=["image_id", "emotion_id"]).select(
        "image_id",
        "emotion_id",
        predicted=pl.when(pl.col("image_id").is_in(rare.implode())).then("median_rating").otherwise("predicted"),
    )
    table = group_metrics(predictions, consensus, demographics, min_group_size=20, resamples=30)
    small = table.filter(pl.col("attribute") == "ethnicity_group", pl.col("group") == "rare")
    assert small["n_images"].unique().to_list() == [6] and small["too_small"].all()
    assert small["ci_low"].is_null().all() and small["ci_high"].is_null().all()
    assert small.filter(pl.col("metric") == "mean_spearman")["value"].item() == pytest.approx(1.0)
    row = disparities(table).filter(pl.col("attribute") == "ethnicity_group", pl.col("metric") == "mean_spearman")
    row = row.row(0, named=True)
    assert row["groups_too_small"] == ["rare"]
    assert row["n_groups_ranked"] == 3 and "rare" not in (row["best_group"], row["worst_group"])
    assert not any("rare" in n for n in fairness_notes(table, disparities(table))), "counted by the report, no note"


def test_single_group_and_missing_values_are_reported_not_dropped():
    predictions, consensus, demographics = make_data(n_images=120)
    row = pl.int_range(pl.len())
    demographics = demographics.with_columns(
        gender=pl.lit("woman"),
        ethnicity_group=pl.when(row < 10).then(None).otherwise("ethnicity_group"),
        age=pl.when(row >= 115).then(None).otherwise("age"),
    )
    table = group_metrics(predictions, consensus, demographics, min_group_size=5, resamples=20)
    gender = table.filter(pl.col("attribute") == "gender")
    assert gender["group"].unique().to_list() == ["woman"]
    missing = table.filter(pl.col("attribute") == "ethnicity_group", pl.col("group") == MISSING)
    assert missing["n_images"].unique().to_list() == [10]
    age_missing = table.filter(pl.col("attribute") == "age", pl.col("group") == MISSING)
    assert age_missing["n_images"].unique().to_list() == [5]
    assert table.filter(pl.col("metric") == "mean_spearman", pl.col("attribute") == "age")["n_images"].sum() == 120

    found = disparities(table)
    gender_rows = found.filter(pl.col("attribute") == "gender")
    assert gender_rows["note"].to_list() == [SINGLE_GROUP] * 3 and gender_rows["difference"].is_null().all()
    notes = fairness_notes(table, found)
    assert f"gender: {SINGLE_GROUP}" in notes
    assert f"ethnicity_group: 10 images lack a value, reported as group '{MISSING}'" in notes
    assert gate(found.filter(pl.col("attribute") == "gender"), "mean_spearman", 0.1)[0]


def test_empty_predictions_give_empty_tables_and_a_note():
    _, consensus, demographics = make_data(n_images=30)
    empty = pl.DataFrame(schema={"image_id": pl.String, "emotion_id": pl.String, "predicted": pl.Float64})
    table = group_metrics(empty, consensus, demographics)
    assert table.is_empty() and table.schema == pl.Schema(GROUP_SCHEMA)
    found = disparities(table)
    assert found.is_empty() and found.schema == pl.Schema(DISPARITY_SCHEMA)
    assert emotion_by_group(empty, consensus, demographics).is_empty()
    assert fairness_notes(table, found) == [
        "no test predictions joined to consensus: no group metrics or disparities, so gates compare nothing"
    ]
    passed, message = gate(found, "mean_spearman", 0.1)
    assert passed and "nothing to gate" in message
    with pytest.raises(ValueError, match="no predictions joined"):
        metric_frame(empty, consensus, demographics, ["gender"])


def test_emotion_by_group_equals_scipy_and_shows_the_noisy_group():
    predictions, consensus, demographics = make_data(n_images=150, noisy_group="group_a")
    table = emotion_by_group(predictions, consensus, demographics)
    assert table.height == len(EMOTIONS) * len(ETHNICITIES)
    joined = consensus.join(predictions, on=["image_id", "emotion_id"]).join(demographics, on="image_id")
    for row in table.iter_rows(named=True):
        part = joined.filter(pl.col("emotion_id") == row["emotion_id"], pl.col("ethnicity_group") == row["group"])
        assert row["n_images"] == part.height
        expected = spearmanr(part["predicted"], part["median_rating"]).statistic
        assert row["spearman"] == pytest.approx(expected, abs=1e-12)
    by_group = table.group_by("group").agg(pl.col("spearman").mean()).sort("spearman")
    assert by_group["group"][0] == "group_a"


def test_data_balance_counts_qc_and_splits_per_group():
    demographics = pl.DataFrame(
        {
            "image_id": ["a", "b", "c", "d", "e"],
            "age": [20, 20, 40, 40, None],
            "gender": ["man", "woman", "man", "woman", "man"],
            "ethnicity_group": ["x", "x", "y", "y", "y"],
        }
    )
    qc = pl.DataFrame(
        {"image_sha256": ["a", "b", "c", "d", "e", "f"], "passed": [True, False, True, True, True, False]}
    )
    splits = pl.DataFrame(
        {"image_sha256": ["a", "c", "d", "e"], "split": ["train", "train", "test", "validation"]}
    ).join(demographics.rename({"image_id": "image_sha256"}), on="image_sha256")
    table = data_balance(splits, qc, demographics)
    assert table.schema == pl.Schema(BALANCE_SCHEMA)
    rows = {(r["attribute"], r["group"]): r for r in table.iter_rows(named=True)}
    assert rows[("age", "20")] == {
        "attribute": "age",
        "group": "20",
        "n_generated": 2,
        "qc_passed": 1,
        "qc_pass_share": 0.5,
        "train": 1,
        "validation": 0,
        "test": 0,
    }
    assert (rows[("age", MISSING)]["n_generated"], rows[("age", MISSING)]["validation"]) == (2, 1)
    assert rows[("ethnicity_group", "y")]["qc_pass_share"] == 1.0
    assert (rows[("ethnicity_group", "y")]["train"], rows[("ethnicity_group", "y")]["test"]) == (1, 1)
    for attribute in ("age", "gender", "ethnicity_group"):
        per = table.filter(pl.col("attribute") == attribute)
        assert per["n_generated"].sum() == 6 and per["qc_passed"].sum() == 4
        assert per.select("train", "validation", "test").sum().row(0) == (2, 1, 1)


def simulated_ratings(n_images=80, raters=4, seed=0):
    """Intensity ratings whose noise depends on the image's ethnicity group: group_b's faces are harder to read."""
    rng = np.random.default_rng(seed)
    _, _, demographics = make_data(n_images=n_images, seed=seed, ethnicities=["group_a", "group_b"])
    noise = np.where(demographics["ethnicity_group"].to_numpy() == "group_b", 2.5, 0.5)
    rows = []
    for i, image in enumerate(demographics["image_id"]):
        for emotion in EMOTIONS:
            true = rng.uniform(0, 7)
            values = np.clip(np.rint(true + rng.normal(0, noise[i], raters)), 0, 7).astype(int)
            rows += [("generated", "intensity", image, f"r{k}", emotion, int(v)) for k, v in enumerate(values)]
    schema = ["collection", "scale", "image_id", "annotator", "emotion_id", "value"]
    return pl.DataFrame(rows, schema=schema, orient="row"), demographics


def test_agreement_by_group_is_lower_for_the_noisier_group():
    ratings, demographics = simulated_ratings()
    table = agreement_by_group(
        item_statistics(ratings), demographics, min_group_size=30, attributes=["ethnicity_group", "gender"]
    )
    ethnicity = {r["group"]: r for r in table.filter(pl.col("attribute") == "ethnicity_group").iter_rows(named=True)}
    assert ethnicity["group_a"]["alpha_interval"] > ethnicity["group_b"]["alpha_interval"] + 0.3
    for group, row in ethnicity.items():
        images = demographics.filter(pl.col("ethnicity_group") == group)["image_id"]
        stats = item_statistics(ratings.filter(pl.col("image_id").is_in(images.implode())))
        assert row["alpha_interval"] == pytest.approx(alpha_interval(stats), abs=1e-12)
        assert (row["n_images"], row["n_items"]) == (images.len(), images.len() * len(EMOTIONS))
        assert row["too_small"] == (images.len() < 30)
    assert table.filter(pl.col("attribute") == "gender")["n_images"].sum() == 80


def agreement_by_group_in_polars(item_table, demographics, min_group_size, attributes):
    """agreement_by_group as it was: the item statistics in polars, labelled, each group's alpha from its rows."""
    stats = fairness._labelled(item_table, "image_id", demographics, attributes)
    records = []
    for attribute in attributes:
        for (collection, scale, group), part in stats.group_by("collection", "scale", attribute):
            n_images = part["image_id"].n_unique()
            records.append(
                (
                    collection,
                    scale,
                    attribute,
                    group,
                    n_images,
                    part.height,
                    alpha_interval(part),
                    n_images < min_group_size,
                )
            )
    schema = ["collection", "scale", "attribute", "group", "n_images", "n_items", "alpha_interval", "too_small"]
    return pl.DataFrame(records, schema=schema, orient="row").sort("collection", "scale", "attribute", "group")


def test_agreement_by_group_in_sql_equals_the_polars_path_and_krippendorff():
    """Two collections, images without demographics (the missing group), items with two to four ratings."""
    import krippendorff

    ratings, demographics = simulated_ratings(n_images=90, seed=3)
    thinned = ratings.filter((pl.col("annotator") != "r3") | (pl.col("image_id").str.slice(-1) < "5"))
    other = thinned.with_columns(collection=pl.lit("other")).filter(pl.col("annotator") != "r2")
    items = item_statistics(pl.concat([thinned, other]))
    known = demographics.filter(pl.int_range(pl.len()) >= 7)

    table = agreement_by_group(items, known, min_group_size=30)
    expected = agreement_by_group_in_polars(items, known, 30, fairness.ATTRIBUTES)

    assert table.drop("alpha_interval").equals(expected.drop("alpha_interval"))
    np.testing.assert_allclose(table["alpha_interval"], expected["alpha_interval"], rtol=0, atol=1e-12)
    assert table.filter(pl.col("group") == MISSING)["n_images"].unique().to_list() == [7]
    row = table.filter(pl.col("collection") == "other", pl.col("group") == "man").row(0, named=True)
    images = known.filter(pl.col("gender") == "man")["image_id"]
    part = other.filter(pl.col("image_id").is_in(images.implode()))
    matrix = part.with_columns(item=pl.concat_str("image_id", "emotion_id")).pivot(
        "item", index="annotator", values="value"
    )
    reference = krippendorff.alpha(matrix.drop("annotator").to_numpy().astype(float), level_of_measurement="interval")
    assert row["alpha_interval"] == pytest.approx(reference, abs=1e-12)
