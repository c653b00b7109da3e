"""Bootstrap CIs of alpha from per-item sufficient statistics: one matrix product per chunk of resamples.

The items come with integer codes for collection, scale, emotion and image (numbered in the order of their ids, so
the resamples and the per-emotion order are those of the ids) and stay in DuckDB, which numbers their patterns and
images; the ids are joined back on the few result rows.
"""

import polars as pl

from emonet_assets.lib.consensus.agreement import COUNT_COLUMNS, bootstrap_alpha

CODED_STATS = (
    "collection_key as collection, scale_key::integer as scale, emotion_key as emotion_id, image_key as image_id, "
    + ", ".join(f"{column}::integer as {column}" for column in ("m", "s1", "s2", *COUNT_COLUMNS))
)


def model(dbt, session):
    dbt.config(materialized="table")
    stats = dbt.ref("int_item_value_counts").filter("m >= 2").project(CODED_STATS)
    resamples = int(dbt.config.get("bootstrap_resamples"))
    seed = int(dbt.config.get("bootstrap_seed"))
    coded = bootstrap_alpha(stats, resamples=resamples, seed=seed)
    collections = dbt.ref("stg_images").aggregate("collection_key, any_value(collection) as name").pl()
    emotions = dbt.ref("stg_emotions").project("emotion_key, emotion_id as name").pl()
    scales = dbt.ref("stg_scales").project("scale_key, scale as name").pl()
    named = coded.with_columns(
        collection=pl.col("collection").replace_strict(collections["collection_key"], collections["name"]),
        scale=pl.col("scale").replace_strict(scales["scale_key"], scales["name"]),
        emotion_id=pl.col("emotion_id").replace_strict(emotions["emotion_key"], emotions["name"]),
    )
    return named.with_columns(pl.col("resamples").cast(pl.Int64)).to_arrow()
