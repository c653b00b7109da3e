"""`emonet generate`: images for prompt shards, one run per range of shards, resumable after Ctrl-C."""

from __future__ import annotations

from dataclasses import dataclass, field

import click
from rich.markup import escape

from emonet_assets.cli.common import (
    chosen_profile,
    dagster_instance,
    materialize_missing,
    profile_option,
    storage_options,
)
from emonet_assets.cli.render import console, print_step
from emonet_assets.lib.shared.tables import Table as StoredTable


@click.command()
@profile_option
@click.argument("shards", nargs=-1)
@click.option("--missing", is_flag=True, help="Every shard that has no images yet.")
@click.option("--per-run", type=int, default=None, help="Shards per run (default: the asset's backfill policy).")
@click.option("--repair", is_flag=True, help="Re-hash stored images and regenerate missing or corrupt ones.")
@click.pass_context
def generate(ctx: click.Context, shards: tuple[str, ...], missing: bool, per_run: int | None, repair: bool) -> None:
    """Generate images for prompt shards: SHARD names, START...END ranges, or --missing.

    Shards are the partitions of `generated_images`; on a new storage root the prompt design and its shards are
    materialized first. Ctrl-C stops the command and names the shards left to generate.
    """
    import dagster as dg

    from emonet_assets.definitions import build_definitions
    from emonet_assets.defs.execution.runs import partition_runs
    from emonet_assets.lib.shared.storage import Store

    profile = chosen_profile(ctx.obj["profile"])
    if not shards and not missing:
        raise click.ClickException("name shards (shard-00000, shard-00000...shard-00004) or pass --missing")
    defs = build_definitions(profile)
    instance = dagster_instance()
    node = defs.resolve_asset_graph().get(dg.AssetKey("generated_images"))
    known = node.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    store = Store(profile.root, storage_options())
    if not known or not (store.has_table(StoredTable.PROMPT_DESIGN) or store.has_table(StoredTable.GENERATED_IMAGES)):
        # A new root or a new Dagster instance: the design and its shards first (prompt_shards registers them).
        materialize_missing(defs, instance, store, ["prompt_shards"], always=("prompt_shards",))
        known = node.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    chosen = _select_shards(shards, known)
    if missing:
        done = set(store.table_partitions(StoredTable.GENERATED_IMAGES))
        chosen += [k for k in known if k not in done and k not in chosen]
    if not chosen:
        console.print(f"nothing to generate: all {len(known)} shards have images")
        return
    per_run = per_run or node.backfill_policy.max_partitions_per_run or len(chosen)
    runs = partition_runs(known, per_run, chosen)
    rerun = _rerun_command(ctx, known, per_run if per_run != node.backfill_policy.max_partitions_per_run else None)
    outcome = _generate_runs(defs, instance, store, known, runs, repair)
    if outcome.interrupted:
        finished = _finished_shards(store, chosen, outcome.succeeded)
        rest = [k for k in chosen if k not in finished]
        console.print(
            f"[yellow]interrupted[/yellow]: {len(finished)} of {len(chosen)} shards finished"
            + (f" ({_shard_ranges(finished, known)})" if finished else "")
            + "; images already written are kept, and a re-run resumes where this one stopped"
        )
        console.print(f"re-run the rest: {rerun(rest, repair)}", soft_wrap=True)
        ctx.exit(130)
    if outcome.missing_files is not None:
        lost = outcome.missing_files
        shown = ", ".join(lost["image_path"].head(3).to_list()) + (
            f" and {lost.height - 3} more" if lost.height > 3 else ""
        )
        damaged = lost["shard"].unique(maintain_order=True).to_list()
        made = _shard_ranges(outcome.succeeded + outcome.generated, known)
        rest = [k for k in chosen if k not in outcome.succeeded and k not in outcome.generated]
        files = "1 image file" if lost.height == 1 else f"{lost.height} image files"
        raise click.ClickException(
            f"{made} generated, but {files} of {_shard_ranges(damaged, known)} listed in the manifest "
            f"{'is' if lost.height == 1 else 'are'} missing from {store.url('images')}: {shown}. "
            f"Regenerate {'it' if lost.height == 1 else 'them'} with: {rerun(damaged, True)}"
            + (f"; then generate the rest with: {rerun(rest, repair)}" if rest else "")
        )
    if outcome.failed:
        raise click.ClickException(
            f"{len(outcome.failed)} run(s) failed; re-run the shards they name alone: emonet generate SHARD"
        )


@dataclass
class _GenerateOutcome:
    succeeded: list[str] = field(default_factory=list)  # shards of the runs that succeeded
    generated: list[str] = field(default_factory=list)  # shards of runs that wrote images but failed a check
    failed: list[str] = field(default_factory=list)  # failed runs, as their ranges
    interrupted: bool = False
    missing_files: object = None  # the manifest rows whose image file is missing, when that failed a run


def _generate_runs(defs, instance, store, known: list[str], runs: list[tuple[str, str]], repair: bool):
    """One run per range, its line printed as it ends. Ctrl-C stops the command, not only the run it lands in
    (Dagster turns it into that run's failure); a manifest check that finds image files missing stops it too,
    since every later run would fail on the same files."""
    import logging

    import dagster as dg

    from emonet_assets.lib.generation.shard_generation import missing_images
    from emonet_assets.runner import materialize_step

    run_config = {"ops": {"generated_images": {"config": {"repair_corrupt": repair}}}}
    outcome = _GenerateOutcome()
    try:
        for start, end in runs:
            shards = known[known.index(start) : known.index(end) + 1]
            # The step's log lines would print Dagster's stack traces around a failure that the line below names.
            report = materialize_step(
                defs,
                instance,
                [dg.AssetKey("generated_images")],
                partition_range=(start, end),
                run_config=run_config,
                log_level="CRITICAL",
            )
            lost = None
            if any(f.startswith("manifest_matches_shards") for f in report.checks_failed):
                lost = missing_images(store, store.read_table(StoredTable.GENERATED_IMAGES))
            # The closing message explains an interrupted run and missing image files (naming them and the repair).
            explained = report.interrupted or (lost is not None and lost.height > 0)
            print_step(report, "generated_images", f"run {report.run_id}", headline_only=explained)
            for record in instance.all_logs(report.run_id):
                if record.level == logging.WARNING and not record.is_dagster_event:
                    console.print(f"       [yellow]warning[/yellow] {escape(record.user_message)}", soft_wrap=True)
            if report.interrupted:
                outcome.interrupted = True
                return outcome
            if report.success:
                outcome.succeeded += shards
                continue
            if explained:
                outcome.generated += shards
                outcome.missing_files = lost
                return outcome
            outcome.failed.append(f"{start}...{end}")
    except KeyboardInterrupt:  # between runs, where Dagster is not listening for it
        outcome.interrupted = True
    return outcome


def _finished_shards(store, chosen: list[str], succeeded: list[str]) -> list[str]:
    """The chosen shards whose runs succeeded, and those an interrupted run completed before it stopped."""
    import polars as pl

    written = set(store.table_partitions(StoredTable.GENERATED_IMAGES))
    candidates = [k for k in chosen if k not in succeeded and k in written]
    if not candidates:
        return [k for k in chosen if k in succeeded]
    wanted = dict(
        store.read_table(StoredTable.PROMPT_DESIGN).group_by("shard").agg(pl.col("prompt_id").n_unique()).rows()
    )
    have = dict(
        store.read_table(StoredTable.GENERATED_IMAGES, candidates)
        .group_by("shard")
        .agg(pl.col("prompt_id").n_unique())
        .rows()
    )
    return [k for k in chosen if k in succeeded or (k in have and have[k] >= wanted.get(k, 0))]


def _shard_ranges(shards: list[str], known: list[str]) -> str:
    """Shards as the arguments `emonet generate` takes: consecutive ones as START...END."""
    positions = sorted(known.index(k) for k in set(shards))
    groups: list[list[int]] = []
    for position in positions:
        if groups and position == groups[-1][-1] + 1:
            groups[-1].append(position)
        else:
            groups.append([position])
    return " ".join(known[g[0]] if len(g) == 1 else f"{known[g[0]]}...{known[g[-1]]}" for g in groups)


def _rerun_command(ctx: click.Context, known: list[str], per_run: int | None):
    """The `emonet generate` line for some shards, with the profile and --per-run this command was given."""

    def command(shards: list[str], repair: bool) -> str:
        words = ["emonet", "generate"]
        if ctx.obj.get("profile"):
            words += ["--profile", ctx.obj["profile"]]
        if repair:
            words.append("--repair")
        if per_run:
            words += ["--per-run", str(per_run)]
        return " ".join([*words, _shard_ranges(shards, known)])

    return command


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
        if known.index(start) > known.index(end):
            raise click.ClickException(f"shard range {item} is reversed: write it {end}...{start}")
        chosen += known[known.index(start) : known.index(end) + 1]
    return chosen
