"""How runs are cut and read: the tags with which one run covers a range of partitions, the packing of partitions
into such ranges (backfills, the nightly schedule, `emonet backfill`), and the message of a failed step."""

# The tags with which Dagster's backfill daemon asks one run for a range of partitions.
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def error_message(error) -> str:
    """Dagster wraps the user's exception in its own; the user's message is the one worth reading."""
    while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    if error is None:
        return "step failed"
    message = error.message.strip()
    qualified, _, rest = message.partition(": ")
    return rest if rest and qualified.split(".")[-1] == error.cls_name else message


def partition_runs(partition_keys: list[str], per_run: int, wanted: list[str] | None = None) -> list[tuple[str, str]]:
    """Ranges of at most `per_run` partitions covering `wanted` (default: all), the way a multi-run backfill packs
    them. A range never spans a partition that is not wanted: a run materializes everything between its ends."""
    chosen = set(partition_keys if wanted is None else wanted)
    runs: list[list[str]] = []
    previous = None
    for position, key in enumerate(partition_keys):
        if key not in chosen:
            continue
        if not runs or previous != position - 1 or len(runs[-1]) == per_run:
            runs.append([])
        runs[-1].append(key)
        previous = position
    return [(run[0], run[-1]) for run in runs]
