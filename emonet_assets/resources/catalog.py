from collections.abc import Iterable

import dagster as dg

from emonet_assets.lib import catalog
from emonet_assets.lib.storage import Store


class CatalogResource(dg.ConfigurableResource):
    """The DuckDB catalog file. Writers run in the `catalog` pool (limit 1); readers open it read-only."""

    database: str

    def refresh(self, store: Store, tables: Iterable[str]) -> None:
        con = catalog.connect(self.database, store)
        try:
            for table in tables:
                catalog.refresh_view(con, store, table)
        finally:
            con.close()

    def connect(self, store: Store, read_only: bool = True):
        return catalog.connect(self.database, store, read_only=read_only)
