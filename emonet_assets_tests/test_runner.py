"""How ranges of partitions are packed into runs (the CLI, the demo and the nightly schedule share it)."""

from emonet_assets.runner import partition_runs

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
