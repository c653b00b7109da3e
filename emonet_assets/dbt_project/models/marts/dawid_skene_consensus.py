"""For binary judgments, Dawid-Skene (crowd-kit) as an alternative to majority: it weighs annotators by skill.

Posterior presence of each (collection, image, emotion), fitted per collection, as annotator skill may differ. SQL
numbers the tasks and orders the labels, so the sums EM makes do not depend on the order ratings arrived in;
crowd-kit starts EM from majority-vote probabilities, so the result needs no seed.
"""

import numpy as np
import polars as pl
from crowdkit.aggregation import DawidSkene

TASKS = """
select
    collection,
    dense_rank() over (partition by collection order by image_id, emotion_id) - 1 as task,
    image_id,
    emotion_id,
    annotator as worker,
    value::bigint as label
from ratings
order by collection, task, worker
"""


def model(dbt, session):
    dbt.config(materialized="table")
    ratings = dbt.ref("stg_ratings").filter("scale = 'binary'")
    labelled = ratings.query("ratings", TASKS).pl()
    schema = {
        "collection": labelled.schema["collection"],
        "image_id": labelled.schema["image_id"],
        "emotion_id": labelled.schema["emotion_id"],
        "ds_probability": pl.Float64,
        "ds_present": pl.Boolean,
    }
    frames = [pl.DataFrame(schema=schema)]
    for (collection,), part in labelled.group_by("collection", maintain_order=True):
        proba = DawidSkene(n_iter=100).fit_predict_proba(part.select("task", "worker", "label").to_pandas())
        present = proba[1].to_numpy() if 1 in proba.columns else np.zeros(len(proba))
        posterior = pl.DataFrame({"task": proba.index.to_numpy(), "ds_probability": present.astype(np.float64)})
        tasks = part.select("task", "image_id", "emotion_id").unique("task")
        frames.append(
            tasks.join(posterior.cast({"task": tasks.schema["task"]}), on="task").select(
                pl.lit(collection, dtype=schema["collection"]).alias("collection"),
                "image_id",
                "emotion_id",
                "ds_probability",
                ds_present=pl.col("ds_probability") > 0.5,
            )
        )
    return pl.concat(frames).sort("collection", "image_id", "emotion_id").to_arrow()
