"""`emonet profiles` and `emonet status`: what each profile sets, and what is written under the current root."""

from __future__ import annotations

from datetime import UTC

import click
from rich.table import Table

from emonet_assets.cli.common import profile_option, storage_options
from emonet_assets.cli.render import console, format_bytes


@click.command()
@profile_option
@click.pass_context
def profiles(ctx: click.Context) -> None:
    """List the profiles and what each sets."""
    from emonet_assets.lib.shared.profile_files import model_source
    from emonet_assets.profiles import available_profiles, load_profile, requested_profile

    active, _ = requested_profile(ctx.obj["profile"])
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
        console.print(f"  weights       {model_source(g.model, g.build_tiny)}", soft_wrap=True)
        e = p.embedding
        console.print(f"  backbone      {e.kind}: {model_source(e.source, e.build_tiny)}", soft_wrap=True)
        console.print(f"  rollups       {p.taxonomy.rollups or 'built-in only'}")


@click.command()
@profile_option
@click.pass_context
def status(ctx: click.Context) -> None:
    """Which assets are written under the current root, when, and with how many rows."""
    from emonet_assets.lib.shared.profile_files import ProfileError, catalog_path, read_profile

    try:
        name, _, settings = read_profile(ctx.obj["profile"], given_by="--profile")
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc
    storage = settings["storage"]
    print_status(storage["root"], catalog_path(name, storage["root"], storage.get("catalog")))


def print_status(root: str, catalog: str) -> None:
    """Read from the storage root alone, the system of record, so that it is quick (no Dagster, no profile
    validation) and shows what is there, whichever Dagster instance wrote it."""
    from emonet_assets.lib.shared.storage import FILE_ASSETS, Store

    store = Store(root, storage_options())
    tables = [store.table_info(name) for name in store.table_names()]
    folders = [store.folder_info(name, folder) for name, folder in FILE_ASSETS.items()]
    folders = [info for info in folders if info.partitions]
    if not tables and not folders:
        console.print(f"Nothing materialized under {store.root} yet: run `make demo` or `emonet demo`.")
        return
    table = Table(title=f"Storage root {store.root}", title_justify="left")
    table.add_column("asset", no_wrap=True)
    for column in ("files", "rows", "size"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("written (UTC)", no_wrap=True)
    for info in tables:
        table.add_row(info.name, f"{info.partitions:,}", f"{info.rows:,}", format_bytes(info.bytes), _written(info))
    for info in folders:
        table.add_row(info.name, f"{info.partitions:,}", "-", format_bytes(info.bytes), _written(info))
    console.print(table)
    console.print("files         one Parquet file per partition of a table; an asset that writes files counts them")
    console.print("written       when the newest of those files was written under the root")
    images = store.count_images()
    if images:
        console.print(f"images        {images:,} files under {store.url('images')}")
    console.print(f"tables        {store.url('tables')}/<asset>/<partition>.parquet")
    for info in folders:
        console.print(f"folder        {store.url(FILE_ASSETS[info.name])}/ ({info.name})")
    console.print(f"catalog       {catalog} (DuckDB; views over the tables)")


def _written(info) -> str:
    return info.modified.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if info.modified else "-"
