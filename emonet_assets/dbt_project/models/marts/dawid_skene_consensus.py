"""For binary judgments, Dawid-Skene (crowd-kit) as an alternative to majority: it weighs annotators by skill."""

from emonet_assets.lib.consensus.agreement import dawid_skene


def model(dbt, session):
    dbt.config(materialized="table")
    ratings = dbt.ref("stg_ratings").filter("scale = 'binary'").pl()
    return dawid_skene(ratings).to_arrow()
