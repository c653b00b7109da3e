"""`emonet predict`: emotion intensities of image files from a saved emotion model."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from emonet_assets.cli.common import chosen_profile, profile_option, storage_options
from emonet_assets.cli.render import console


@click.command()
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
    profile = chosen_profile(ctx.obj["profile"])
    taxonomy = load_taxonomy()
    try:
        folder = model_dir or latest_model_dir(Store(profile.root, storage_options()))
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
