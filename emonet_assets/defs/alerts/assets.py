import dagster as dg

from emonet_assets.lib.shared.tables import Table

# Written outside any run, by the alert sensors through the notifier's local channel: an external asset, whose every
# write the sensor reports as a materialization.
alerts = dg.AssetSpec(
    Table.ALERTS.key,
    group_name="alerts",
    kinds={"parquet"},
    description="Every alert sent (failed runs, failed or warned checks): kind, severity, asset, check, run link, "
    "message and metadata, one row each. The alert sensors write it through the notifier and report each write.",
)
