import dagster as dg

from emonet_assets.lib.shared.notify import Alert, Delivery, notifier_from_settings
from emonet_assets.lib.shared.tables import Table
from emonet_assets.metadata import table_metadata
from emonet_assets.profiles import AlertSettings
from emonet_assets.resources.storage import StorageResource


class NotifierResource(dg.ConfigurableResource):
    """Sends alerts to every configured channel; the storage root's alerts table always gets a copy."""

    storage: dg.ResourceDependency[StorageResource]
    settings: AlertSettings

    def run_url(self, run_id: str) -> str:
        return f"{self.settings.ui_base_url.rstrip('/')}/runs/{run_id}"

    def send(self, alert: Alert) -> list[Delivery]:
        return notifier_from_settings(self.settings.model_dump(), self.storage.store()).send(alert)

    def alerts_metadata(self) -> dict:
        """The alerts table as its materialization shows it: what the sensors report after each write."""
        store = self.storage.store()
        return table_metadata(store.read_table(Table.ALERTS), store.url(store.table_path(Table.ALERTS)))
