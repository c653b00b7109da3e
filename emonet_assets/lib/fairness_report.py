"""The fairness report: one self-contained HTML page (inline CSS, figures as base64 PNG, no scripts or external
links, so it opens from an artifact store or a mail attachment) and a short Markdown summary for asset metadata.

Both take the tables of `emonet_assets.lib.fairness` by name (see TABLES); a table that is absent or empty is said
to be so rather than left out, so a reader can tell "not computed" from "nothing to report".
"""

from __future__ import annotations

import base64
import html
import io
import math

import matplotlib
import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from emonet_assets.lib.fairness import HIGHER_IS_BETTER, SEPARATOR

GROUP_METRICS = "group_metrics"
DISPARITIES = "disparities"
DATA_BALANCE = "data_balance"
AGREEMENT = "agreement"
EMOTION_BY_GROUP = "emotion_by_group"
GATES = "gates"
TABLES = (GROUP_METRICS, DISPARITIES, DATA_BALANCE, AGREEMENT, EMOTION_BY_GROUP, GATES)
VERSION_KEYS = ("model", "data", "taxonomy")
METRIC_LABELS = {
    "mean_spearman": "mean Spearman rho (higher is better)",
    "mean_mae": "mean absolute error (lower is better)",
    "mean_presence_f1": "mean presence F1 (higher is better)",
}
LIST_SHOWN = 8
NOTES_IN_MARKDOWN = 8
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr.small td { color: #888; font-style: italic; }
tr.failed td { background: #fde8e8; }
img { max-width: 100%; display: block; margin: 0.6em 0; }
.versions td:first-child { font-weight: bold; }
.empty { color: #888; font-style: italic; }
"""


def _text(value: object) -> str:
    """One cell as text: floats to three decimals, long lists cut short with the count left out."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.3f}"
    if isinstance(value, list):
        if not value:
            return "none"
        shown = ", ".join(str(v) for v in value[:LIST_SHOWN])
        return shown + (f", … (+{len(value) - LIST_SHOWN} more)" if len(value) > LIST_SHOWN else "")
    return str(value)


def _html_table(frame: pl.DataFrame, row_classes: list[str] | None = None) -> str:
    if frame.is_empty():
        return '<p class="empty">No rows.</p>'
    header = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for r, row in enumerate(frame.iter_rows()):
        css = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{html.escape(_text(v))}</td>" for v in row) + "</tr>")
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _png(figure: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}">'


def _single_attributes(group_table: pl.DataFrame) -> pl.DataFrame:
    """Rows of the single attributes: intersections have too many groups for a bar chart and stay in the table."""
    return group_table.filter(~pl.col("attribute").str.contains(SEPARATOR, literal=True))


def _metric_figure(group_table: pl.DataFrame, metric: str) -> str:
    """Bars per group with 95% CI whiskers, one panel per attribute; too-small groups hatched and without CI, so
    their bars read as indicative only."""
    rows = _single_attributes(group_table).filter(pl.col("metric") == metric)
    attributes = rows["attribute"].unique(maintain_order=True).to_list()
    heights = [max(1, rows.filter(pl.col("attribute") == a).height) for a in attributes]
    figure = Figure(figsize=(8, 0.3 * sum(heights) + 1.0 * len(attributes) + 0.5), layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(len(attributes), 1, squeeze=False, sharex=True, height_ratios=heights)[:, 0]
    for axes, attribute in zip(panels, attributes, strict=True):
        part = rows.filter(pl.col("attribute") == attribute)
        value, low, high = (
            part[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in ("value", "ci_low", "ci_high")
        )
        small = part["too_small"].to_numpy()
        positions = np.arange(part.height)[::-1]
        shown = np.nan_to_num(value)
        errors = np.nan_to_num(np.vstack([value - low, high - value])).clip(0, None)
        bars = axes.barh(positions, shown, xerr=errors, color=np.where(small, "#cccccc", "#4c72b0"), ecolor="#333333")
        for bar, is_small in zip(bars, small, strict=True):
            bar.set_hatch("//" if is_small else "")
        labels = [
            f"{g} (n={n}{', too small' if s else ''})"
            for g, n, s in zip(part["group"], part["n_images"], small, strict=True)
        ]
        axes.set_yticks(positions, labels, fontsize=8)
        axes.axvline(0, color="black", linewidth=0.8)
        axes.set_title(attribute, fontsize=10, loc="left")
    panels[-1].set_xlabel(METRIC_LABELS.get(metric, metric))
    figure.suptitle(f"{metric} per group (95% bootstrap CI over images)")
    return _png(figure, f"{metric} per group")


def _heatmap(emotion_table: pl.DataFrame) -> str:
    """Emotion × group Spearman, to show which emotions a group's overall gap comes from."""
    wide = emotion_table.pivot(on="group", index="emotion_id", values="spearman", sort_columns=True).sort("emotion_id")
    groups = wide.columns[1:]
    values = wide.select(groups).cast(pl.Float64).fill_null(np.nan).to_numpy()
    figure = Figure(figsize=(1.0 * len(groups) + 3, 0.22 * wide.height + 2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colormap = matplotlib.colormaps["RdBu"].with_extremes(bad="#dddddd")
    image = axes.imshow(np.ma.masked_invalid(values), cmap=colormap, vmin=-1, vmax=1, aspect="auto")
    axes.set_xticks(range(len(groups)), groups, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(wide.height), wide["emotion_id"].to_list(), fontsize=7)
    figure.colorbar(image, ax=axes, label="Spearman rho (grey: undefined)")
    axes.set_title("Per-emotion Spearman per group")
    return _png(figure, "per-emotion Spearman per group heatmap")


def _group_table(group_table: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """One row per group, each metric as 'value [low, high]'."""
    key = ["attribute", "group", "n_images", "too_small"]
    metrics = group_table["metric"].unique(maintain_order=True).to_list()
    cells: dict[tuple, dict[str, str]] = {}
    for row in group_table.iter_rows(named=True):
        interval = f" [{_text(row['ci_low'])}, {_text(row['ci_high'])}]" if row["ci_low"] is not None else ""
        cells.setdefault(tuple(row[k] for k in key), {})[row["metric"]] = _text(row["value"]) + interval
    wide = pl.DataFrame(
        [(*group, *(values.get(m) for m in metrics)) for group, values in cells.items()],
        schema=[*key, *metrics],
        orient="row",
    )
    return wide, ["small" if s else "" for s in wide["too_small"]]


def _versions(versions: dict[str, str]) -> list[tuple[str, str]]:
    keys = [*VERSION_KEYS, *(k for k in versions if k not in VERSION_KEYS)]
    return [(k, versions.get(k) or "not given") for k in keys]


def _section(tables: dict[str, pl.DataFrame], name: str) -> pl.DataFrame | None:
    table = tables.get(name)
    return None if table is None or table.is_empty() else table


def render_html(tables: dict[str, pl.DataFrame], versions: dict[str, str], notes: list[str]) -> str:
    """The full report page; every piece of text is escaped, since group names and notes come from data."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Fairness report – model {html.escape(versions.get('model') or 'not given')}</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>EmoNet-Face fairness report</h1>",
        "<h2>Versions</h2>",
        '<table class="versions">'
        + "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in _versions(versions))
        + "</table>",
        "<h2>Notes</h2>",
        "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
        if notes
        else '<p class="empty">No degenerate cases.</p>',
    ]
    gates = _section(tables, GATES)
    parts.append("<h2>Gates</h2>")
    parts.append(
        _html_table(gates, ["" if p else "failed" for p in gates["passed"]])
        if gates is not None
        else '<p class="empty">No gates given.</p>'
    )
    disparities = _section(tables, DISPARITIES)
    parts.append("<h2>Disparities</h2>")
    parts.append(
        "<p>Difference is max − min and ratio min / max over groups with enough images; groups below the minimum "
        "size are listed under groups_too_small and never ranked.</p>"
    )
    parts.append(_html_table(disparities) if disparities is not None else '<p class="empty">No disparities.</p>')
    groups = _section(tables, GROUP_METRICS)
    parts.append("<h2>Metrics per group</h2>")
    if groups is None:
        parts.append('<p class="empty">No group metrics: nothing was predicted on the test split.</p>')
    else:
        parts += [_metric_figure(groups, metric) for metric in groups["metric"].unique(maintain_order=True)]
        wide, classes = _group_table(groups)
        parts.append("<p>Each metric as value [95% CI]; too-small groups greyed, without CI.</p>")
        parts.append(_html_table(wide, classes))
    emotions = _section(tables, EMOTION_BY_GROUP)
    parts.append("<h2>Emotions by group</h2>")
    parts.append(_heatmap(emotions) if emotions is not None else '<p class="empty">No emotion × group table.</p>')
    for name, title in ((DATA_BALANCE, "Data balance"), (AGREEMENT, "Rater agreement per group")):
        table = _section(tables, name)
        parts.append(f"<h2>{title}</h2>")
        if table is None:
            parts.append(f'<p class="empty">No {html.escape(name)} table.</p>')
        else:
            classes = ["small" if s else "" for s in table["too_small"]] if "too_small" in table.columns else None
            parts.append(_html_table(table, classes))
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown_cell(value: object) -> str:
    return _text(value).replace("|", "\\|")


def render_markdown(tables: dict[str, pl.DataFrame], versions: dict[str, str], notes: list[str]) -> str:
    """Versions, single-attribute disparities, the widest intersectional gap per metric, gates and the first notes:
    enough to judge a run from the asset page."""
    lines = [" · ".join(f"{k} `{v}`" for k, v in _versions(versions)), ""]
    disparities = _section(tables, DISPARITIES)
    if disparities is None:
        lines.append("No disparities computed.")
    else:
        single = _single_attributes(disparities)
        lines += ["| attribute | metric | best | worst | difference | note |", "|---|---|---|---|---|---|"]
        for row in single.iter_rows(named=True):
            best = f"{row['best_group']} {_text(row['best_value'])}" if row["best_group"] is not None else "–"
            worst = f"{row['worst_group']} {_text(row['worst_value'])}" if row["worst_group"] is not None else "–"
            cells = (row["attribute"], row["metric"], best, worst, row["difference"], row["note"])
            lines.append("| " + " | ".join(_markdown_cell(c) for c in cells) + " |")
        intersections = disparities.filter(
            pl.col("attribute").str.contains(SEPARATOR, literal=True), pl.col("difference").is_not_null()
        )
        for metric in HIGHER_IS_BETTER:
            ranked = intersections.filter(pl.col("metric") == metric).sort("difference", descending=True)
            if ranked.height:
                row = ranked.row(0, named=True)
                lines.append(
                    f"- widest intersectional gap in {metric}: {_text(row['difference'])} across {row['attribute']} "
                    f"({row['best_group']} {_text(row['best_value'])} vs {row['worst_group']} "
                    f"{_text(row['worst_value'])})"
                )
    gates = _section(tables, GATES)
    if gates is not None:
        lines += ["", "**Gates**"]
        for row in gates.iter_rows(named=True):
            message = row["message"].removeprefix("fairness gate passed: ").removeprefix("fairness gate failed: ")
            lines.append(f"- {'passed' if row['passed'] else '**FAILED**'}: {message}")
    if notes:
        lines += ["", "**Notes**"]
        lines += [f"- {n}" for n in notes[:NOTES_IN_MARKDOWN]]
        if len(notes) > NOTES_IN_MARKDOWN:
            lines.append(f"- … {len(notes) - NOTES_IN_MARKDOWN} more in the HTML report")
    return "\n".join(lines)
