"""`emonet annotate push|pull|status|serve`: the Label Studio loop for teams without the daemon. Push and pull run
the same asset and sensors the daemon runs; serve is `make annotate`'s local Label Studio."""

from __future__ import annotations

import os
import secrets
import signal
import threading
from pathlib import Path
from urllib.parse import urlsplit

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
from emonet_assets.cli.render import console, print_step
from emonet_assets.lib.shared.tables import Table as StoredTable

PULL_SENSOR, LANDING_SENSOR = "label_studio_pull_sensor", "annotation_landing_sensor"


@click.group()
def annotate() -> None:
    """Rate images in Label Studio: push tasks, pull what the experts submitted, see where each project stands.
    The server is the profile's annotation.label_studio.url; its API token comes from EMONET_LABEL_STUDIO_TOKEN."""


class _Loop:
    def __init__(self, profile_name: str | None):
        from emonet_assets.definitions import build_definitions
        from emonet_assets.lib.shared.storage import Store

        self.profile = chosen_profile(profile_name)
        self.store = Store(self.profile.root, storage_options())
        self.defs = build_definitions(self.profile)
        self.instance = dagster_instance()

    @property
    def resource(self):
        """The Label Studio resource with its token read from the environment, as a run would have it."""
        return self.defs.resources["label_studio"].process_config_and_initialize()

    def push(self) -> None:
        from emonet_assets.runner import materialize_step

        materialize_missing(self.defs, self.instance, self.store, ["taxonomy"])
        report = materialize_step(self.defs, self.instance, [StoredTable.LABEL_STUDIO_TASKS.key], log_level="CRITICAL")
        print_step(report, StoredTable.LABEL_STUDIO_TASKS.value, headline_only=True)
        if not report.success:
            raise click.ClickException(report.error or "pushing tasks failed")
        event = self.instance.get_latest_materialization_event(StoredTable.LABEL_STUDIO_TASKS.key)
        metadata = event.asset_materialization.metadata
        console.print(f"pushed {metadata['pushed_now'].value} new task(s) to {self.resource.url}")
        console.print(metadata["projects"].value, soft_wrap=True)

    def pull(self, quiet_when_idle: bool = False) -> bool:
        """One tick of the pull sensor, then the landing sensor's import and the consensus refresh; True when
        ratings were imported. `quiet_when_idle`: say nothing when nothing was submitted (serve's loop)."""
        from emonet_assets.lib.annotation.annotation_batches import batch_log
        from emonet_assets.runner import automation_cursor, run_automation, run_sensor, skip_message, tick_sensor

        before = automation_cursor(self.defs, self.instance)
        result = tick_sensor(self.defs, self.instance, PULL_SENSOR, log_level="CRITICAL")
        message = skip_message(result) or ""
        if not (quiet_when_idle and message.startswith("no annotation submitted")):
            console.print(escape(message), soft_wrap=True)
        reports = run_sensor(self.defs, self.instance, LANDING_SENSOR, log_level="CRITICAL")
        log = batch_log(self.store)
        for report in reports:
            row = log.filter(log["batch_id"] == report.partition)
            counts = row.select("rows_read", "accepted", "rejected", "skipped").rows(named=True)
            console.print(
                f"batch {report.partition[:12]}: "
                + (", ".join(f"{k} {v}" for k, v in counts[0].items()) if counts else report.error or "failed"),
                soft_wrap=True,
            )
        if not reports:
            return False
        refreshed = run_automation(
            self.defs,
            self.instance,
            before,
            on_step=lambda r: print_step(r, step_label(self.defs, r.assets)),
            log_level="CRITICAL",
        )
        if failed := next((r for r in refreshed if not r.success), None):
            raise click.ClickException(f"refreshing consensus failed at {step_label(self.defs, failed.assets)}")
        if StoredTable.CONSENSUS_LABELS.value not in {asset for r in refreshed for asset in r.assets}:
            from emonet_assets.cli.annotations import _unrecorded_upstream

            if unrecorded := _unrecorded_upstream(self.defs, self.instance):
                console.print(
                    f"[yellow]note[/yellow] consensus was not refreshed: the Dagster instance at "
                    f"{self.instance.root_directory} never materialized {', '.join(unrecorded)}; use the Dagster "
                    "home the storage root was built with",
                    soft_wrap=True,
                )
        return True


@annotate.command()
@profile_option
@click.pass_context
def push(ctx: click.Context) -> None:
    """Push the images that still need expert ratings and the re-annotation queue (tasks already there stay)."""
    _Loop(ctx.obj["profile"]).push()


@annotate.command()
@profile_option
@click.pass_context
def pull(ctx: click.Context) -> None:
    """Pull the annotations submitted since the last pull, import them as batches and refresh consensus."""
    _Loop(ctx.obj["profile"]).pull()


@annotate.command()
@profile_option
@click.pass_context
def status(ctx: click.Context) -> None:
    """Each project pushed to: tasks, annotated tasks, annotations, the last one pulled, how many wait."""
    from emonet_assets.lib.annotation.label_studio import (
        LabelStudioError,
        binary_config,
        intensity_config,
        project_status,
        pulled_through,
        pushed_projects,
    )
    from emonet_assets.lib.taxonomy.taxonomy import Taxonomy

    loop = _Loop(ctx.obj["profile"])
    projects = pushed_projects(loop.store)
    if not projects:
        raise click.ClickException(f"no task pushed from {loop.store.root} yet: emonet annotate push")
    taxonomy = Taxonomy.from_table(loop.store.read_table(StoredTable.TAXONOMY))
    settings = loop.profile.annotation.label_studio
    expected = {
        title: binary_config()
        if settings.layout == "binary" and title.endswith(" ratings")
        else intensity_config(taxonomy)
        for title, _ in projects.values()
    }
    try:
        rows = project_status(
            loop.resource.client(),
            loop.resource.url,
            projects,
            pulled_through(loop.store, loop.profile.annotation.landing),
            expected,
        )
    except LabelStudioError as exc:
        raise click.ClickException(str(exc)) from exc
    table = Table(title=f"Label Studio at {loop.resource.url}", title_justify="left")
    for column in ("id", "project", "tasks", "annotated", "annotations", "pulled through", "waiting", "config"):
        table.add_column(column, justify="left" if column in ("project", "config") else "right")
    for r in rows:
        config = "[red]edited by hand[/red]" if r.edited else "platform's"
        table.add_row(
            str(r.id), escape(r.title), str(r.tasks), str(r.annotated_tasks), str(r.annotations),
            str(r.pulled_through), str(r.waiting), config,
        )  # fmt: skip
    console.print(table)


def _wait_for_stop(seconds: float) -> bool:
    """Sleep `seconds`; True when Ctrl-C or SIGTERM came. The handlers are set again before each wait: a Dagster
    run in between replaces them with its own, which only records the signal."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return stop.wait(seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@annotate.command()
@profile_option
@click.option(
    "--label-studio",
    "executable",
    type=click.Path(path_type=Path),
    default=".venv-label-studio/bin/label-studio",
    show_default=True,
    help="The label-studio executable (make label-studio installs it in its own venv).",
)
@click.option("--data-dir", type=click.Path(path_type=Path), default=".emonet/label-studio", show_default=True)
@click.option("--every", type=float, default=30, show_default=True, help="Seconds between pulls.")
@click.pass_context
def serve(ctx: click.Context, executable: Path, data_dir: Path, every: float) -> None:
    """Start Label Studio on 127.0.0.1 (the profile's URL port) with the storage root's images, push the tasks,
    then pull and import what is submitted every --every seconds until Ctrl-C, which stops the server."""
    from dagster._core.errors import DagsterExecutionInterruptedError

    from emonet_assets.lib.annotation.label_studio import TOKEN_ENV
    from emonet_assets.lib.annotation.label_studio_server import LabelStudioServer, LabelStudioServerError

    profile = chosen_profile(ctx.obj["profile"])
    url = urlsplit(profile.annotation.label_studio.url)
    if url.hostname not in ("127.0.0.1", "localhost"):
        raise click.ClickException(f"annotation.label_studio.url is {url.geturl()}: serve starts a local one only")
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = data_dir / "emonet-login.txt"
    if not secret.exists():
        secret.write_text(f"{secrets.token_urlsafe(12)}\n{secrets.token_hex(20)}\n")
        secret.chmod(0o600)
    password, token = secret.read_text().split()
    server = LabelStudioServer(
        executable=executable.absolute(),
        data_dir=data_dir,
        document_root=Path(os.path.abspath(profile.annotation.label_studio.local_files_root or profile.root)),
        username="admin@emonet.local",
        password=password,
        token=token,
        port=url.port or 8080,
    )
    console.print(f"starting Label Studio on {server.url} (data in {data_dir}, log {server.log_path})")
    try:
        seconds = server.start()
    except LabelStudioServerError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        console.print(f"up in {seconds:.0f} s")
        os.environ[TOKEN_ENV] = token
        loop = _Loop(ctx.obj["profile"])
        loop.push()
        console.print(
            f"\nOpen {server.url} and log in as admin@emonet.local with password {password}\n"
            f"API token (for `emonet annotate pull|status` in another shell): export {TOKEN_ENV}={token}\n"
            f"Submitted ratings are pulled and imported every {every:.0f} s; Ctrl-C stops Label Studio.",
            soft_wrap=True,
        )
        while not _wait_for_stop(every):
            loop.pull(quiet_when_idle=True)
        console.print("stopping Label Studio")
    except (KeyboardInterrupt, DagsterExecutionInterruptedError):  # Ctrl-C during a pull, as Dagster raises it
        console.print("stopping Label Studio")
    finally:
        server.stop()
