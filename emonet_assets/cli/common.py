"""What the commands share: the --profile option, the profile and Dagster instance they run against, the
storage options, and materializing what a command needs that the storage root lacks."""

from __future__ import annotations

import os
from pathlib import Path

import click

from emonet_assets.cli.render import console, print_step


def dagster_instance():
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


def chosen_profile(name: str | None):
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


def storage_options() -> dict:
    endpoint = os.environ.get("EMONET_S3_ENDPOINT_URL")
    return {"endpoint_url": endpoint} if endpoint else {}


def step_label(defs, assets: list[str]) -> str:
    """A step is named by its assets, or when it makes more than three (they would fill the line) by its node:
    the multi-asset's name (annotation_batches, model_evaluation, fairness_report), the dbt build by its models."""
    import dagster as dg

    if len(assets) <= 3:
        return ", ".join(assets)
    node = defs.resolve_asset_graph().get(dg.AssetKey.from_user_string(assets[0]))
    return f"dbt build: {len(assets)} models" if "dbt" in node.kinds else node.assets_def.node_def.name


def materialize_missing(defs, instance, store, needed: list[str], always: tuple[str, ...] = ()) -> None:
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
        label = step_label(defs, report.assets)
        why = "needed, not yet under the root" if absent else "registers its partitions in this Dagster instance"
        # The error goes into the command's closing message, so only the status line is printed here.
        print_step(report, label, f"({why})", headline_only=True)
        if not report.success:
            raise click.ClickException(f"materializing {label} failed: {report.error or 'see above'}")
