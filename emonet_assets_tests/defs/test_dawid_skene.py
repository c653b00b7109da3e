"""dbt's dawid_skene_consensus Python model on simulated binary panels, run as dbt runs it: on a DuckDB relation."""

import importlib.util

import duckdb
import numpy as np
import polars as pl

from emonet_assets.defs.consensus.project import DBT_PROJECT_DIR

MODEL = DBT_PROJECT_DIR / "models" / "marts" / "dawid_skene_consensus.py"


class _Dbt:
    """The two calls the model makes on dbt's object: `config` and `ref("stg_ratings")`."""

    def __init__(self, ratings: pl.DataFrame):
        self.con = duckdb.connect()
        self.ratings = ratings.with_columns(scale=pl.lit("binary"))

    def config(self, **_):
        pass

    def ref(self, name: str):
        assert name == "stg_ratings"
        return self.con.from_arrow(self.ratings.to_arrow())


def dawid_skene(ratings: pl.DataFrame) -> pl.DataFrame:
    spec = importlib.util.spec_from_file_location("dawid_skene_consensus", MODEL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return pl.from_arrow(module.model(_Dbt(ratings), None))


def _binary_panel(seed: int, images: int = 300, emotions: int = 4):
    """Three annotators right 85% of the time and a spammer answering at random."""
    rng = np.random.default_rng(seed)
    truth = rng.random((images, emotions)) < 0.3
    flipped = rng.random((images, emotions, 4)) < 0.15
    answers = truth[:, :, None] ^ flipped
    answers[:, :, 3] = rng.random((images, emotions)) < 0.5
    i, e, a = np.indices(answers.shape).reshape(3, -1)
    ratings = pl.DataFrame(
        {
            "collection": ["c"] * i.size,
            "image_id": [f"img-{k:04d}" for k in i],
            "emotion_id": [f"e{k}" for k in e],
            "annotator": [f"expert-{k}" for k in a],
            "value": answers.ravel().astype(np.int32),
        }
    )
    truth_frame = pl.DataFrame(
        {
            "image_id": [f"img-{k:04d}" for k in range(images) for _ in range(emotions)],
            "emotion_id": [f"e{k}" for _ in range(images) for k in range(emotions)],
            "truth": truth.ravel(),
        }
    )
    return ratings, truth_frame


def test_dawid_skene_outweighs_a_spammer():
    ratings, truth = _binary_panel(seed=3)
    consensus = dawid_skene(ratings)
    assert consensus.height == truth.height
    assert consensus.schema["ds_probability"] == pl.Float64 and consensus.schema["ds_present"] == pl.Boolean
    assert (consensus["ds_present"] == (consensus["ds_probability"] > 0.5)).all()
    majority = ratings.group_by("image_id", "emotion_id").agg(majority=pl.col("value").mean() > 0.5)
    scored = truth.join(consensus, on=["image_id", "emotion_id"]).join(majority, on=["image_id", "emotion_id"])
    ds_accuracy = (scored["ds_present"] == scored["truth"]).mean()
    majority_accuracy = (scored["majority"] == scored["truth"]).mean()
    assert ds_accuracy >= majority_accuracy
    assert ds_accuracy > 0.9


def test_dawid_skene_fits_each_collection_and_survives_an_all_absent_collection():
    ratings, _ = _binary_panel(seed=4, images=50, emotions=2)
    absent = ratings.with_columns(collection=pl.lit("quiet"), value=pl.lit(0, dtype=pl.Int32))
    consensus = dawid_skene(pl.concat([ratings, absent]))
    assert consensus.group_by("collection").len().sort("collection")["len"].to_list() == [100, 100]
    quiet = consensus.filter(pl.col("collection") == "quiet")
    assert (quiet["ds_probability"] == 0).all() and not quiet["ds_present"].any()
