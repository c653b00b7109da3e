import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from emonet_assets.lib.leaderboard.binary import POOLED, binary_metrics, binary_truth


def test_a_binary_collection_scored_from_a_predictions_file_gives_sklearns_roc_auc():
    rng = np.random.default_rng(3)
    n = 50
    truth = pl.DataFrame(
        {
            "collection": "binary-set",
            "image_id": np.repeat([f"binary-set/{i:05d}" for i in range(n)], 2),
            "emotion_id": ["joy", "fear"] * n,
            "present": rng.random(2 * n) < 0.4,
        }
    )
    score = truth["present"].cast(pl.Float64).to_numpy() + rng.normal(0, 0.8, 2 * n)
    predictions = truth.select("image_id", "emotion_id", model_key=pl.lit("m"), score=score, intensity=score * 7)
    table = binary_metrics(predictions.head(2 * n - 1), truth, ["m"])
    rows = {r["emotion_id"]: r for r in table.iter_rows(named=True)}
    pooled = truth.head(2 * n - 1)
    assert rows[POOLED]["roc_auc"] == pytest.approx(roc_auc_score(pooled["present"], score[: 2 * n - 1]))
    joy = truth.with_columns(score=score).head(2 * n - 1).filter(pl.col("emotion_id") == "joy")
    assert rows["joy"]["roc_auc"] == pytest.approx(roc_auc_score(joy["present"], joy["score"]))
    assert rows[POOLED]["coverage"] == pytest.approx((2 * n - 1) / (2 * n))
    assert rows[POOLED]["n_positive"] == int(pooled["present"].sum())


def test_binary_items_are_the_generated_test_split_and_declared_collections():
    consensus = pl.DataFrame(
        {
            "collection": ["generated", "generated", "generated", "binary-set", "binary-set"],
            "scale": ["binary", "binary", "intensity", "binary", "binary"],
            "image_id": ["t1", "tr1", "t1", "binary-set/1", "binary-set/2"],
            "emotion_id": "joy",
            "present": [True, False, True, None, True],
        }
    )
    splits = pl.DataFrame({"image_sha256": ["t1", "tr1"], "split": ["test", "train"]})
    truth = binary_truth(consensus, splits, ["binary-set"])
    assert truth.select("collection", "image_id").rows() == [("binary-set", "binary-set/2"), ("generated", "t1")]
