"""What a new user sees in `emonet demo`: a model that learns the simulated panel, a fairness report that ranks
groups of every attribute, and a few warning lines, not a screenful."""

import re

import polars as pl
import pytest

from emonet_assets.defs.model.checks import model_beats_random_baseline
from emonet_assets.lib.fairness.fairness import ATTRIBUTES
from emonet_assets.lib.shared.storage import Store
from emonet_assets.profiles import load_profile
from emonet_assets.resources import ProfileResource, StorageResource

pytestmark = pytest.mark.slow


def warning_lines(demo_run) -> list[str]:
    """Lines of the demo a reader takes for warnings: Dagster's WARNING log lines and Python warnings on stderr,
    and the checks that warned on stdout."""
    logged = [line for line in demo_run.stderr.splitlines() if re.search("warn", line, re.IGNORECASE)]
    return logged + [line for line in demo_run.stdout.splitlines() if line.lstrip().startswith("check warned")]


def test_the_demo_model_beats_the_random_baseline(demo_run):
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    profile = load_profile("tiny", env={"EMONET_ROOT": str(demo_run.root)})
    result = model_beats_random_baseline(
        storage=StorageResource(root=str(demo_run.root)), profile=ProfileResource.from_profile(profile)
    )
    assert result.passed, result.description
    assert result.description.startswith("model beats random: ")
    assert "model_beats_random_baseline" not in "\n".join(warning_lines(demo_run))


def test_the_demo_fairness_report_ranks_groups_of_every_attribute(demo_run):
    gaps = Store(str(demo_run.root)).read_table("fairness_disparities")
    ranked = dict(gaps.group_by("attribute").agg(pl.col("n_groups_ranked").max()).iter_rows())
    assert all(ranked[attribute] >= 2 for attribute in ATTRIBUTES), ranked


def test_the_demo_shows_at_most_three_warning_lines_and_one_for_thin_cells(demo_run):
    warnings = warning_lines(demo_run)
    assert len(warnings) <= 3, "\n".join(warnings)
    split_lines = [line for line in demo_run.stderr.splitlines() if " - splits - " in line]
    assert len(split_lines) == 1 and "cells could not be split as asked" in split_lines[0], split_lines
    assert "e.g. " in split_lines[0]
