"""`emonet`: the platform's command line. Each command lives in its own module; they print through cli.render."""

from __future__ import annotations

import click

from emonet_assets.cli.annotate import annotate
from emonet_assets.cli.annotations import agreement, import_annotations
from emonet_assets.cli.common import profile_option
from emonet_assets.cli.demo import demo
from emonet_assets.cli.generate import generate
from emonet_assets.cli.leaderboard import evaluate, leaderboard, register_predictions
from emonet_assets.cli.predict import predict
from emonet_assets.cli.release import verify_release
from emonet_assets.cli.status import profiles, status


@click.group()
@profile_option
@click.pass_context
def main(ctx: click.Context) -> None:
    """Build and maintain the EmoNet-Face benchmark."""
    ctx.ensure_object(dict).setdefault("profile", None)


for command in (
    profiles,
    demo,
    generate,
    import_annotations,
    annotate,
    agreement,
    register_predictions,
    evaluate,
    leaderboard,
    predict,
    verify_release,
    status,
):
    main.add_command(command)
