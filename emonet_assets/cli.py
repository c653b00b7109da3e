"""`emonet`: the platform's command line. Domain commands join it issue by issue."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from emonet_assets.lib.shared.tables import Table as StoredTable

console = Console(highlight=False, soft_wrap=True)


def _instance():
    """The Dagster instance of DAGSTER_HOME, by default the project folder's .dagster_home (the one `make` uses),
    wherever `emonet` runs from."""
    import dagster as dg

    from emonet_assets.lib.shared.profile_files import project_dir

    home = Path(os.environ.get("DAGSTER_HOME") or project_dir() / ".dagster_home").expanduser().absolute()
    os.environ["DAGSTER_HOME"] = str(home)
    _set_up_home(home)
    try:
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)
    except Exception as exc:
        postgres = _postgres_settings(home / "dagster.yaml")
        if postgres is None:
            raise
        raise click.ClickException(
            f"cannot reach the Postgres storage that {home / 'dagster.yaml'} configures ({postgres}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return instance


def _set_up_home(home: Path) -> None:
    """A Dagster home that the CLI starts (a missing or empty folder) gets the project's instance settings, as
    `make` gives its own: the pools that serialize GPU work and catalog writes, and no telemetry."""
    import shutil

    from emonet_assets.lib.shared.profile_files import INSTANCE_SETTINGS

    if home.is_dir() and any(home.iterdir()):
        return
    home.mkdir(parents=True, exist_ok=True)
    if INSTANCE_SETTINGS.is_file():
        shutil.copyfile(INSTANCE_SETTINGS, home / "dagster.yaml")
        console.print(f"new Dagster instance in {home}, with the settings of {INSTANCE_SETTINGS}", soft_wrap=True)
    else:
        console.print(f"new Dagster instance in {home}", soft_wrap=True)


def _postgres_settings(config: Path) -> str | None:
    """The connection settings of an instance file's Postgres storage, each with the variable it comes from."""
    import yaml

    if not config.exists():
        return None
    storage = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("storage") or {}
    settings = (storage.get("postgres") or {}).get("postgres_db")
    if not settings:
        return None
    shown = []
    for key in ("hostname", "port", "db_name", "username"):
        value = settings.get(key)
        if isinstance(value, dict) and "env" in value:
            value = f"{value['env']}={os.environ.get(value['env'], '(unset)')}"
        shown.append(f"storage.postgres.postgres_db.{key}: {value}")
    return ", ".join(shown)


def _profile(name: str | None):
    from emonet_assets.profiles import ProfileError, load_profile

    try:
        return load_profile(name, given_by="--profile")
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc


def _remember_profile(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(dict)["profile"] = value


def profile_option(command):
    """`--profile` before or after the subcommand's name (`emonet status --profile sdxl-turbo`); the later one
    wins. Unset, the profile comes from EMONET_PROFILE, read where the profile loads, so errors name the source."""
    return click.option(
        "--profile",
        expose_value=False,
        callback=_remember_profile,
        help="Profile name or file (default: EMONET_PROFILE, else tiny).",
    )(command)


@click.group()
@profile_option
@click.pass_context
def main(ctx: click.Context) -> None:
    """Build and maintain the EmoNet-Face benchmark."""
    ctx.ensure_object(dict).setdefault("profile", None)


@main.command()
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


CHECK_ALERT_SENSOR = "check_failure_alert_sensor"


@main.command()
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
    from emonet_assets.runner import describe_alerts, materialize_all, run_sensor, step_lines, tick_sensor

    profile = _profile(ctx.obj["profile"])
    console.print(f"[bold]emonet demo[/bold]: profile {profile.name}, storage root {profile.root}")
    try:
        Store(profile.root, _storage_options()).ensure_writable()
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    defs = build_definitions(profile)
    instance = _instance()

    def show(report) -> None:
        for line in step_lines(report, _step_label(defs, report.assets)):
            console.print(line)

    def import_panel():
        store = Store(profile.root, _storage_options())
        landing = profile.annotation.landing
        taxonomy = Taxonomy.from_table(store.read_table(StoredTable.TAXONOMY))
        landed = land_demo_panel(store, landing, taxonomy, defs.resources["embedder"].embedder())
        console.print(
            f"  landed {len(landed)} simulated expert files in {store.url(landing)}; the sensor imports them:"
        )
        return run_sensor(defs, instance, "annotation_landing_sensor", on_step=show)

    # The daemon is not running here: the demo ticks the check-alert sensor itself, from before its first run.
    started = datetime.now(UTC)
    alerts_from = tick_sensor(defs, instance, CHECK_ALERT_SENSOR).cursor
    reports = materialize_all(defs, instance, on_step=show, handlers={dg.AssetKey("annotation_batches"): import_panel})
    tick_sensor(defs, instance, CHECK_ALERT_SENSOR, alerts_from)
    if not all(r.success for r in reports):
        raise click.ClickException("the demo stopped at a failed step (see above)")
    _print_status(profile.root, profile.catalog_path)
    console.print("agreement     emonet agreement (per-emotion alpha, kappa, human ceiling)")
    store = Store(profile.root, _storage_options())
    console.print(f"evaluation    {store.url('reports/model_evaluation/per_emotion_spearman.png')} (model vs human)")
    console.print(f"fairness      {store.url('reports/fairness/report.html')} (its summary: fairness_report in the UI)")
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


@main.command()
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

    profile = _profile(ctx.obj["profile"])
    if not shards and not missing:
        raise click.ClickException("name shards (shard-00000, shard-00000...shard-00004) or pass --missing")
    defs = build_definitions(profile)
    instance = _instance()
    node = defs.resolve_asset_graph().get(dg.AssetKey("generated_images"))
    known = node.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    store = Store(profile.root, _storage_options())
    if not known or not (store.has_table(StoredTable.PROMPT_DESIGN) or store.has_table(StoredTable.GENERATED_IMAGES)):
        # A new root or a new Dagster instance: the design and its shards first (prompt_shards registers them).
        _materialize_missing(defs, instance, store, ["prompt_shards"], always=("prompt_shards",))
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
            mark = "[green]ok[/green]  " if report.success else "[red]FAIL[/red]"
            label = escape(f"[{start}...{end}]")
            console.print(f"  {mark} generated_images {label}  {report.seconds:5.1f}s  run {report.run_id}")
            for record in instance.all_logs(report.run_id):
                if record.level == logging.WARNING and not record.is_dagster_event:
                    console.print(f"       [yellow]warning[/yellow] {escape(record.user_message)}", soft_wrap=True)
            if report.interrupted:
                outcome.interrupted = True
                return outcome
            if report.success:
                outcome.succeeded += shards
                continue
            if any(f.startswith("manifest_matches_shards") for f in report.checks_failed):
                lost = missing_images(store, store.read_table(StoredTable.GENERATED_IMAGES))
                if lost.height:  # the command's closing message names them and the repair
                    outcome.generated += shards
                    outcome.missing_files = lost
                    return outcome
            for failure in report.checks_failed:
                console.print(f"       [red]check failed[/red] {escape(failure)}", soft_wrap=True)
            if not report.checks_failed:
                console.print(f"       [red]{escape(report.error or 'step failed')}[/red]", soft_wrap=True)
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


def _materialize_missing(defs, instance, store, needed: list[str], always: tuple[str, ...] = ()) -> None:
    """Materialize, through Dagster so that their lineage is recorded as the demo's would be, the assets a command
    needs that the storage root lacks, with their missing upstream: on a new root `import-annotations` needs the
    taxonomy and `generate` the prompt design and its shards. Only unpartitioned assets are made so; `always`
    names assets made even when present (prompt_shards registers its partitions in a new Dagster instance)."""
    import dagster as dg

    from emonet_assets.runner import materialize_step, plan

    graph = defs.resolve_asset_graph()
    wanted, todo = set(), [dg.AssetKey(name) for name in needed]
    while todo:
        key = todo.pop()
        if key not in wanted:
            wanted.add(key)
            todo += graph.get(key).parent_keys
    for keys in plan(defs):
        names = [k.to_user_string() for k in keys if k in wanted]
        absent = [n for n in names if not store.table_partitions(n)]
        if not absent and not set(names) & set(always):
            continue
        if graph.get(keys[0]).partitions_def is not None:
            raise click.ClickException(
                f"nothing materialized under {store.root} yet ({', '.join(names)} missing): "
                "run `emonet demo`, or `emonet generate` for the images"
            )
        report = materialize_step(defs, instance, keys)
        mark = "[green]ok[/green]  " if report.success else "[red]FAIL[/red]"
        label = _step_label(defs, report.assets)
        why = "needed, not yet under the root" if absent else "registers its partitions in this Dagster instance"
        console.print(f"  {mark} {escape(label):<30} {report.seconds:5.1f}s  ({why})")
        if not report.success:
            raise click.ClickException(f"materializing {label} failed: {report.error or 'see above'}")


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


@main.command("import-annotations")
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
    import dagster as dg

    from emonet_assets.definitions import build_definitions
    from emonet_assets.defs.annotation.partitions import annotation_batch_partitions
    from emonet_assets.lib.annotation.annotation_batches import batch_log
    from emonet_assets.lib.annotation.annotation_import import validate_collection_name
    from emonet_assets.lib.annotation.landing import BatchDeclaration, land_file
    from emonet_assets.lib.shared.storage import Store
    from emonet_assets.runner import consensus_refresh_selection, materialize_step, plan

    if collection:
        try:
            validate_collection_name(collection)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--collection") from exc
    try:
        declaration = BatchDeclaration(fmt, collection, positional_ids)
    except ValueError as exc:
        raise click.UsageError(f"--collection and --positional-ids: {exc}") from exc
    profile = _profile(ctx.obj["profile"])
    store = Store(profile.root, _storage_options())
    defs = build_definitions(profile)
    instance = _instance()
    _materialize_missing(defs, instance, store, ["taxonomy"])
    batch_key = dg.AssetKey("annotation_batches")
    log = batch_log(store)
    imported_before = set(log.filter(log["status"] == "imported")["batch_id"].to_list())
    outcomes = []
    for path in paths:
        _, sha, redeclared = land_file(store, profile.annotation.landing, path.name, path.read_bytes(), declaration)
        if sha in imported_before and not redeclared:
            outcomes.append((path, sha, "already imported: no change", None))
            continue
        if not instance.has_dynamic_partition(annotation_batch_partitions.name, sha):
            instance.add_dynamic_partitions(annotation_batch_partitions.name, [sha])
        report = materialize_step(defs, instance, [batch_key], partition=sha, log_level="CRITICAL")
        done = "re-imported" if sha in imported_before else "imported"
        outcomes.append((path, sha, done if report.success else report.error, report.run_id))
    log = batch_log(store)
    rows, batches, failures, notes = [], [], [], []
    # Consensus is rebuilt only when ratings changed: a new batch that accepted some, or a re-imported one.
    changed = False
    for path, sha, outcome, _ in outcomes:
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
    console.print(_batches_table(rows))
    for batch in batches:
        console.print(escape(batch), soft_wrap=True)
    for note in notes:
        console.print(f"[yellow]note[/yellow] {escape(note)}", soft_wrap=True)
    for failure in failures:
        console.print(f"[red]rejected[/red] {escape(failure)}", soft_wrap=True)
    if changed:
        graph = defs.resolve_asset_graph()
        downstream = consensus_refresh_selection().resolve(graph)
        for keys in plan(defs):
            if set(keys) & downstream:
                report = materialize_step(defs, instance, keys)
                mark = "[green]ok[/green]  " if report.success else "[red]FAIL[/red]"
                checks = f"checks {report.checks_passed}/{report.checks_passed + len(report.checks_failed)}"
                label = _step_label(defs, report.assets)
                console.print(f"  {mark} {escape(label):<40} {checks:<12} {report.seconds:5.1f}s")
                for failure in report.checks_failed:
                    console.print(f"       [red]check failed[/red] {escape(failure)}")
                if not report.success:
                    if report.output_tail:
                        console.print(escape(report.output_tail), soft_wrap=True)
                    raise click.ClickException(report.error or "refreshing consensus failed")
    elif any(outcome == "imported" for _, _, outcome, _ in outcomes):
        console.print("no new ratings accepted: consensus is unchanged and was not rebuilt")
    if failures:
        raise click.ClickException(f"{len(failures)} file(s) not imported (see above)")


def _batches_table(rows: list[list[str]]) -> Table:
    """File, outcome and counts only, so that it fits 80 columns: batch ids and reject reasons go on lines below,
    and a long file name folds rather than pushing a count out of sight."""
    table = Table(title="Annotation batches", title_justify="left")
    table.add_column("file", overflow="fold", min_width=12)
    table.add_column("outcome")
    for column in ("read", "accepted", "rejected", "skipped"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def _step_label(defs, assets: list[str]) -> str:
    """A step is named by its assets, or when it makes more than three (they would fill the line) by its node:
    the multi-asset's name (annotation_batches, model_evaluation, fairness_report), the dbt build by its models."""
    import dagster as dg

    if len(assets) <= 3:
        return ", ".join(assets)
    node = defs.resolve_asset_graph().get(dg.AssetKey.from_user_string(assets[0]))
    return f"dbt build: {len(assets)} models" if "dbt" in node.kinds else node.assets_def.node_def.name


@main.command()
@profile_option
@click.option("--collection", help="Only this collection (generated = the platform's own images).")
@click.pass_context
def agreement(ctx: click.Context, collection: str | None) -> None:
    """Per-emotion agreement: Krippendorff's alpha with 95% CI, mean quadratic kappa, human ceiling."""
    import polars as pl

    from emonet_assets.lib.shared.storage import Store

    store = Store(_profile(ctx.obj["profile"]).root, _storage_options())
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


@main.command()
@profile_option
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--model",
    "model_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A saved model folder (default: the newest emotion_model of the storage root).",
)
@click.option("--top", default=5, show_default=True, type=click.IntRange(1, 40), help="Emotions to print per image.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="csv and json write all 40 intensities per image.",
)
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write csv/json here (a .csv or .json name)."
)
@click.pass_context
def predict(
    ctx: click.Context, images: tuple[Path, ...], model_dir: Path | None, top: int, fmt: str, output: Path | None
) -> None:
    """Score image files with a saved emotion model: the top emotions with intensities (0–7), or all 40.

    Images come out in the order given."""
    import polars as pl

    from emonet_assets.lib.model.emotion_model import ModelCompatibilityError, ModelFileError
    from emonet_assets.lib.model.modeling import latest_model_dir, predict_files
    from emonet_assets.lib.shared.storage import Store
    from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy

    if output and fmt == "table":
        fmt = {".csv": "csv", ".json": "json"}.get(output.suffix.lower(), "")
        if not fmt:
            raise click.BadParameter(f"{output}: name a .csv or .json file, or pass --format", param_hint="--output")
    profile = _profile(ctx.obj["profile"])
    taxonomy = load_taxonomy()
    try:
        folder = model_dir or latest_model_dir(Store(profile.root, _storage_options()))
        scores, failed = predict_files(list(images), folder, taxonomy.version)
    except (FileNotFoundError, ModelCompatibilityError, ModelFileError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    names = {e.id: e.name for e in taxonomy.emotions}
    given = {str(path): i for i, path in enumerate(images)}
    scores = scores.with_columns(emotion=pl.col("emotion_id").replace_strict(names, default=None)).sort(
        pl.col("path").replace_strict(given, return_dtype=pl.Int64), maintain_order=True
    )
    if fmt == "table":
        for (path,), part in scores.group_by("path", maintain_order=True):
            table = Table(title=escape(str(path)), title_justify="left")
            table.add_column("emotion")
            table.add_column("intensity (0–7)", justify="right")
            for row in part.sort("predicted", descending=True, maintain_order=True).head(top).iter_rows(named=True):
                table.add_row(escape(row["emotion"]), f"{row['predicted']:.2f}")
            console.print(table)
    else:
        wide = scores.pivot(on="emotion_id", index="path", values="predicted", maintain_order=True)
        text = wide.write_csv() if fmt == "csv" else wide.write_json()
        if output:
            output.write_text(text, encoding="utf-8")
            console.print(f"wrote {wide.height} images x {wide.width - 1} emotions to {escape(str(output))}")
        else:
            click.echo(text, nl=False)
    for row in failed.iter_rows(named=True):
        click.echo(f"skipped {row['path']}: {row['reason']}", err=True)
    if failed.height:
        raise click.ClickException(f"{failed.height} of {len(images)} image(s) could not be scored (see above)")


@main.command("verify-release")
@profile_option
@click.argument("path")
def verify_release(path: str) -> None:
    """Check a release folder (local or s3://), or the releases/latest.json that points at one, against its
    manifest.json: names every missing, changed or unexpected file; exits non-zero when anything differs."""
    from emonet_assets.lib.release.verify import verify

    store = _release_store(path)
    result = verify(store)
    if result.release_id is None:
        raise click.ClickException(" ".join(result.problems))
    if not result.ok:
        for difference in result.differences():
            console.print(f"[red]{escape(difference)}[/red]", soft_wrap=True)
        raise click.ClickException(f"{store.root}: {len(result.differences())} difference(s) from its manifest")
    console.print(
        f"OK release {result.release_id}: {result.files} files ({_format_bytes(result.bytes)}) "
        f"match {store.root}/manifest.json"
    )


def _release_store(path: str):
    """The release folder a path names: the folder itself, or the one a latest.json pointer beside it names."""
    import json
    import posixpath

    from emonet_assets.lib.shared.storage import Store

    parent, name = posixpath.split(path.rstrip("/"))
    folder = Store(parent or ".", _storage_options())
    if folder.fs.isfile(folder.url(name)):
        try:
            release_id = json.loads(folder.read_bytes(name))["release_id"]
        except (ValueError, KeyError, TypeError) as exc:
            raise click.ClickException(
                f"{path} is a file, not a release folder or a latest.json pointer: {type(exc).__name__}: {exc}"
            ) from exc
        store = folder.child(release_id)
        pointer = f" (named by {path})"
    else:
        store, pointer = Store(path, _storage_options()), ""
    if not store.fs.isdir(store.url("")):
        raise click.ClickException(f"release folder {store.root}{pointer} does not exist")
    return store


@main.command()
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
    _print_status(storage["root"], catalog_path(name, storage["root"], storage.get("catalog")))


def _print_status(root: str, catalog: str) -> None:
    """Read from the storage root alone, the system of record, so that it is quick (no Dagster, no profile
    validation) and shows what is there, whichever Dagster instance wrote it."""
    from emonet_assets.lib.shared.storage import FILE_ASSETS, Store

    store = Store(root, _storage_options())
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
        table.add_row(info.name, f"{info.partitions:,}", f"{info.rows:,}", _format_bytes(info.bytes), _written(info))
    for info in folders:
        table.add_row(info.name, f"{info.partitions:,}", "-", _format_bytes(info.bytes), _written(info))
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


def _alerts_since(store, started) -> list[tuple[str, str]]:
    """(kind, severity) of each alert sent since `started`."""
    import polars as pl

    if not store.has_table(StoredTable.ALERTS):
        return []
    return (
        store.read_table(StoredTable.ALERTS).filter(pl.col("created_at") >= started).select("kind", "severity").rows()
    )


def _storage_options() -> dict:
    endpoint = os.environ.get("EMONET_S3_ENDPOINT_URL")
    return {"endpoint_url": endpoint} if endpoint else {}


def _format_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


if __name__ == "__main__":
    sys.exit(main())
