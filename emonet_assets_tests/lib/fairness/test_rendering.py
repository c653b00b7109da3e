import html
import re
from html.parser import HTMLParser

import polars as pl
import pytest

from emonet_assets.lib.consensus.agreement import item_statistics
from emonet_assets.lib.fairness.fairness import (
    TOO_FEW_RANKED,
    agreement_by_group,
    data_balance,
    disparities,
    emotion_by_group,
    fairness_notes,
    gate_table,
    group_metrics,
)
from emonet_assets.lib.fairness.rendering import UNDEFINED, group_coverage, render_html, render_markdown, summarize
from emonet_assets_tests.browser import browser_page, view
from emonet_assets_tests.lib.fairness.test_fairness import make_data, simulated_ratings

VERSIONS = {"model": "model-7f3a", "data": "data-2024-06-01", "taxonomy": "taxonomy-v2.1"}
VOID = {"meta", "img", "br", "hr", "link", "input"}
PNG = '<img src="data:image/png;base64,'


class StrictParser(HTMLParser):
    """html.parser never raises on bad markup, so this one records unbalanced tags as errors."""

    def __init__(self):
        super().__init__()
        self.open, self.errors = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if not self.open or self.open.pop() != tag:
            self.errors.append(tag)


def parse(page):
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.open == []


@pytest.fixture(scope="module")
def report():
    predictions, consensus, demographics = make_data(n_images=240, noisy_group="group_c")
    demographics = demographics.with_columns(
        ethnicity_group=pl.when(pl.col("image_id") < "img0005")
        .then(pl.lit("<b>odd & rare</b>"))
        .otherwise("ethnicity_group")
    )
    groups = group_metrics(predictions, consensus, demographics, min_group_size=20, resamples=30)
    found = disparities(groups)
    splits = demographics.rename({"image_id": "image_sha256"}).with_columns(split=pl.lit("test"))
    qc = splits.select("image_sha256", passed=pl.col("image_sha256") != "img0007")
    ratings, rated = simulated_ratings(n_images=40)
    tables = {
        "group_metrics": groups,
        "disparities": found,
        "data_balance": data_balance(splits, qc, demographics),
        "agreement": agreement_by_group(item_statistics(ratings), rated, min_group_size=10),
        "emotion_by_group": emotion_by_group(predictions, consensus, demographics),
        "gates": gate_table(found, {"mean_spearman": 0.1, "mean_mae": 5.0}),
    }
    return tables, fairness_notes(groups, found)


def test_html_is_self_contained_with_versions_figures_and_tables(report):
    tables, notes = report
    page = render_html(tables, VERSIONS, notes)
    parse(page)
    for version in VERSIONS.values():
        assert version in page
    assert page.count(PNG) == 4  # three metric bar charts and the heatmap
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for title in ("Data balance", "Rater agreement per group", "Disparities", "Gates", "Metrics per group"):
        assert f"<h2>{title}</h2>" in page
    assert "<th>qc_pass_share</th>" in page and "<th>too small</th>" in page and "<th>groups ranked</th>" in page
    assert "<th>alpha_interval</th>" in page
    assert "&lt;b&gt;odd &amp; rare&lt;/b&gt;" in page and "<b>odd" not in page
    assert page.count('<tr class="small">') >= 1
    assert '<tr class="failed">' in page
    for note in notes:
        assert f"<li>{html.escape(note)}</li>" in page


def test_html_says_plainly_what_is_missing():
    predictions, consensus, demographics = make_data(n_images=20)
    empty = group_metrics(predictions.clear(), consensus, demographics)
    page = render_html({"group_metrics": empty}, {"model": "m1"}, ["no predictions"])
    parse(page)
    assert "No group metrics: nothing was predicted on the test split." in page
    assert "No emotion × group table." in page and "No data_balance table." in page
    assert "<td>taxonomy</td><td>not given</td>" in page
    assert "<li>no predictions</li>" in page and PNG not in page


def test_report_with_nothing_to_show_renders_in_chromium(tmp_path):
    predictions, consensus, demographics = make_data(n_images=20)
    empty = group_metrics(predictions.clear(), consensus, demographics)
    report = tmp_path / "report.html"
    report.write_text(render_html({"group_metrics": empty}, {"model": "m1"}, ["no predictions"]), encoding="utf-8")
    page = view(report.as_uri(), tmp_path / "report.png")
    assert page.console_errors == [] and page.images == 0
    assert "No group metrics: nothing was predicted on the test split." in page.text


def test_markdown_has_versions_headline_disparities_and_gates(report):
    tables, notes = report
    text = render_markdown(tables, VERSIONS, notes)
    assert "model `model-7f3a` · data `data-2024-06-01` · taxonomy `taxonomy-v2.1`" in text
    row = (
        tables["disparities"]
        .filter(pl.col("attribute") == "ethnicity_group", pl.col("metric") == "mean_spearman")
        .row(0, named=True)
    )
    assert (
        f"| ethnicity_group | mean_spearman | {row['best_group']} {row['best_value']:.3f} | "
        f"group_c {row['worst_value']:.3f} | {row['difference']:.3f} | {row['ratio']:.3f} |"
    ) in text
    assert "widest intersectional gap in mean_spearman" in text
    assert "- **FAILED**: mean_spearman differs by" in text and "- passed: mean_mae differs by" in text
    assert "http" not in text and len(text) < 6000


@pytest.fixture(scope="module")
def unranked():
    """The demo's situation: a handful of test images, so every group is below the minimum size and some groups are
    one image (whose Spearman rho is undefined)."""
    predictions, consensus, demographics = make_data(n_images=6)
    groups = group_metrics(predictions, consensus, demographics, min_group_size=5, resamples=20)
    found = disparities(groups)
    tables = {"group_metrics": groups, "disparities": found, "gates": gate_table(found, {"mean_spearman": 0.15})}
    return tables, fairness_notes(groups, found)


def test_a_report_that_ranks_nothing_says_why_in_its_headline_and_once(unranked):
    tables, notes = unranked
    headline, points = summarize(tables, min_group_size=5, gate_severity="WARN")
    assert headline.startswith("Nothing could be ranked: no attribute has two groups of at least 5 test images")
    assert headline.endswith("so the 1 gate compared nothing.")
    page = render_html(tables, VERSIONS, notes, min_group_size=5, gate_severity="WARN")
    parse(page)
    assert page.index('<p class="headline">') < page.index("<h2>Summary</h2>") < page.index("<h2>Gates</h2>")
    groups = tables["group_metrics"].select("attribute", "group").n_unique()
    assert page.count("(fairness.min_group_size)") == 1
    assert f"and are never ranked or gated: {groups} of {groups} groups here" in page
    assert TOO_FEW_RANKED not in page and "below the minimum size" not in page
    text = re.sub(r"data:image/png;base64,[^\"]+", "", page)
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    assert f"<td>{UNDEFINED}</td>" in page and f"<li>{UNDEFINED} marks a value that is undefined" in page
    assert "<td>–</td>" not in page.split("<h2>Disparities</h2>")[1].split("<h2>")[0], "a table of dashes"
    markdown = render_markdown(tables, VERSIONS, notes, min_group_size=5, gate_severity="WARN")
    assert markdown.startswith(f"**{headline}**") and "NaN" not in markdown and TOO_FEW_RANKED not in markdown
    for note in notes:
        assert page.count(html.escape(note)) == 1 and markdown.count(note) == 1


def test_the_headline_counts_gates_by_severity_and_names_the_gate_widest_gap(report):
    tables, _ = report
    for severity, word in (("WARN", "warned"), ("ERROR", "failed")):
        headline, _ = summarize(tables, 20, severity)
        assert headline.startswith(f"Gates: 1 passed, 1 {word}. Widest ranked gap: mean_spearman ")
    gate = tables["gates"].filter(pl.col("metric") == "mean_spearman")["message"].item()
    widest = headline.split("Widest ranked gap: ")[1].removesuffix(".")
    assert widest.split(" (best")[0].replace("mean_spearman ", "differs by ") in gate


def test_groups_per_attribute_count_the_ranked_and_the_too_small():
    predictions, consensus, demographics = make_data(n_images=200)
    rare = demographics["image_id"].head(6)
    demographics = demographics.with_columns(
        ethnicity_group=pl.when(pl.col("image_id").is_in(rare.implode()))
        .then(pl.lit("rare"))
        .otherwise("ethnicity_group")
    )
    groups = group_metrics(predictions, consensus, demographics, min_group_size=20, resamples=10)
    row = group_coverage(groups).filter(pl.col("attribute") == "ethnicity_group").row(0, named=True)
    sizes = demographics.group_by("ethnicity_group").len()["len"]
    assert row == {
        "attribute": "ethnicity_group",
        "groups": 4,
        "ranked": 3,
        "too small": 1,
        "images per group": f"{sizes.min()}–{sizes.max()}",
    }


@pytest.mark.parametrize("width", [1280, 800])
def test_every_table_fits_the_page(report, unranked, tmp_path, width):
    for name, (tables, notes) in {"ranked": report, "unranked": unranked}.items():
        path = tmp_path / f"{name}.html"
        path.write_text(render_html(tables, VERSIONS, notes, min_group_size=20), encoding="utf-8")
        with browser_page(width) as (page, errors):
            page.goto(path.as_uri())
            assert page.evaluate("document.documentElement.scrollWidth") <= width, name
            body = page.evaluate("document.body.getBoundingClientRect().right")
            tables_right = page.evaluate(
                "[...document.querySelectorAll('table')].map(t => t.getBoundingClientRect().right)"
            )
            assert tables_right and max(tables_right) <= body + 0.5, name
            assert errors == []


def test_html_puts_the_leaderboard_beside_the_model_or_says_it_is_missing(report):
    tables, notes = report
    board = pl.DataFrame(
        {
            "collection": ["generated", "generated"],
            "rank": [1, None],
            "model_key": ["<mine>@abc", "human ceiling"],
            "mean_spearman": [0.71, 0.62],
            "diff_vs_human": [0.09, 0.0],
            "p_vs_human": [0.012, 1.0],
        }
    )
    page = render_html(tables, VERSIONS, notes, leaderboard=board)
    parse(page)
    section = page.split("<h2>Leaderboard</h2>")[1].split("<h2>")[0]
    assert "<td>&lt;mine&gt;@abc</td><td>0.710</td><td>0.090</td><td>0.012</td>" in section.replace(
        "<td>generated</td><td>1</td>", ""
    )
    assert "<th>p_vs_human</th>" in section and "<td>human ceiling</td>" in section
    missing = render_html(tables, VERSIONS, notes)
    assert "No leaderboard: model_leaderboard has not been materialized." in missing


def test_html_gives_each_registered_model_its_gates_and_gaps(report):
    tables, notes = report
    gates = pl.DataFrame(
        {
            "model_key": ["m@1", "m@2"],
            "metric": ["mean_spearman", "mean_spearman"],
            "max_difference": [0.4, 0.4],
            "passed": [True, False],
            "message": ["fairness gate passed", "gap 0.6 over 0.4"],
        }
    )
    gaps = pl.DataFrame(
        {
            "model_key": ["m@2"],
            "attribute": ["occlusion"],
            "metric": ["mean_spearman"],
            "best_group": ["none"],
            "worst_group": ["sunglasses"],
            "best_value": [0.7],
            "worst_value": [0.1],
            "difference": [0.6],
        }
    )
    groups = pl.DataFrame(
        {
            "model_key": ["m@2", "m@2"],
            "attribute": ["occlusion", "occlusion"],
            "group": ["none", "sunglasses"],
            "metric": ["mean_spearman", "mean_spearman"],
            "value": [0.7, 0.1],
            "ci_low": [0.61, 0.02],
            "ci_high": [0.78, 0.19],
        }
    )
    page = render_html(tables, VERSIONS, notes, models=(gates, gaps, groups))
    parse(page)
    section = page.split("<h2>Per registered model</h2>")[1]
    assert section.index("<h3>m@1</h3>") < section.index("<h3>m@2</h3>")
    second = section.split("<h3>m@2</h3>")[1]
    assert '<tr class="failed"><td>mean_spearman</td><td>0.400</td><td>no</td><td>gap 0.6 over 0.4</td></tr>' in second
    cells = "<td>occlusion</td><td>mean_spearman</td><td>none</td><td>0.700</td><td>[0.61, 0.78]</td>"
    assert cells + "<td>sunglasses</td><td>0.100</td><td>[0.02, 0.19]</td><td>0.600</td>" in second
    assert "No per-model tables: model_fairness has not been materialized." in render_html(tables, VERSIONS, notes)
