"""The rules every stage shares, stated once: the split names, the rating scale, which ratings describe the
platform's own images, and which trained model is current."""

from __future__ import annotations

import polars as pl

from emonet_assets.lib.shared.catalog import quote_literal
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table

SPLITS = ("train", "validation", "test")
INTENSITY_MIN = 0
INTENSITY_MAX = 7
# The collection of the platform's own images; imported ratings of other image sets name their own.
GENERATED = "generated"
# Intensity ratings (or their consensus) of the platform's own images: what models learn from and are scored on.
GENERATED_INTENSITY = (pl.col("collection") == GENERATED) & (pl.col("scale") == "intensity")
# The same rule as a SQL condition, for the steps that filter in DuckDB.
GENERATED_INTENSITY_SQL = f"collection = {quote_literal(GENERATED)} AND scale = 'intensity'"


def newest_model(store: Store) -> dict:
    """The emotion_model row trained last: the model evaluation, prediction and the fairness report use."""
    return store.read_table(Table.EMOTION_MODEL).sort("trained_at").row(-1, named=True)
