import dagster as dg
from pydantic import PrivateAttr

from emonet_assets.lib.storage import Store


class StorageResource(dg.ConfigurableResource):
    """The one storage root of a deployment: a local folder, or any fsspec URL such as s3://bucket/prefix."""

    root: str
    endpoint_url: str | None = None

    _store: Store | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.store().ensure_writable()

    def store(self) -> Store:
        if self._store is None:
            options = {"endpoint_url": self.endpoint_url} if self.endpoint_url else {}
            self._store = Store(self.root, options)
        return self._store
