"""Bootstrap CIs of alpha from per-item sufficient statistics: one matrix product per chunk of resamples."""

import polars as pl

from emonet_assets.lib.consensus.agreement import bootstrap_alpha


def model(dbt, session):
    dbt.config(materialized="table")
    stats = dbt.ref("int_agreement_item_stats").pl()
    resamples = int(dbt.config.get("bootstrap_resamples"))
    seed = int(dbt.config.get("bootstrap_seed"))
    result = bootstrap_alpha(stats, resamples=resamples, seed=seed)
    return result.with_columns(pl.col("resamples").cast(pl.Int64)).to_arrow()
