"""The fairness report on the tiny graph, and its gates on a planted disparity."""

import re

import dagster as dg
import duckdb
import numpy as np
import polars as pl
from PIL import Image

from emonet_assets.definitions import build_definitions
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy
from emonet_assets.runner import materialize_step
from emonet_assets_tests.browser import browser_page, view
from emonet_assets_tests.defs.conftest import plant_gender_disparity, tiny_profile


def test_report_states_its_versions_and_lands_in_parquet_and_duckdb(materialized_root):
    store = Store(str(materialized_root))
    html = store.read_bytes("reports/fairness/report.html").decode()
    model = store.read_table("emotion_model")["model_fingerprint"][-1]
    assert model in html and load_taxonomy().version in html
    assert html.count('<img src="data:image/png;base64,') >= 2
    assert "http://" not in html and "https://" not in html
    profile = tiny_profile(materialized_root)
    with duckdb.connect(profile.catalog_path, read_only=True) as con:
        attributes = {row[0] for row in con.sql("select distinct attribute from fairness_group_metrics").fetchall()}
    assert {"age", "gender", "ethnicity_group", "age x gender x ethnicity_group"} <= attributes
    balance = store.read_table("fairness_data_balance").filter(pl.col("attribute") == "gender")
    assert balance["n_generated"].sum() == 240


def test_report_renders_in_headless_chromium_without_console_errors(materialized_root, tmp_path):
    page = view((materialized_root / "reports/fairness/report.html").as_uri(), tmp_path / "fairness_report.png")
    assert page.console_errors == []
    assert page.title.startswith("Fairness report – model ")
    assert page.images >= 2 and page.broken_images == 0
    for heading in ("EmoNet-Face fairness report", "Data balance", "Rater agreement per group", "Gates"):
        assert heading in page.text
    shot = np.asarray(Image.open(page.screenshot).convert("L"))
    assert shot.shape[1] == 1280 and shot.shape[0] > 900, "full page, longer than one screen"
    assert shot.std() > 10, "the screenshot shows content, not a blank page"


def test_gate_fails_on_a_planted_disparity_and_names_the_group(root_copy):
    store = Store(str(root_copy))
    target = plant_gender_disparity(store)
    profile = tiny_profile(root_copy)
    strict = profile.fairness.model_copy(update={"min_group_size": 1, "gate_severity": "ERROR"})
    profile = profile.model_copy(update={"fairness": strict})
    report = materialize_step(
        build_definitions(profile), dg.DagsterInstance.ephemeral(), [dg.AssetKey("fairness_report")]
    )
    assert report.success, report.error
    [failure] = [c for c in report.checks_failed if c.startswith("fairness_gap_mean_mae")]
    assert "fairness gate failed: mean_mae differs by" in failure and "gender" in failure
    assert not failure.startswith("warning: ")
    gaps = store.read_table("fairness_disparities").filter(
        (pl.col("attribute") == "gender") & (pl.col("metric") == "mean_mae")
    )
    assert gaps["worst_group"][0] == target and gaps["difference"][0] > 4 * strict.max_gap["mean_mae"]


def test_the_report_opens_with_a_headline_and_every_table_fits_the_page(materialized_root):
    html = (materialized_root / "reports/fairness/report.html").read_text()
    assert re.search(r'<h1>[^<]+</h1>\n<p class="headline">(Gates: |Nothing could be ranked: )', html)
    assert not re.search(r"\bnan\b", re.sub(r"data:image/png;base64,[^\"]+", "", html), re.IGNORECASE)
    with browser_page(800) as (page, errors):
        page.goto((materialized_root / "reports/fairness/report.html").as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= 800
        assert errors == []


def test_the_model_card_links_the_report_of_its_model(materialized_root):
    store = Store(str(materialized_root))
    model = store.read_table("emotion_model").row(-1, named=True)
    folder = materialized_root / model["path"]
    card = (folder / "MODEL_CARD.md").read_text()
    report = (materialized_root / "reports/fairness/report.html").read_text()
    [data] = re.findall(r"<td>data</td><td>([0-9a-f]{16})</td>", report)
    [link] = re.findall(r"- the report: \[reports/fairness/report.html\]\(([^)]+)\)", card)
    assert (folder / link).resolve() == (materialized_root / "reports/fairness/report.html").resolve()
    assert f"data `{data}`" in card and f"| splits | `{data}` |" in card
    assert "no per-group breakdown" not in card and "small number of expert raters" not in card
    assert model["model_fingerprint"] in report
