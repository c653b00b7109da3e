"""`emonet register-predictions`, `emonet evaluate` and `emonet leaderboard`: a model's scores in, one model's
metrics, and every model side by side."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click
from rich.markup import escape

from emonet_assets.cli.common import chosen_profile, dagster_instance, profile_option, step_label, storage_options
from emonet_assets.cli.render import console, leaderboard_table, print_step
from emonet_assets.lib.shared.tables import Table as StoredTable

FORMATS = ("table", "csv", "json")
SCALES = ("0-7", "0-1", "logit", "rank")


@click.command("register-predictions")
@profile_option
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="The model's name; a file with other content under it is a new version.")
@click.option(
    "--scale",
    required=True,
    type=click.Choice(SCALES),
    help="What the scores are: intensities 0-7 or 0-1, logits, or ranks (order only).",
)
@click.option("--collection", help="The external collection the file's images belong to (default: generated).")
@click.option("--license", "license_", help="The model's license, recorded in the registry.")
@click.option("--source", help="Where the model comes from (a URL or a paper), recorded in the registry.")
@click.pass_context
def register_predictions(
    ctx: click.Context,
    path: Path,
    name: str,
    scale: str,
    collection: str | None,
    license_: str | None,
    source: str | None,
) -> None:
    """Land a predictions file (CSV, JSONL or Parquet; wide or long), register it as a model version, score it on
    the evaluation images and refresh the leaderboard."""
    profile = chosen_profile(ctx.obj["profile"])
    store, _ = _register(profile, path, _declaration(name, scale, collection, license_, source), show=True)
    _print_board(store, None, "table")


def _declaration(*fields):
    from emonet_assets.lib.leaderboard.registry import PredictionsDeclaration, RegistryError

    try:
        return PredictionsDeclaration(*fields)
    except RegistryError as exc:
        raise click.UsageError(str(exc)) from exc


def _register(profile, path: Path, declaration, show: bool):
    """Land the file, then registry, the file's predictions and the leaderboard, through Dagster; returns the store
    and the model's key. `show` prints each step and the accepted and rejected rows by reason."""
    import dagster as dg

    from emonet_assets.definitions import build_definitions
    from emonet_assets.lib.leaderboard.registry import land_predictions, model_key
    from emonet_assets.lib.shared.storage import Store
    from emonet_assets.runner import materialize_step

    store = Store(profile.root, storage_options())
    missing = [t for t in (StoredTable.CONSENSUS_LABELS, StoredTable.SPLITS) if not store.has_table(t)]
    if missing:
        raise click.ClickException(
            f"nothing to score against under {store.root} yet ({', '.join(missing)} missing): run `emonet demo`"
        )
    sha = land_predictions(store, profile.leaderboard.landing, path.name, path.read_bytes(), declaration)
    key = model_key(declaration.name, sha)
    defs = build_definitions(profile)
    instance = dagster_instance()
    for keys, partition in ((["model_registry"], None), (["model_predictions"], key), (["model_leaderboard"], None)):
        report = materialize_step(defs, instance, [dg.AssetKey(k) for k in keys], partition=partition)
        if show:
            print_step(report, step_label(defs, report.assets))
        if not report.success:
            raise click.ClickException(f"{path.name}: {report.error or 'see above'}")
    if show:
        accepted = store.read_table(StoredTable.MODEL_PREDICTIONS, [key]).height
        rejects = store.read_table(StoredTable.MODEL_PREDICTION_REJECTS, [key])
        console.print(
            f"{escape(path.name)}: registered as {escape(key)}; {accepted + rejects.height:,} scores read, "
            f"{accepted:,} accepted, {rejects.height:,} rejected",
            soft_wrap=True,
        )
        for reason, rows in rejects.group_by("reason").len().sort("len", descending=True).iter_rows():
            example = rejects.filter(rejects["reason"] == reason).row(0, named=True)
            detail = escape(str(example["detail"]))
            console.print(f"  [yellow]{rows:,} {reason}[/yellow], e.g. row {example['source_row']}: {detail}")
    return store, key


@click.command()
@profile_option
@click.option("--predictions", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="The model's name.")
@click.option("--collection", help="The collection the file's images belong to and that it is scored on.")
@click.option("--scale", type=click.Choice(SCALES), default="0-7", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def evaluate(ctx: click.Context, path: Path, name: str, collection: str | None, scale: str, fmt: str) -> None:
    """Register a predictions file, score it and print its metrics on one collection: mean Spearman (with CI),
    kappa, F1, MAE and coverage on intensity collections; ROC AUC and F1 pooled over items on binary ones."""
    from emonet_assets.lib.leaderboard.evaluate import evaluation_report

    profile = chosen_profile(ctx.obj["profile"])
    if collection and collection not in profile.leaderboard.collections:
        wider = profile.leaderboard.model_copy(update={"collections": [*profile.leaderboard.collections, collection]})
        profile = profile.model_copy(update={"leaderboard": wider})
    # JSON alone goes to stdout: what the steps print (a new Dagster instance says so) goes to stderr.
    with contextlib.redirect_stdout(sys.stderr if fmt == "json" else sys.stdout):
        store, key = _register(profile, path, _declaration(name, scale, collection), show=fmt == "table")
    report = evaluation_report(
        store.read_table(StoredTable.MODEL_LEADERBOARD),
        store.read_table(StoredTable.MODEL_LEADERBOARD_BINARY),
        store.read_table(StoredTable.MODEL_PREDICTIONS, [key]),
        key,
        collection or "generated",
    )
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))
        return
    console.print(
        f"{escape(key)} on {escape(report['collection'])}: {report['n_images']:,} images, {report['n_items']:,} items"
    )
    for metric, value in report["metrics"].items():
        console.print(f"  {metric:<24} {'-' if value is None else f'{value:.3f}'}")


@click.command()
@profile_option
@click.option("--collection", help="Only this evaluation collection (generated = the test split).")
@click.option(
    "--level",
    default="emotion",
    show_default=True,
    help="The rollup the table is at: emotion, group, valence or one of the profile's mappings (by its name).",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.pass_context
def leaderboard(ctx: click.Context, collection: str | None, level: str, fmt: str) -> None:
    """Every registered model on the same images: mean Spearman vs the consensus median with its paired bootstrap
    95% CI, kappa, presence F1, MAE, coverage and the paired difference from the human ceiling, beside the human
    ceiling and a random baseline; per emotion or at a rollup level."""
    from emonet_assets.lib.shared.storage import Store

    _print_board(Store(chosen_profile(ctx.obj["profile"]).root, storage_options()), collection, fmt, level)


def _print_board(store, collection: str | None, fmt: str, level: str = "emotion") -> None:
    import polars as pl

    if not store.has_table(StoredTable.MODEL_LEADERBOARD):
        raise click.ClickException(
            f"no leaderboard under {store.root} yet: run `emonet demo`, or `emonet register-predictions FILE`"
        )
    board = store.read_table(StoredTable.MODEL_LEADERBOARD)
    rollups = board["rollup"].unique().sort().to_list()
    if level not in rollups:
        raise click.ClickException(f"no level {level!r} on the leaderboard; known: {', '.join(rollups)}")
    board = board.filter(pl.col("rollup") == level)
    if collection:
        known = board["collection"].unique().sort().to_list()
        if collection not in known:
            raise click.ClickException(f"no collection {collection!r} on the leaderboard; known: {', '.join(known)}")
        board = board.filter(pl.col("collection") == collection)
    if fmt == "csv":
        click.echo(board.write_csv(), nl=False)
    elif fmt == "json":
        click.echo(board.write_json())
    else:
        for (name,), part in board.group_by("collection", maintain_order=True):
            title = f"{name}, per {level} ({part['resamples'][0]:,} paired resamples)"
            console.print(leaderboard_table(title, part.to_dicts()))
