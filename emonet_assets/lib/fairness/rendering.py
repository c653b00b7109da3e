"""The fairness report: one self-contained HTML page (inline CSS, figures as base64 PNG, no scripts or external
links, so it opens from an artifact store or a mail attachment) and a short Markdown summary for asset metadata.

Both take the tables of `emonet_assets.lib.fairness.fairness` by name (see TABLES); a table that is absent or
empty is said to be so rather than left out, so a reader can tell "not computed" from "nothing to report". Both open
with the same summary: a headline (the gates' outcome and the widest ranked gap, or why nothing could be ranked),
then what is left out and why, said once.
"""

from __future__ import annotations

import base64
import html
import io
import math
import posixpath

import matplotlib
import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from emonet_assets.lib.fairness.fairness import GAP_DECIMALS, HIGHER_IS_BETTER, SEPARATOR
from emonet_assets.lib.shared import lineage

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
# What a value that is undefined (NaN: a Spearman rho over one image) reads as; the summary says what it means.
UNDEFINED = "n/a"
GATE_OUTCOMES = {"passed": "passed", "warned": "warned", "failed": "failed", "no comparison": "had nothing to compare"}
DATA_VERSION_MEANS = f"data: {lineage.DATA_VERSION_MEANS} the model was evaluated on"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 72em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
.headline { font-size: 1.1em; font-weight: bold; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
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
        return UNDEFINED if math.isnan(value) else f"{value:.3f}"
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


def _ranked_gaps(tables: dict[str, pl.DataFrame]) -> pl.DataFrame | None:
    """The disparity rows that compare two or more ranked groups; the others carry no number to show."""
    disparities = _section(tables, DISPARITIES)
    if disparities is None:
        return None
    ranked = disparities.filter(pl.col("difference").is_not_null())
    return None if ranked.is_empty() else ranked


def _gap_text(row: dict) -> str:
    return (
        f"{row['metric']} {_text(row['difference'])} across {row['attribute']} "
        f"(best {row['best_group']} {_text(row['best_value'])}, worst {row['worst_group']} {_text(row['worst_value'])})"
    )


def _widest(gaps: pl.DataFrame, metric: str) -> dict | None:
    """The widest gap in `metric`; a tie (an intersection inherits its attribute's gap) goes to the plain attribute,
    as the gate names it."""
    part = gaps.filter(pl.col("metric") == metric).sort(
        pl.col("difference").round(GAP_DECIMALS),
        pl.col("attribute").str.count_matches(SEPARATOR, literal=True),
        "attribute",
        descending=[True, False, False],
    )
    return part.row(0, named=True) if part.height else None


def gate_outcomes(tables: dict[str, pl.DataFrame], gate_severity: str | None = None) -> list[tuple[str, str]]:
    """(metric, outcome) per gate: `passed`, `no comparison` (no two groups large enough, so nothing was gated), or
    over its limit, `warned` or `failed` as the profile's `fairness.gate_severity` makes it."""
    gates = _section(tables, GATES)
    if gates is None:
        return []
    gaps = _ranked_gaps(tables)
    compared = set() if gaps is None else set(gaps["metric"])
    over = "warned" if gate_severity == "WARN" else "failed"
    return [
        (row["metric"], over if not row["passed"] else "passed" if row["metric"] in compared else "no comparison")
        for row in gates.iter_rows(named=True)
    ]


def group_coverage(group_table: pl.DataFrame) -> pl.DataFrame:
    """Per attribute (and intersection): how many groups there are, how many are large enough to rank, and the range
    of their image counts, so a reader sees at a glance what the gaps and gates could compare."""
    groups = group_table.select("attribute", "group", "n_images", "too_small").unique(maintain_order=True)
    fewest, most = pl.col("n_images").min(), pl.col("n_images").max()
    return groups.group_by("attribute", maintain_order=True).agg(
        pl.len().alias("groups"),
        (~pl.col("too_small")).sum().alias("ranked"),
        pl.col("too_small").sum().alias("too small"),
        pl.when(fewest == most)
        .then(fewest.cast(pl.String))
        .otherwise(pl.format("{}–{}", fewest, most))
        .alias("images per group"),
    )


def summarize(
    tables: dict[str, pl.DataFrame], min_group_size: int | None = None, gate_severity: str | None = None
) -> tuple[str, list[str]]:
    """The headline and the points the report opens with: each fact about what was left out is said here once."""
    groups = _section(tables, GROUP_METRICS)
    outcomes = gate_outcomes(tables, gate_severity)
    n_gates = f"{len(outcomes)} gate{'s' if len(outcomes) != 1 else ''}"
    if groups is None:
        return (
            f"Nothing could be ranked: no test predictions joined to consensus labels, so the {n_gates} "
            "compared nothing.",
            [],
        )
    coverage = group_coverage(groups)
    single = coverage.filter(~pl.col("attribute").str.contains(SEPARATOR, literal=True))
    sizes = groups.select("attribute", "group", "n_images").unique()
    first = groups["attribute"][0]
    n_images = sizes.filter(pl.col("attribute") == first)["n_images"].sum()
    minimum = f"{min_group_size} test images" if min_group_size is not None else "the minimum size"
    small, total = int(coverage["too small"].sum()), int(coverage["groups"].sum())
    points = [
        f"{n_images} test images in {total} groups: {single.height} attributes "
        f"({', '.join(single['attribute'])}) and {coverage.height - single.height} intersections of them.",
        f"Groups with fewer than {minimum} (fairness.min_group_size) are shown greyed, without a confidence interval, "
        f"and are never ranked or gated: {small} of {total} groups here "
        f"({int(single['too small'].sum())} of {int(single['groups'].sum())} single-attribute groups).",
    ]
    gaps = _ranked_gaps(tables)
    if gaps is None:
        largest = sizes["n_images"].max()
        headline = (
            f"Nothing could be ranked: no attribute has two groups of at least {minimum} (the largest has "
            f"{largest}), so the {n_gates} compared nothing."
        )
    else:
        said = [
            f"{n} {label}"
            for outcome, label in GATE_OUTCOMES.items()
            if (n := sum(1 for _, o in outcomes if o == outcome))
        ]
        gates = f"Gates: {', '.join(said)}" if said else "No gates given"
        widest = next(w for m in HIGHER_IS_BETTER if (w := _widest(gaps, m)) is not None)
        headline = f"{gates}. Widest ranked gap: {_gap_text(widest)}."
        points += [
            f"Widest ranked gap in {_gap_text(row)}."
            for metric in HIGHER_IS_BETTER
            if metric != widest["metric"] and (row := _widest(gaps, metric)) is not None
        ]
        unranked = coverage.filter(pl.col("ranked") < 2)["attribute"].to_list()
        if unranked:
            points.append(f"No gap is ranked for {', '.join(unranked)}: fewer than two of its groups are large enough.")
    undefined = groups.filter(pl.col("value").is_nan())
    if undefined.height:
        one = undefined.filter(pl.col("n_images") == 1).select("attribute", "group").n_unique()
        points.append(
            f"{UNDEFINED} marks a value that is undefined, for {undefined.select('attribute', 'group').n_unique()} "
            f"groups ({one} of them a single image): a Spearman rho needs two or more images whose ratings differ, "
            "and presence F1 an emotion present in the ratings or the predictions."
        )
    return headline, points


def _gates_table(tables: dict[str, pl.DataFrame], gate_severity: str | None) -> pl.DataFrame | None:
    gates = _section(tables, GATES)
    if gates is None:
        return None
    outcome = dict(gate_outcomes(tables, gate_severity))
    return gates.select(
        "metric", limit="max_difference", outcome=pl.col("metric").replace_strict(outcome), message="message"
    )


def _gaps_table(gaps: pl.DataFrame) -> pl.DataFrame:
    """One row per ranked gap, each group beside its value, so the table stays narrow enough for the page."""
    rows = [
        (
            r["attribute"],
            r["metric"],
            f"{r['best_group']} {_text(r['best_value'])}",
            f"{r['worst_group']} {_text(r['worst_value'])}",
            r["difference"],
            r["ratio"],
            r["n_groups_ranked"],
        )
        for r in gaps.iter_rows(named=True)
    ]
    columns = ["attribute", "metric", "best", "worst", "difference", "ratio", "groups ranked"]
    return pl.DataFrame(rows, schema=columns, orient="row")


def render_html(
    tables: dict[str, pl.DataFrame],
    versions: dict[str, str],
    notes: list[str],
    min_group_size: int | None = None,
    gate_severity: str | None = None,
    leaderboard: pl.DataFrame | None = None,
    models: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame] | None = None,
) -> str:
    """The full report page; every piece of text is escaped, since group names and notes come from data.
    `leaderboard` (the model_leaderboard rows to show, `shown_board`) puts every registered model beside this one;
    `models` (model_fairness_gates, model_fairness_gaps, model_fairness_groups) gives each registered model a section
    of its own."""
    headline, points = summarize(tables, min_group_size, gate_severity)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Fairness report – model {html.escape(versions.get('model') or 'not given')}</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>EmoNet-Face fairness report</h1>",
        f'<p class="headline">{html.escape(headline)}</p>',
        "<h2>Summary</h2>",
        "<ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in points) + "</ul>"
        if points
        else '<p class="empty">No group metrics to summarise.</p>',
        "<h2>Versions</h2>",
        '<table class="versions">'
        + "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in _versions(versions))
        + "</table>",
        f"<p>{html.escape(DATA_VERSION_MEANS)}.</p>",
    ]
    if notes:
        parts += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"]
    parts.append("<h2>Leaderboard</h2>")
    if leaderboard is None:
        parts.append('<p class="empty">No leaderboard: model_leaderboard has not been materialized.</p>')
    else:
        parts.append(
            "<p>Every registered model on the same evaluation images: mean Spearman against the consensus median "
            "with its paired bootstrap 95% CI, and the paired difference from the human ceiling (each expert "
            "against the others' median) with its p-value.</p>"
        )
        parts.append(_html_table(leaderboard))
    gates = _gates_table(tables, gate_severity)
    parts.append("<h2>Gates</h2>")
    parts.append(
        _html_table(gates, ["failed" if o in ("warned", "failed") else "" for o in gates["outcome"]])
        if gates is not None
        else '<p class="empty">No gates given.</p>'
    )
    gaps = _ranked_gaps(tables)
    parts.append("<h2>Disparities</h2>")
    if gaps is None:
        parts.append('<p class="empty">No gap could be ranked: see the summary.</p>')
    else:
        parts.append(
            "<p>Difference is max − min and ratio min / max over the groups large enough to rank; attributes with "
            "fewer than two such groups are left out.</p>"
        )
        parts.append(_html_table(_gaps_table(gaps)))
    groups = _section(tables, GROUP_METRICS)
    if groups is not None:
        parts += ["<h2>Groups per attribute</h2>", _html_table(group_coverage(groups))]
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
    parts += _model_sections(models)
    parts.append("</body></html>")
    return "\n".join(parts)


def _model_sections(models: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame] | None) -> list[str]:
    """Per registered model: its gates and its widest gap per attribute and metric, each end of the gap with its
    group's bootstrap 95% CI (model_fairness_*)."""
    parts = ["<h2>Per registered model</h2>"]
    if models is None:
        return [*parts, '<p class="empty">No per-model tables: model_fairness has not been materialized.</p>']
    gates, gaps, groups = models
    keys = ["model_key", "attribute", "metric"]
    intervals = groups.select(
        *keys, "group", ci=pl.format("[{}, {}]", pl.col("ci_low").round(3), pl.col("ci_high").round(3))
    )
    gaps = gaps.join(
        intervals.rename({"group": "best_group", "ci": "best_ci"}), on=[*keys, "best_group"], how="left"
    ).join(intervals.rename({"group": "worst_group", "ci": "worst_ci"}), on=[*keys, "worst_group"], how="left")
    parts.append(
        "<p>The same gates and gaps for every model of the leaderboard, on the generated test images, by "
        "demographic attribute and by the design's robustness axes and generator.</p>"
    )
    for key in sorted(set(gates["model_key"]) | set(gaps["model_key"])):
        mine = gates.filter(pl.col("model_key") == key)
        classes = ["" if passed else "failed" for passed in mine["passed"]]
        shown = gaps.filter(pl.col("model_key") == key).select(
            "attribute",
            "metric",
            "best_group",
            "best_value",
            "best_ci",
            "worst_group",
            "worst_value",
            "worst_ci",
            "difference",
        )
        parts += [
            f"<h3>{html.escape(key)}</h3>",
            _html_table(mine.select("metric", "max_difference", "passed", "message"), classes),
            _html_table(shown),
        ]
    return parts


def _markdown_cell(value: object) -> str:
    return _text(value).replace("|", "\\|")


def _markdown_table(frame: pl.DataFrame) -> list[str]:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.width]
    lines += ["| " + " | ".join(_markdown_cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return lines


def render_markdown(
    tables: dict[str, pl.DataFrame],
    versions: dict[str, str],
    notes: list[str],
    min_group_size: int | None = None,
    gate_severity: str | None = None,
) -> str:
    """The summary, versions, ranked single-attribute gaps, the widest intersectional gap per metric, groups per
    attribute, gates and the first notes: enough to judge a run from the asset page."""
    headline, points = summarize(tables, min_group_size, gate_severity)
    lines = [f"**{headline}**", "", *(f"- {p}" for p in points)]
    lines += ["", " · ".join(f"{k} `{v}`" for k, v in _versions(versions)) + f" ({DATA_VERSION_MEANS})", ""]
    gaps = _ranked_gaps(tables)
    if gaps is not None:
        single = _single_attributes(gaps)
        if single.height:
            lines += _markdown_table(_gaps_table(single).drop("groups ranked"))
        for metric in HIGHER_IS_BETTER:
            widest = _widest(gaps.filter(pl.col("attribute").str.contains(SEPARATOR, literal=True)), metric)
            if widest is not None:
                lines.append(f"- widest intersectional gap in {_gap_text(widest)}")
        lines.append("")
    groups = _section(tables, GROUP_METRICS)
    if groups is not None:
        lines += ["**Groups per attribute**", "", *_markdown_table(group_coverage(groups)), ""]
    outcomes = gate_outcomes(tables, gate_severity)
    if outcomes:
        messages = dict(_section(tables, GATES).select("metric", "message").iter_rows())
        lines += ["**Gates**"]
        for metric, outcome in outcomes:
            message = messages[metric].removeprefix("fairness gate passed: ").removeprefix("fairness gate failed: ")
            shown = f"**{outcome.upper()}**" if outcome in ("warned", "failed") else outcome
            lines.append(f"- {shown}: {message}")
    if notes:
        lines += ["", "**Notes**"]
        lines += [f"- {n}" for n in notes[:NOTES_IN_MARKDOWN]]
        if len(notes) > NOTES_IN_MARKDOWN:
            lines.append(f"- … {len(notes) - NOTES_IN_MARKDOWN} more in the HTML report")
    return "\n".join(lines)


def model_card_fairness(
    tables: dict[str, pl.DataFrame],
    versions: dict[str, str],
    report_path: str,
    model_folder: str,
    min_group_size: int | None = None,
    gate_severity: str | None = None,
) -> dict:
    """What the model card says of this report (see `emotion_model.render_model_card`): the headline, each gate's
    outcome, and a link from the model's folder to the report, both paths under the storage root."""
    headline, _ = summarize(tables, min_group_size, gate_severity)
    return {
        "headline": headline,
        "gates": dict(gate_outcomes(tables, gate_severity)),
        "report": report_path,
        "link": posixpath.relpath(report_path, model_folder),
        "data": versions.get("data") or "not given",
    }
