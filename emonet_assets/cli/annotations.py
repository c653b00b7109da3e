"""`emonet import-annotations` and `emonet agreement`: ratings in, and how far the raters agree."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from emonet_assets.cli.common import (
    chosen_profile,
    dagster_instance,
    materialize_missing,
    profile_option,
    step_label,
    storage_options,
)
from emonet_assets.cli.render import batches_table, console, print_step
from emonet_assets.lib.shared.tables import Table as StoredTable


@click.command("import-annotations")
@profile_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(["auto", "long", "hq", "label-studio"]), default="auto", show_default=True
)
@click.option("--collection", help="Name of the external collection the files' images belong to.")
@click.option(
    "--positional-ids",
    is_flag=True,
    help="Image references that are bare numbers (00012) are prompt positions of the generated images.",
)
@click.pass_context
def import_annotations(
    ctx: click.Context, paths: tuple[Path, ...], fmt: str, collection: str | None, positional_ids: bool
) -> None:
    """Land annotation files, import each as a batch, then refresh consensus and agreement.

    A file whose content was imported before is a no-op, unless its declaration (the options) changed. Images
    the platform did not generate need --collection (for example the released EmoNet-Face files); numbers name
    generated images only with --positional-ids.
    """
    from emonet_assets.definitions import build_definitions
    from emonet_assets.defs.annotation.partitions import annotation_batch_partitions
    from emonet_assets.lib.annotation.annotation_batches import batch_log
    from emonet_assets.lib.annotation.annotation_import import validate_collection_name
    from emonet_assets.lib.annotation.landing import BatchDeclaration, land_file
    from emonet_assets.lib.shared.storage import Store
    from emonet_assets.runner import automation_cursor, materialize_step, run_automation, run_sensor

    if collection:
        try:
            validate_collection_name(collection)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--collection") from exc
    try:
        declaration = BatchDeclaration(fmt, collection, positional_ids)
    except ValueError as exc:
        raise click.UsageError(f"--collection and --positional-ids: {exc}") from exc
    profile = chosen_profile(ctx.obj["profile"])
    store = Store(profile.root, storage_options())
    defs = build_definitions(profile)
    instance = dagster_instance()
    materialize_missing(defs, instance, store, ["taxonomy"])
    before_import = automation_cursor(defs, instance)
    log = batch_log(store)
    imported_before = set(log.filter(log["status"] == "imported")["batch_id"].to_list())
    landed, again = {}, []
    for path in paths:
        _, sha, redeclared = land_file(store, profile.annotation.landing, path.name, path.read_bytes(), declaration)
        landed[path] = sha
        known = instance.has_dynamic_partition(annotation_batch_partitions.name, sha)
        if (sha in imported_before and redeclared) or (sha not in imported_before and known):
            again.append(sha)
    # New content is imported by the landing sensor, as under the daemon; a file declared anew, or one whose
    # import failed before, is run again as a re-execution from the UI would.
    reports = {r.partition: r for r in run_sensor(defs, instance, "annotation_landing_sensor", log_level="CRITICAL")}
    for sha in again:
        reports[sha] = materialize_step(
            defs, instance, [StoredTable.ANNOTATION_BATCHES.key], partition=sha, log_level="CRITICAL"
        )
    outcomes = []
    for path, sha in landed.items():
        if sha not in reports:
            outcomes.append((path, sha, "already imported: no change"))
        else:
            done = "re-imported" if sha in imported_before else "imported"
            outcomes.append((path, sha, done if reports[sha].success else reports[sha].error))
    log = batch_log(store)
    rows, batches, failures, notes = [], [], [], []
    # Consensus is rebuilt only when ratings changed: a new batch that accepted some, or a re-imported one.
    changed = False
    for path, sha, outcome in outcomes:
        row = log.filter(log["batch_id"] == sha).row(0, named=True) if sha in log["batch_id"] else None
        changed |= outcome == "re-imported" or (outcome == "imported" and bool(row and row["accepted"]))
        counts = [
            f"{row[c]:,}" if row and row["status"] == "imported" and row[c] is not None else "-"
            for c in ("rows_read", "accepted", "rejected", "skipped")
        ]
        reasons = ""
        if row and row["status"] == "imported" and row["rejected"] + row["skipped"]:
            rejects = (
                store.read_table(StoredTable.ANNOTATION_REJECTS, [sha])
                .group_by("reason")
                .len()
                .sort("len", descending=True)
            )
            reasons = ", ".join(f"{n:,} {reason}" for reason, n in rejects.iter_rows())
            positional = dict(rejects.iter_rows()).get("positional_id")
            if positional:
                notes.append(
                    f"{path.name}: {positional:,} rows name their image only by a number, as the EmoNet-Face "
                    "release numbers its own images: import the file again with --collection NAME if they are "
                    "external images, or with --positional-ids if the numbers are prompt positions of the "
                    "generated images"
                )
        if row and row["status"] == "imported" and outcome != "already imported: no change":
            notes += [f"{path.name}: {note}" for note in row["notes"]]
        ok = outcome in ("imported", "re-imported", "already imported: no change")
        if not ok:
            failures.append(f"{path.name}: {outcome}")
        shown = f"[green]{escape(outcome)}[/green]" if ok else "[red]rejected[/red]"
        rows.append([escape(path.name), shown, *counts])
        batches.append(f"batch {sha[:12]}  {path.name}" + (f": {reasons}" if reasons else ""))
    if waiting := [sha for sha in reports if sha not in landed.values()]:
        imported = [sha for sha in waiting if reports[sha].success]
        changed |= bool(imported)
        notes.append(
            f"{len(waiting)} batch(es) were waiting in the landing zone: {len(imported)} imported"
            + "".join(f"; {sha[:12]} failed: {reports[sha].error}" for sha in waiting if sha not in imported)
        )
    console.print(batches_table(rows))
    for batch in batches:
        console.print(escape(batch), soft_wrap=True)
    for note in notes:
        console.print(f"[yellow]note[/yellow] {escape(note)}", soft_wrap=True)
    for failure in failures:
        console.print(f"[red]rejected[/red] {escape(failure)}", soft_wrap=True)
    if changed:
        # The consensus refresh is the automation conditions' own, evaluated as the daemon evaluates them.
        refreshed = run_automation(
            defs, instance, before_import, on_step=lambda r: print_step(r, step_label(defs, r.assets))
        )
        if failed := next((r for r in refreshed if not r.success), None):
            raise click.ClickException(f"refreshing consensus failed at {step_label(defs, failed.assets)} (see above)")
        if StoredTable.CONSENSUS_LABELS.value not in {asset for r in refreshed for asset in r.assets}:
            unrecorded = ", ".join(_unrecorded_upstream(defs, instance))
            raise click.ClickException(
                "new ratings were imported, but the automation conditions did not request consensus: the Dagster "
                f"instance at {instance.root_directory} never materialized {unrecorded}. "
                "Use the Dagster home the storage root was built with, or run `emonet demo` with this one"
            )
    elif any(outcome == "imported" for _, _, outcome in outcomes):
        console.print("no new ratings accepted: consensus is unchanged and was not rebuilt")
    if failures:
        raise click.ClickException(f"{len(failures)} file(s) not imported (see above)")


def _unrecorded_upstream(defs, instance) -> list[str]:
    """The unpartitioned assets consensus is built from that this Dagster instance has no materialization of."""
    import dagster as dg

    graph = defs.resolve_asset_graph()
    upstream = dg.AssetSelection.assets(StoredTable.CONSENSUS_LABELS.key).upstream().resolve(graph)
    return sorted(
        key.to_user_string()
        for key in upstream
        if graph.has(key)
        and graph.get(key).is_materializable
        and graph.get(key).partitions_def is None
        and instance.get_latest_materialization_event(key) is None
    )


@click.command()
@profile_option
@click.option("--collection", help="Only this collection (generated = the platform's own images).")
@click.pass_context
def agreement(ctx: click.Context, collection: str | None) -> None:
    """Per-emotion agreement: Krippendorff's alpha with 95% CI, mean quadratic kappa, human ceiling."""
    import polars as pl

    from emonet_assets.lib.shared.storage import Store

    store = Store(chosen_profile(ctx.obj["profile"]).root, storage_options())
    if "emotion_agreement" not in store.table_names():
        raise click.ClickException(
            f"no agreement under {store.root} yet: import ratings with `emonet import-annotations FILE`, "
            "or run `emonet demo`"
        )
    rows = store.read_table(StoredTable.EMOTION_AGREEMENT)
    if collection:
        if collection not in rows["collection"].unique().to_list():
            known = ", ".join(sorted(rows["collection"].unique().to_list()))
            raise click.ClickException(f"no collection {collection!r}; known: {known}")
        rows = rows.filter(pl.col("collection") == collection)

    def fmt(value) -> str:
        return "-" if value is None else f"{value:.3f}"

    def with_ci(value, low, high) -> str:
        return fmt(value) + (f"\n{low:.2f}–{high:.2f}" if low is not None and high is not None else "")

    for (name, scale), part in rows.sort("alpha_interval", descending=True, nulls_last=True).group_by(
        "collection", "scale", maintain_order=True
    ):
        table = Table(title=f"{name} ({scale})", title_justify="left")
        # Fixed numeric widths keep the table within 80 columns: the CI goes under its alpha, headers wrap, and
        # the emotion column takes the rest (rich would otherwise squeeze every column alike and cut values).
        table.add_column("emotion", overflow="fold")
        table.add_column("images / ratings", justify="right", max_width=9)
        table.add_column("alpha interval [95% CI]", justify="right", width=11)
        table.add_column("alpha ordinal [95% CI]", justify="right", width=11)
        table.add_column("kappa quadratic", justify="right", max_width=9)
        table.add_column("human ceiling (rho)", justify="right", max_width=7)
        for r in part.iter_rows(named=True):
            table.add_row(
                escape(r["emotion"] or r["emotion_id"]),
                f"{r['n_images']:,} / {r['n_ratings']:,}",
                with_ci(r["alpha_interval"], r["alpha_interval_ci_low"], r["alpha_interval_ci_high"]),
                with_ci(r["alpha_ordinal"], r["alpha_ordinal_ci_low"], r["alpha_ordinal_ci_high"]),
                fmt(r["kappa_quadratic_mean"]),
                fmt(r["human_ceiling_spearman"]),
            )
        console.print(table)
        mean = part.select(pl.col("alpha_interval", "kappa_quadratic_mean", "human_ceiling_spearman").mean()).row(0)
        console.print(
            f"  mean over {part.height} emotions: alpha {fmt(mean[0])}, kappa {fmt(mean[1])}, ceiling {fmt(mean[2])}"
        )
