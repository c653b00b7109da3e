"""dbt's int_agreement_item_stats from raw ratings in polars, for unit tests of the alphas that start from ratings;
test_annotation checks it equals the dbt table on the demo panel."""

import polars as pl

from emonet_assets.lib.consensus.agreement import KEY, VALUES


def item_stats(ratings: pl.DataFrame) -> pl.DataFrame:
    value = pl.col("value")
    return (
        ratings.group_by([*KEY, "image_id"])
        .agg(
            m=pl.len().cast(pl.Int64),
            s1=value.sum().cast(pl.Float64),
            s2=(value * value).sum().cast(pl.Float64),
            **{f"c{v}": (value == v).sum().cast(pl.Int64) for v in range(VALUES)},
        )
        .filter(pl.col("m") >= 2)
        .sort([*KEY, "image_id"])
    )
