"""How the commands print: one console, one way to print a step's report, and the tables they show."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:  # the runner brings Dagster: seconds that `emonet status` and `--help` do not pay
    from emonet_assets.runner import StepReport

console = Console(highlight=False, soft_wrap=True)


def print_step(report: StepReport, label: str, detail: str = "", headline_only: bool = False) -> None:
    """A step's report as every command prints it: the runner's status line (with what this command adds to it),
    then the checks that did not pass and the error, unless the command's closing message says them."""
    from emonet_assets.runner import step_lines

    lines = step_lines(report, label)
    if detail:
        lines[0] += f"  {detail}"
    for line in lines[:1] if headline_only else lines:
        console.print(line, soft_wrap=True)


def batches_table(rows: list[list[str]]) -> Table:
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


def format_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def leaderboard_table(title: str, rows: list[dict]) -> Table:
    """One collection's leaderboard rows (model_leaderboard): rank, model, mean Spearman with its 95% CI, kappa,
    F1, MAE, coverage, the paired difference from the human ceiling with its p-value, and the p-value against the
    best (no draw on the far side of zero: under one in the number of resamples); why a model is not ranked folds
    under its name."""

    def number(value) -> str:
        return "-" if value is None or value != value else f"{value:.3f}"

    table = Table(title=title, title_justify="left", padding=(0, 0))
    table.add_column("#", justify="right")
    table.add_column("model", overflow="fold", min_width=16)
    for column in ("Spearman\n[95% CI]", "kappa", "F1", "MAE", "cov.", "Δ human\n(p)", "p vs\nbest"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in rows:
        ci = (
            f"\n{r['mean_spearman_ci_low']:.2f}–{r['mean_spearman_ci_high']:.2f}"
            if r["mean_spearman_ci_low"] is not None and r["mean_spearman_ci_low"] == r["mean_spearman_ci_low"]
            else ""
        )
        model = escape(f"{r['model_key']} ({r['kind']})") + (
            f"\n[dim]{escape(r['note'])}[/dim]" if r["note"] and r["kind"] not in ("human", "baseline") else ""
        )
        table.add_row(
            str(r["rank"] or "-"),
            model,
            number(r["mean_spearman"]) + ci,
            number(r["mean_kappa_quadratic"]),
            number(r["mean_presence_f1"]),
            number(r["mean_mae"]),
            f"{r['coverage']:.0%}",
            _versus(r, "human") if r["kind"] != "human" else "-",
            _p(r, "best"),
        )
    return table


def _p(row: dict, reference: str) -> str:
    p = row[f"p_vs_{reference}"]
    if p is None or p != p:
        return "-"
    return f"<{1 / row['resamples']:.3g}" if p == 0 else f"{p:.3f}"


def _versus(row: dict, reference: str) -> str:
    """A paired difference above its p-value in brackets, e.g. `+0.120` over `(0.004)`."""
    difference = row[f"diff_vs_{reference}"]
    if difference is None or difference != difference:
        return "-"
    return f"{difference:+.3f}\n({_p(row, reference)})"
