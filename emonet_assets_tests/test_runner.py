"""How ranges of partitions are packed into runs (the CLI, the demo and the nightly schedule share it), and how the
demo prints a step and the alerts it sent."""

import hashlib

from rich.text import Text

from emonet_assets.defs.execution.runs import partition_runs
from emonet_assets.runner import WARNED, StepReport, describe_alerts, partition_label, step_lines

SHARDS = [f"shard-{i:05d}" for i in range(7)]


def test_all_partitions_in_runs_of_at_most_per_run():
    assert partition_runs(SHARDS, 3) == [
        ("shard-00000", "shard-00002"),
        ("shard-00003", "shard-00005"),
        ("shard-00006", "shard-00006"),
    ]


def test_a_range_never_spans_a_partition_that_is_not_wanted():
    wanted = ["shard-00006", "shard-00001", "shard-00002", "shard-00004"]
    assert partition_runs(SHARDS, 4, wanted) == [
        ("shard-00001", "shard-00002"),
        ("shard-00004", "shard-00004"),
        ("shard-00006", "shard-00006"),
    ]


def test_nothing_wanted_is_no_run():
    assert partition_runs(SHARDS, 4, []) == []


def plain(lines: list[str]) -> list[str]:
    return [Text.from_markup(line).plain for line in lines]


def test_a_step_that_writes_several_tables_pairs_each_with_its_own_row_count():
    report = StepReport(
        ["design_cells", "prompt_design"], None, True, 0.6, {"prompt_design": 80, "design_cells": 11760}
    )
    first, rows = plain(step_lines(report, "design_cells, prompt_design"))
    assert "rows" not in first and first.split()[:3] == ["ok", "design_cells,", "prompt_design"]
    assert rows.strip() == "rows: design_cells 11,760, prompt_design 80"


def test_a_step_of_one_table_shows_its_rows_on_its_line():
    [line] = plain(step_lines(StepReport(["taxonomy"], None, True, 2.9, {"taxonomy": 40}, checks_passed=1), "taxonomy"))
    assert line.split() == ["ok", "taxonomy", "40", "rows", "checks", "1/1", "2.9s"]


def test_a_batch_partition_is_shortened_as_git_does_and_shard_ranges_stay_whole():
    sha = hashlib.sha256(b"batch").hexdigest()
    [line] = plain(step_lines(StepReport(["annotation_batches"], sha, True, 1.4, {}), "annotation_batches"))
    assert f"annotation_batches [{sha[:12]}]" in line and sha not in line
    assert partition_label("shard-00000...shard-00003") == "shard-00000...shard-00003"


def test_checks_are_said_to_warn_or_fail_by_severity():
    report = StepReport(["splits"], None, True, 1.0, checks_failed=[f"{WARNED}thin: 3 cells", "leak: 2 prompts"])
    lines = plain(step_lines(report, "splits"))
    assert lines[1].split()[:3] == ["check", "warned", "thin:"] and lines[2].split()[:3] == ["check", "failed", "leak:"]


def test_alerts_are_counted_as_warned_or_failed():
    assert describe_alerts([("check_failure", "WARN")] * 2) == "2 checks warned"
    assert describe_alerts([("check_failure", "WARN"), ("check_failure", "ERROR"), ("run_failure", "ERROR")]) == (
        "1 check failed, 1 check warned, 1 run failed"
    )
    assert describe_alerts([]) == "no check failed or warned"
