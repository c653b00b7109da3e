"""The leaderboard on the tiny graph, with planted models whose standing follows from how they were built: the
consensus median itself, the median shuffled across images, the median plus noise, and a constant."""

import io
import json

import dagster as dg
import numpy as np
import polars as pl
import pytest

from emonet_assets.definitions import build_definitions
from emonet_assets.lib.leaderboard.leaderboard import build_leaderboard, evaluation_truth, panel_agreement
from emonet_assets.lib.leaderboard.registry import PredictionsDeclaration, land_predictions, model_key
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy
from emonet_assets.profiles import VlmSettings
from emonet_assets.runner import materialize_step, run_sensor, tick_sensor
from emonet_assets_tests.defs.conftest import tiny_profile
from emonet_assets_tests.local_servers import ChatServer, serving

SCORE_COLUMNS = {"model_key": pl.String, "image_id": pl.String, "emotion_id": pl.String, "score": pl.Float64}
REGISTRY_COLUMNS = {"model_key": pl.String, "name": pl.String, "kind": pl.String}


def plant(store: Store, landing: str) -> dict[str, str]:
    """Four predictions files over every rated generated image (so the test split is covered whatever it holds);
    returns each model's key."""
    medians = store.read_table("consensus_labels").filter(
        (pl.col("collection") == "generated") & (pl.col("scale") == "intensity")
    )
    rng = np.random.default_rng(0)
    wide = medians.pivot(on="emotion_id", index="image_id", values="median_rating").rename({"image_id": "image_sha256"})
    oracle = pl.concat([wide, wide.head(1).with_columns(image_sha256=pl.lit("no-such-image"))])
    shuffled = medians.with_columns(pl.col("median_rating").shuffle(seed=1).over("emotion_id"))
    noisy = medians.with_columns(
        (pl.col("median_rating") + pl.Series(rng.normal(0, 2.0, medians.height))).clip(0, 7) / 7
    )
    constant = wide.select("image_sha256", *(pl.lit(3.0).alias(c) for c in wide.columns[1:]))
    parquet = io.BytesIO()
    constant.write_parquet(parquet)
    files = {
        "oracle": ("oracle.csv", oracle.write_csv().encode(), "0-7"),
        "shuffled": (
            "shuffled.jsonl",
            shuffled.select(image="image_id", emotion="emotion_id", score="median_rating").write_ndjson().encode(),
            "0-7",
        ),
        "noisy": (
            "noisy.csv",
            noisy.select(image="image_id", emotion="emotion_id", score="median_rating").write_csv().encode(),
            "0-1",
        ),
        "constant": ("constant.parquet", parquet.getvalue(), "0-7"),
    }
    keys = {}
    for name, (file_name, data, scale) in files.items():
        sha = land_predictions(store, landing, file_name, data, PredictionsDeclaration(name=name, scale=scale))
        keys[name] = model_key(name, sha)
    return keys


def test_planted_models_stand_where_they_were_built_to(root_copy):
    profile = tiny_profile(root_copy)
    store = Store(str(root_copy))
    keys = plant(store, profile.leaderboard.landing)
    defs = build_definitions(profile)
    instance = dg.DagsterInstance.ephemeral()
    reports = run_sensor(defs, instance, "predictions_landing_sensor")
    assert len(reports) == 4 and all(r.success for r in reports)
    cursor = tick_sensor(defs, instance, "predictions_landing_sensor").cursor
    assert not tick_sensor(defs, instance, "predictions_landing_sensor", cursor).run_requests
    partitions = instance.get_dynamic_partitions("model_versions")
    heads = [k for k in partitions if k.startswith("emotion-model@")]
    [zero_shot] = [k for k in partitions if k.startswith("zero-shot-tiny@")]
    assert set(keys.values()) | {*heads, zero_shot} == set(partitions) and heads
    for partition in partitions:
        report = materialize_step(defs, instance, [dg.AssetKey("model_predictions")], partition=partition)
        assert report.success, report.error
    report = materialize_step(defs, instance, [dg.AssetKey("model_leaderboard")])
    assert report.success, report.error

    rejects = store.read_table("model_prediction_rejects", [keys["oracle"]])
    assert rejects.height == 40 and set(rejects["reason"]) == {"unknown_image"}
    oracle = store.read_table("model_predictions", [keys["oracle"]])
    assert oracle["image_sha256"].null_count() == 0 and oracle["prompt_id"].null_count() == 0

    everything = store.read_table("model_leaderboard").filter(pl.col("collection") == "generated")
    assert set(everything["rollup"]) == {"emotion", "group", "valence", *profile.taxonomy.rollups}
    for (rollup,), part in everything.group_by("rollup"):
        oracle = part.filter(pl.col("model_key") == keys["oracle"]).row(0, named=True)
        assert oracle["rank"] == 1 and oracle["mean_spearman"] == pytest.approx(1.0), rollup
        ceiling = part.filter(pl.col("model_key") == "human ceiling").row(0, named=True)
        panel = [oracle["mean_panel_alpha"], oracle["mean_alpha_with_model"], ceiling["mean_panel_alpha"]]
        assert np.isfinite(np.array([*panel, ceiling["mean_kappa_quadratic"]], dtype=float)).all(), rollup
    board = everything.filter(pl.col("rollup") == "emotion")
    rows = {r["model_key"]: r for r in board.iter_rows(named=True)}
    best, human, random = rows[keys["oracle"]], rows["human ceiling"], rows["random baseline"]
    assert best["rank"] == 1 and best["mean_spearman"] == pytest.approx(1.0) and best["coverage"] == 1.0
    assert best["mean_spearman"] > human["mean_spearman"] and best["diff_vs_human_ci_low"] > 0
    assert best["p_vs_human"] < 0.05 and human["mean_spearman_ci_low"] < human["mean_spearman"]
    assert random["diff_vs_human_ci_high"] < 0
    noisy, shuffled = rows[keys["noisy"]], rows[keys["shuffled"]]
    assert shuffled["mean_spearman"] < noisy["mean_spearman"] < best["mean_spearman"]
    assert abs(shuffled["mean_spearman"] - random["mean_spearman"]) < 0.2
    assert noisy["rank"] < shuffled["rank"] and noisy["p_vs_best"] < 0.05
    constant = rows[keys["constant"]]
    assert constant["rank"] is None and "constant scores" in constant["note"]
    assert rows[heads[0]]["rank"] is not None
    assert rows[zero_shot]["coverage"] == 1.0 and np.isnan(rows[zero_shot]["mean_kappa_quadratic"])
    for chart in ("forest", "heatmap"):
        assert (root_copy / f"reports/leaderboard/{chart}.png").read_bytes().startswith(b"\x89PNG")
    event = instance.get_latest_materialization_event(dg.AssetKey("model_leaderboard"))
    metadata = event.asset_materialization.metadata
    assert metadata["heatmap"].value.startswith("![heatmap](data:image/png;base64,")
    levels = store.read_table("model_leaderboard_emotions").filter(pl.col("collection") == "generated")
    assert levels.filter(pl.col("rollup") == "emotion")["level"].n_unique() == 40
    assert levels.filter(pl.col("rollup") == "group")["level"].n_unique() == 7

    report = materialize_step(defs, instance, [dg.AssetKey("model_fairness_gates")])
    assert report.success, report.error
    gates = store.read_table("model_fairness_gates")
    assert set(gates["model_key"]) == set(partitions)
    assert gates.filter(pl.col("model_key") == keys["oracle"])["passed"].all()


def test_a_vlm_endpoint_is_registered_scored_from_its_answers_and_ranked(root_copy, monkeypatch):
    """A fake endpoint that answers each image's rounded consensus median, except one image it rates only in part:
    that image is recorded missing, the rest rank the VLM near the top; a second scoring asks only that image."""
    store = Store(str(root_copy))
    medians = store.read_table("consensus_labels").filter(
        (pl.col("collection") == "generated") & (pl.col("scale") == "intensity")
    )
    names = {e.id: e.name for e in load_taxonomy().emotions}
    answers = {
        image: json.dumps(
            {names[e]: round(m) for e, m in zip(group["emotion_id"], group["median_rating"], strict=True)}
        )
        for (image,), group in medians.group_by("image_id")
    }
    truth = evaluation_truth(store.read_table("consensus_labels"), store.read_table("splits"), [])
    test_images = sorted(truth.filter(pl.col("collection") == "generated")["image_id"].unique())
    partial = test_images[0]
    answers[partial] = json.dumps(dict(list(json.loads(answers[partial]).items())[:20]))
    monkeypatch.setenv("EMONET_TEST_VLM_KEY", "sk-test")
    with serving(ChatServer(lambda sha: (200, answers.get(sha, "{}")), api_key="sk-test")) as server:
        vlm = VlmSettings(
            name="fake-vlm", base_url=server.base_url, model="fake/vl", api_key_env="EMONET_TEST_VLM_KEY", max_retries=1
        )
        profile = tiny_profile(root_copy)
        profile = profile.model_copy(update={"leaderboard": profile.leaderboard.model_copy(update={"vlm": [vlm]})})
        defs, instance = build_definitions(profile), dg.DagsterInstance.ephemeral()
        report = materialize_step(defs, instance, [dg.AssetKey("model_registry")])
        assert report.success, report.error
        [key] = [k for k in instance.get_dynamic_partitions("model_versions") if k.startswith("fake-vlm@")]
        assert not server.requests
        for _ in range(2):
            report = materialize_step(defs, instance, [dg.AssetKey("model_predictions")], partition=key)
            assert report.success, report.error
        sent = len(server.requests)
    event = instance.get_latest_materialization_event(dg.AssetKey("model_predictions"))
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    scored = len(test_images) - 1
    # the second run asks only the image without a valid answer again (twice: max_retries=1)
    assert metadata["requests_sent"] == 2 and metadata["images_cached"] == scored
    assert metadata["images_vlm_invalid_answer"] == 1 and sent == scored + 2 + 2
    rejects = store.read_table("model_prediction_rejects", [key])
    assert rejects.select("image_ref", "reason").rows() == [(partial, "vlm_invalid_answer")]
    predictions = store.read_table("model_predictions", [key])
    assert predictions["image_sha256"].n_unique() == scored and predictions["prompt_hash"].null_count() == 0

    report = materialize_step(defs, instance, [dg.AssetKey("model_leaderboard")])
    assert report.success, report.error
    board = store.read_table("model_leaderboard").filter(
        (pl.col("collection") == "generated") & (pl.col("rollup") == "emotion")
    )
    row = board.filter(pl.col("model_key") == key).row(0, named=True)
    assert row["kind"] == "vlm" and row["rank"] is not None and row["mean_spearman"] > 0.8
    generated = truth.filter(pl.col("collection") == "generated")
    assert row["coverage"] == pytest.approx(generated.filter(pl.col("image_id") != partial).height / generated.height)


def test_the_human_ceiling_on_a_whole_collection_is_dbts(materialized_root):
    """The leaderboard recomputes the ceiling from the annotations on its own images; on every rated generated image
    it is emotion_agreement's human_ceiling_spearman, emotion by emotion (both from the same run's ratings)."""
    store = Store(str(materialized_root))
    consensus = store.read_table("consensus_labels").filter(
        (pl.col("collection") == "generated") & (pl.col("scale") == "intensity")
    )
    truth = consensus.select(
        "collection", "image_id", "emotion_id", pl.col("median_rating").cast(pl.Float64), "present"
    ).drop_nulls("median_rating")
    agreement = store.read_table("emotion_agreement").filter(
        (pl.col("collection") == "generated") & (pl.col("scale") == "intensity")
    )
    board = build_leaderboard(
        pl.DataFrame(schema=SCORE_COLUMNS),
        pl.DataFrame(schema=REGISTRY_COLUMNS),
        truth,
        agreement,
        store.read_table("annotations"),
        resamples=10,
    )
    human = board.per_level.filter(pl.col("model_key") == "human ceiling").select("level", "spearman")
    expected = agreement.select(level="emotion_id", expected=pl.col("human_ceiling_spearman").cast(pl.Float64))
    joined = human.join(expected, on="level")
    assert joined.height == 40
    assert joined["spearman"].fill_nan(None).to_list() == pytest.approx(joined["expected"].to_list(), abs=1e-12)


def test_the_panels_agreement_computed_in_python_is_dbts_emotion_agreement(materialized_root):
    """What a rollup level's kappa and alpha are computed with (each annotator's strongest member rating, which dbt
    does not hold) gives dbt's own numbers when the levels are the emotions."""
    store = Store(str(materialized_root))
    ratings = store.read_table("annotations").filter(
        (pl.col("collection") == "generated") & (pl.col("scale") == "intensity")
    )
    ours = panel_agreement(ratings, tiny_profile(materialized_root).annotation.min_pair_items)
    dbt = (
        store.read_table("emotion_agreement")
        .filter((pl.col("collection") == "generated") & (pl.col("scale") == "intensity"))
        .select("emotion_id", "kappa_quadratic_mean", "alpha_interval")
        .sort("emotion_id")
    )
    assert ours["emotion_id"].to_list() == dbt["emotion_id"].to_list() and ours.height == 40
    for column in ("kappa_quadratic_mean", "alpha_interval"):
        assert ours[column].null_count() == dbt[column].null_count() == 0
        np.testing.assert_allclose(ours[column].to_numpy(), dbt[column].to_numpy(), rtol=0, atol=1e-12)
