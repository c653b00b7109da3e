"""`emonet demo`: the whole asset graph in-process, then where its outputs are."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from emonet_assets.cli.common import chosen_profile, dagster_instance, profile_option, step_label, storage_options
from emonet_assets.cli.render import console, print_step
from emonet_assets.cli.status import print_status
from emonet_assets.lib.shared.tables import Table as StoredTable

CHECK_ALERT_SENSOR = "check_failure_alert_sensor"


@click.command()
@profile_option
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Materialize the whole asset graph in-process, then say where the outputs are."""
    import dagster as dg

    from emonet_assets.definitions import build_definitions
    from emonet_assets.lib.annotation.demo_panel import land_demo_panel
    from emonet_assets.lib.release.manifest import latest_release
    from emonet_assets.lib.shared.storage import StorageError, Store
    from emonet_assets.lib.taxonomy.taxonomy import Taxonomy
    from emonet_assets.runner import describe_alerts, materialize_all, run_sensor, tick_sensor

    profile = chosen_profile(ctx.obj["profile"])
    console.print(f"[bold]emonet demo[/bold]: profile {profile.name}, storage root {profile.root}")
    try:
        Store(profile.root, storage_options()).ensure_writable()
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    defs = build_definitions(profile)
    instance = dagster_instance()

    def show(report) -> None:
        print_step(report, step_label(defs, report.assets))

    def import_panel():
        store = Store(profile.root, storage_options())
        landing = profile.annotation.landing
        taxonomy = Taxonomy.from_table(store.read_table(StoredTable.TAXONOMY))
        landed = land_demo_panel(store, landing, taxonomy, defs.resources["embedder"].embedder())
        console.print(
            f"  landed {len(landed)} simulated expert files in {store.url(landing)}; the sensor imports them:"
        )
        return run_sensor(defs, instance, "annotation_landing_sensor", on_step=show)

    def skip_label_studio():
        console.print("  label_studio_tasks: not pushed (no Label Studio in the demo; `make annotate` starts one)")
        return []

    # The daemon is not running here: the demo ticks the check-alert sensor itself, from before its first run.
    started = datetime.now(UTC)
    alerts_from = tick_sensor(defs, instance, CHECK_ALERT_SENSOR).cursor
    reports = materialize_all(
        defs,
        instance,
        on_step=show,
        handlers={
            dg.AssetKey("annotation_batches"): import_panel,
            StoredTable.LABEL_STUDIO_TASKS.key: skip_label_studio,
        },
    )
    tick_sensor(defs, instance, CHECK_ALERT_SENSOR, alerts_from)
    if not all(r.success for r in reports):
        raise click.ClickException("the demo stopped at a failed step (see above)")
    print_status(profile.root, profile.catalog_path)
    console.print("agreement     emonet agreement (per-emotion alpha, kappa, human ceiling)")
    store = Store(profile.root, storage_options())
    console.print(f"evaluation    {store.url('reports/model_evaluation/per_emotion_spearman.png')} (model vs human)")
    console.print(f"fairness      {store.url('reports/fairness/report.html')} (its summary: fairness_report in the UI)")
    console.print("leaderboard   emonet leaderboard (every registered model beside the human ceiling and random)")
    alerted = describe_alerts(_alerts_since(store, started))
    console.print(
        f"alerts        {alerted}; alerts are recorded in {store.url('tables/alerts')} "
        "(a webhook or e-mail: the profile's `alerts` section)"
    )
    console.print("predict       emonet predict IMAGE... (the newest emotion model of this root)")
    release = latest_release(store)
    release_id = release.rsplit("/", 1)[-1]
    console.print(f"release       {store.url(release)} (release id {release_id}: Parquet shards, card, Croissant)")
    console.print(f"verify        emonet verify-release {store.url(release)}")
    console.print("\nOpen the UI: [bold]make dev[/bold], then http://127.0.0.1:3000 (bound to 127.0.0.1)")


def _alerts_since(store, started) -> list[tuple[str, str]]:
    """(kind, severity) of each alert sent since `started`."""
    import polars as pl

    if not store.has_table(StoredTable.ALERTS):
        return []
    return (
        store.read_table(StoredTable.ALERTS).filter(pl.col("created_at") >= started).select("kind", "severity").rows()
    )
