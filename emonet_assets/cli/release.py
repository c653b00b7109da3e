"""`emonet verify-release`: a release folder against its manifest."""

from __future__ import annotations

import click
from rich.markup import escape

from emonet_assets.cli.common import profile_option, storage_options
from emonet_assets.cli.render import console, format_bytes


@click.command("verify-release")
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
        f"OK release {result.release_id}: {result.files} files ({format_bytes(result.bytes)}) "
        f"match {store.root}/manifest.json"
    )


def _release_store(path: str):
    """The release folder a path names: the folder itself, or the one a latest.json pointer beside it names."""
    import json
    import posixpath

    from emonet_assets.lib.shared.storage import Store

    parent, name = posixpath.split(path.rstrip("/"))
    folder = Store(parent or ".", storage_options())
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
        store, pointer = Store(path, storage_options()), ""
    if not store.fs.isdir(store.url("")):
        raise click.ClickException(f"release folder {store.root}{pointer} does not exist")
    return store
