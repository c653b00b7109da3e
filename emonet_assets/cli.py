"""`emonet`: the platform's command line. Domain commands join it issue by issue."""

from __future__ import annotations

import os
import sys
from datetime import UTC
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from emonet_assets.profiles import ProfileError, available_profiles, load_profile

console = Console(highlight=False, soft_wrap=True)


def _instance():
    import dagster as dg

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path.cwd() / ".dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.get()


def _profile(name: str | None):
    try:
        return load_profile(name)
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
@click.option("--profile", "profile_name", envvar="EMONET_PROFILE", help="Profile name (default: tiny).")
@click.pass_context
def main(ctx: click.Context, profile_name: str | None) -> None:
    """Build and maintain the EmoNet-Face benchmark."""
    ctx.obj = {"profile": profile_name}


@main.command()
def profiles() -> None:
    """List the profiles and what each sets."""
    active = os.environ.get("EMONET_PROFILE", "tiny")
    for name in available_profiles():
        p = load_profile(name, env={})
        d, g = p.design, p.generation
        budget = f"{d.n_per_cell} per cell" if d.n_per_cell is not None else f"{d.total} prompts in total"
        axes = {a: list(getattr(d, a)) for a in ("occlusion", "lighting", "pose") if len(getattr(d, a)) > 1}
        console.print(f"[bold]{name}[/bold]{'  (active)' if name == active else ''}")
        console.print(f"  {p.description}")
        console.print(f"  storage root  {p.root}")
        console.print(
            f"  design        {budget}, shards of {d.shard_size}, seed {d.seed}, templates {sorted(d.templates)}"
        )
        if axes:
            console.print(f"  robustness    {axes}")
        console.print(
            f"  generation    {g.model} ({g.license}), {g.width}x{g.height}, {g.steps} steps, "
            f"guidance {g.guidance}, batch {g.batch_size}, device {g.device}, dtype {g.dtype}"
        )
        console.print(f"  rollups       {p.taxonomy.rollups or 'built-in only'}")


@main.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Materialize the whole asset graph in-process, then say where the outputs are."""
    from emonet_assets.definitions import build_definitions
    from emonet_assets.lib.storage import StorageError, Store
    from emonet_assets.runner import materialize_all

    profile = _profile(ctx.obj["profile"])
    console.print(f"[bold]emonet demo[/bold]: profile {profile.name}, storage root {profile.root}")
    try:
        Store(profile.root, _storage_options()).ensure_writable()
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    defs = build_definitions(profile)
    instance = _instance()

    def show(report) -> None:
        mark = "[green]ok[/green]  " if report.success else "[red]FAIL[/red]"
        name = escape(", ".join(report.assets) + (f" [{report.partition}]" if report.partition else ""))
        rows = ", ".join(f"{n:,} rows" for n in report.rows.values())
        checks = f"checks {report.checks_passed}/{report.checks_passed + len(report.checks_failed)}"
        console.print(f"  {mark} {name:<30} {rows:<22} {checks:<11} {report.seconds:5.1f}s")
        for failure in report.checks_failed:
            console.print(f"       [red]check failed[/red] {escape(failure)}")
        if report.error:
            console.print(f"       [red]{escape(report.error)}[/red]")

    reports = materialize_all(defs, instance, on_step=show)
    if not all(r.success for r in reports):
        raise click.ClickException("the demo stopped at a failed step (see above)")
    _print_status(profile, instance)
    console.print("\nOpen the UI: [bold]make dev[/bold], then http://127.0.0.1:3000 (bound to 127.0.0.1)")


@main.command()
@click.argument("shards", nargs=-1)
@click.option("--missing", is_flag=True, help="Every shard that has no images yet.")
@click.option("--per-run", type=int, default=None, help="Shards per run (default: the asset's backfill policy).")
@click.option("--repair", is_flag=True, help="Re-hash stored images and regenerate missing or corrupt ones.")
@click.pass_context
def generate(ctx: click.Context, shards: tuple[str, ...], missing: bool, per_run: int | None, repair: bool) -> None:
    """Generate images for prompt shards: SHARD names, START...END ranges, or --missing.

    Shards are the partitions of `generated_images`; materialize `prompt_shards` first (`emonet demo`).
    """
    import dagster as dg

    from emonet_assets.definitions import build_definitions
    from emonet_assets.lib.storage import Store
    from emonet_assets.runner import materialize_step, partition_runs

    profile = _profile(ctx.obj["profile"])
    defs = build_definitions(profile)
    instance = _instance()
    node = defs.resolve_asset_graph().get(dg.AssetKey("generated_images"))
    known = node.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    if not known:
        raise click.ClickException(
            "no prompt shards registered in this Dagster instance: materialize prompt_shards first"
        )
    chosen = _select_shards(shards, known)
    if missing:
        done = set(Store(profile.root, _storage_options()).table_partitions("generated_images"))
        chosen += [k for k in known if k not in done and k not in chosen]
    if not chosen:
        raise click.ClickException("name shards (shard-00000, shard-00000...shard-00004) or pass --missing")
    chosen = [k for k in known if k in set(chosen)]
    per_run = per_run or node.backfill_policy.max_partitions_per_run or len(chosen)
    run_config = {"ops": {"generated_images": {"config": {"repair_corrupt": repair}}}}
    failed = 0
    for start, end in partition_runs(chosen, per_run):
        report = materialize_step(
            defs, instance, [dg.AssetKey("generated_images")], partition_range=(start, end), run_config=run_config
        )
        mark = "[green]ok[/green]  " if report.success else "[red]FAIL[/red]"
        console.print(
            f"  {mark} generated_images {escape(f'[{start}...{end}]')}  {report.seconds:5.1f}s  run {report.run_id}"
        )
        if report.error:
            console.print(f"       [red]{report.error}[/red]")
            failed += 1
    if failed:
        raise click.ClickException(f"{failed} run(s) failed; re-run the failed range alone")


def _select_shards(requested: tuple[str, ...], known: list[str]) -> list[str]:
    chosen = []
    for item in requested:
        start, _, end = item.partition("...")
        end = end or start
        for key in (start, end):
            if key not in known:
                raise click.ClickException(
                    f"unknown shard {key!r}; known: {known[0]} ... {known[-1]} ({len(known)} shards)"
                )
        chosen += known[known.index(start) : known.index(end) + 1]
    return chosen


@main.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Which assets are materialized under the current root, when, and with how many rows."""
    _print_status(_profile(ctx.obj["profile"]), _instance())


def _print_status(profile, instance) -> None:
    import dagster as dg

    from emonet_assets.lib.storage import Store

    store = Store(profile.root, _storage_options())
    table = Table(title=f"Storage root {store.root}", title_justify="left")
    for column in ("asset", "partitions", "rows", "size", "last materialized"):
        table.add_column(column, justify="right" if column in ("partitions", "rows", "size") else "left")
    names = store.table_names()
    for name in names:
        info = store.table_info(name)
        event = instance.get_latest_materialization_event(dg.AssetKey(name))
        when = (
            _format_time(event.timestamp)
            if event
            else (info.modified.strftime("%Y-%m-%d %H:%M:%S UTC") + " (file)" if info.modified else "-")
        )
        table.add_row(name, str(info.partitions), f"{info.rows:,}", _format_bytes(info.bytes), when)
    if not names:
        console.print(f"Nothing materialized under {store.root} yet: run `make demo` or `emonet demo`.")
        return
    console.print(table)
    images = store.count_images()
    if images:
        console.print(f"images        {images:,} files under {store.url('images')}")
    console.print(f"tables        {store.url('tables')}/<asset>/<partition>.parquet")
    console.print(f"catalog       {profile.catalog_path} (DuckDB; views over the tables)")


def _storage_options() -> dict:
    endpoint = os.environ.get("EMONET_S3_ENDPOINT_URL")
    return {"endpoint_url": endpoint} if endpoint else {}


def _format_time(timestamp: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _format_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


if __name__ == "__main__":
    sys.exit(main())
