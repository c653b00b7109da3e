"""For binary judgments, Dawid-Skene (crowd-kit) as an alternative to majority: it weighs annotators by skill.

Posterior presence of each (collection, image, emotion), fitted per collection, as annotator skill may differ. SQL
numbers the tasks and orders the labels, so the sums EM makes do not depend on the order ratings arrived in;
crowd-kit starts EM from majority-vote probabilities, so the result needs no seed. Only integers reach Python
(collection key, task, annotator key, label); the posteriors go back to DuckDB, which joins the ids on.
"""

import numpy as np
import pyarrow as pa

# Keys are numbered in id order (stg_images, stg_annotators, stg_emotions), so tasks and workers are numbered and
# ordered exactly as by the ids themselves.
TASKS = """
select
    collection_key,
    image_key,
    emotion_key,
    dense_rank() over (partition by collection_key order by image_key, emotion_key) - 1 as task,
    annotator_key::bigint as worker,
    value::bigint as label
from ratings
"""
POSTERIOR = """
select collection, image_id, emotion_id, ds_probability, ds_probability > 0.5 as ds_present
from posterior
order by collection, image_id, emotion_id
"""


def model(dbt, session):
    dbt.config(materialized="table")
    binary = dbt.ref("stg_scales").filter("scale = 'binary'").project("scale_key")
    # The binary items with their image and emotion keys, which a rating carries packed in its item key.
    items = dbt.ref("int_item_value_counts").join(binary, "scale_key").project("item_key, image_key, emotion_key")
    tasks = dbt.ref("stg_ratings").join(items, "item_key").query("ratings", TASKS)
    codes = tasks.query(
        "tasks", "select collection_key, task, worker, label from tasks order by collection_key, task, worker"
    ).pl()
    keys, task_ids, probabilities = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty(0, np.float64)]
    for (collection,), part in codes.group_by("collection_key", maintain_order=True):
        # Imported only where there are binary ratings: crowd-kit takes 1.5 s to load, which was most of this
        # model's time in a build of intensity ratings alone.
        from crowdkit.aggregation import DawidSkene

        proba = DawidSkene(n_iter=100).fit_predict_proba(part.select("task", "worker", "label").to_pandas())
        present = proba[1].to_numpy() if 1 in proba.columns else np.zeros(len(proba))
        keys.append(np.full(len(proba), collection, dtype=np.int64))
        task_ids.append(proba.index.to_numpy().astype(np.int64))
        probabilities.append(present.astype(np.float64))
    posterior = {
        "collection_key": np.concatenate(keys),
        "task": np.concatenate(task_ids),
        "ds_probability": np.concatenate(probabilities),
    }
    session.register("ds_posterior", pa.table(posterior))
    named = (
        tasks.query("tasks", "select distinct collection_key, image_key, emotion_key, task from tasks")
        .join(session.view("ds_posterior"), "collection_key, task")
        .join(dbt.ref("stg_images").project("image_key, collection, image_id"), "image_key")
        .join(dbt.ref("stg_emotions"), "emotion_key")
    )
    return named.query("posterior", POSTERIOR)
