from collections.abc import Mapping, Sequence

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field, PrivateAttr

from emonet_assets.lib.shared.catalog import add_view, configure, copy_to_parquet
from emonet_assets.lib.shared.storage import UNPARTITIONED, Store
from emonet_assets.lib.shared.tables import Table
from emonet_assets.metadata import table_metadata


class StorageResource(dg.ConfigurableResource):
    """The one storage root of a deployment: a local folder, or any fsspec URL such as s3://bucket/prefix."""

    root: str
    endpoint_url: str | None = None
    catalog: str | None = Field(
        default=None, description="The DuckDB catalog in which a table's first file also creates the table's view."
    )

    _store: Store | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.store().ensure_writable()

    def store(self) -> Store:
        if self._store is None:
            options = {"endpoint_url": self.endpoint_url} if self.endpoint_url else {}
            self._store = Store(self.root, options, on_new_table=self._add_view if self.catalog else None)
        return self._store

    def _add_view(self, store: Store, table: str) -> None:
        add_view(self.catalog, store, table)

    def write_table(
        self,
        table: Table,
        frame: pl.DataFrame,
        partition: str = UNPARTITIONED,
        preview_drop: Sequence[str] = (),
        preview_rows: int = 10,
    ) -> dict:
        """The one way an asset writes a table: atomically, one Parquet file per partition. Returns the metadata its
        materialization carries: row count, column schema with the lineage keys described, path and a preview
        of `preview_rows` rows (without the `preview_drop` columns, too long to show)."""
        store = self.store()
        path = store.write_table(table, frame, partition)
        return table_metadata(frame, store.url(path), preview_rows, preview_drop)

    def copy_table(
        self,
        table: Table,
        database: str,
        relation: str,
        settings: Mapping[str, object] | None = None,
        preview_rows: int = 10,
    ) -> dict:
        """A table or view of the DuckDB `database` written as the table's Parquet file by DuckDB's `COPY ... TO`
        under the profile's DuckDB `settings`, atomically like `write_table` and with the same metadata; only the
        preview rows reach Python. The catalog is closed again before the table's first file adds its view there."""
        copied = {}

        def copy(path: str) -> None:
            with duckdb.connect(database, read_only=True) as con:
                configure(con, settings)
                copied["rows"] = copy_to_parquet(con, f"select * from {relation}", path)
                copied["head"] = con.sql(f"select * from {relation} limit {preview_rows}").pl()

        store = self.store()
        path = store.write_table_file(table, copy)
        return table_metadata(copied["head"], store.url(path), preview_rows, rows=copied["rows"])
