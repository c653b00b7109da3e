"""dbt's dawid_skene_consensus Python model on simulated binary panels, run as dbt runs it: on a DuckDB relation."""

import importlib.util

import duckdb
import numpy as np
import polars as pl

from emonet_assets.defs.consensus.project import DBT_PROJECT_DIR

MODEL = DBT_PROJECT_DIR / "models" / "marts" / "dawid_skene_consensus.py"


class _Dbt:
    """The calls the model makes on dbt's object: `config`, and `ref` of the ratings as staging keys them (numbered in
    id order, the item key standing for image, emotion and scale), of the items' keys and of the key dimensions.
    Ratings without a scale are binary judgments."""

    def __init__(self, ratings: pl.DataFrame, con: duckdb.DuckDBPyConnection):
        self.con = con
        scales = pl.DataFrame(
            {"scale_key": [0, 1], "scale": ["binary", "intensity"]}, schema_overrides={"scale_key": pl.Int32}
        )
        if "scale" not in ratings.columns:
            ratings = ratings.with_columns(scale=pl.lit("binary"))
        keyed = (
            ratings.join(scales, on="scale")
            .with_columns(
                collection_key=pl.col("collection").rank("dense").cast(pl.Int32) - 1,
                image_key=pl.struct("collection", "image_id").rank("dense").cast(pl.Int32) - 1,
                emotion_key=pl.col("emotion_id").rank("dense").cast(pl.Int32) - 1,
                annotator_key=pl.col("annotator").rank("dense").cast(pl.Int32) - 1,
            )
            .with_columns(item_key=pl.struct("image_key", "emotion_key", "scale_key").rank("dense").cast(pl.Int64))
        )
        self.tables = {
            "stg_ratings": keyed.select("item_key", "collection_key", "annotator_key", "value"),
            "int_item_value_counts": keyed.select("item_key", "image_key", "emotion_key", "scale_key").unique(),
            "stg_images": keyed.select("image_key", "collection_key", "collection", "image_id").unique(),
            "stg_emotions": keyed.select("emotion_key", "emotion_id").unique(),
            "stg_scales": scales,
        }

    def config(self, **_):
        pass

    def ref(self, name: str):
        return self.con.from_arrow(self.tables[name].to_arrow())


def dawid_skene(ratings: pl.DataFrame) -> pl.DataFrame:
    spec = importlib.util.spec_from_file_location("dawid_skene_consensus", MODEL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with duckdb.connect() as con:
        return module.model(_Dbt(ratings, con), con).pl()


def dawid_skene_on_ids(ratings: pl.DataFrame) -> pl.DataFrame:
    """The model as it was, with the string ids in Python: the reference the integer codes must match bitwise."""
    from crowdkit.aggregation import DawidSkene

    tasks = """
    select collection, dense_rank() over (partition by collection order by image_id, emotion_id) - 1 as task,
        image_id, emotion_id, annotator as worker, value::bigint as label
    from ratings order by collection, task, worker
    """
    with duckdb.connect() as con:
        labelled = con.from_arrow(ratings.to_arrow()).query("ratings", tasks).pl()
    frames = []
    for (collection,), part in labelled.group_by("collection", maintain_order=True):
        proba = DawidSkene(n_iter=100).fit_predict_proba(part.select("task", "worker", "label").to_pandas())
        present = proba[1].to_numpy() if 1 in proba.columns else np.zeros(len(proba))
        posterior = pl.DataFrame({"task": proba.index.to_numpy(), "ds_probability": present.astype(np.float64)})
        tasks_ = part.select("task", "image_id", "emotion_id").unique("task")
        frames.append(
            tasks_.join(posterior.cast({"task": tasks_.schema["task"]}), on="task").select(
                pl.lit(collection).alias("collection"),
                "image_id",
                "emotion_id",
                "ds_probability",
                ds_present=pl.col("ds_probability") > 0.5,
            )
        )
    return pl.concat(frames).sort("collection", "image_id", "emotion_id")


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


def test_integer_codes_give_the_posteriors_of_the_string_ids_bitwise():
    """Two collections, annotators whose names sort unlike their order of arrival, an all-absent collection."""
    ratings, _ = _binary_panel(seed=5, images=120, emotions=3)
    renamed = ratings.with_columns(annotator=pl.col("annotator").replace({"expert-0": "zed", "expert-3": "al"}))
    other, _ = _binary_panel(seed=6, images=40, emotions=2)
    quiet = other.with_columns(collection=pl.lit("b-quiet"), value=pl.lit(0, dtype=pl.Int32))
    panel = pl.concat([renamed, other.with_columns(collection=pl.lit("a")), quiet]).with_columns(scale=pl.lit("binary"))
    intensities = other.with_columns(collection=pl.lit("a"), scale=pl.lit("intensity"), value=pl.col("value") * 5)
    mixed = pl.concat([panel, intensities]).sample(fraction=1.0, seed=1)

    ours, expected = dawid_skene(mixed), dawid_skene_on_ids(panel.sample(fraction=1.0, seed=1).drop("scale"))

    assert ours.height == expected.height == 120 * 3 + 2 * 40 * 2
    assert ours.equals(expected)
