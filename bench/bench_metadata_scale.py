"""The metadata path at release scale with no pixels: prompts -> simulated expert annotations -> consensus (dbt) ->
splits -> fairness tables -> release shards, for 1,000,000 images by default, time and peak RSS per stage.

Images are stood in for by small files named by their sha256, written to a folder in memory for the release
stage (`_stand_in_images`), and random perceptual hashes (generation and embeddings are GPU work, measured in
bench_generation*/bench_embedding); the model's test predictions are the consensus plus noise. Annotations arrive
as batches of `--batch-images` images, as an annotation tool exports them, each a long CSV parsed and validated by
the importer. Each stage runs in its own process, so its peak RSS is its own (dbt's process included), and prints
`stage NAME SECONDS s PEAK MB`; the last line is `total SECONDS s peak MB`, the peak of the largest stage, after a
line that says how much of the total was the bench standing in for generation, image QC and experts (`STAND_INS`).
`python -m bench.bench_metadata_scale [--images N] [--batch-images N] [--resamples N]`; `--keep DIR` keeps the
storage root, and `--keep DIR --stages release,...` re-measures those stages on it.
"""

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from bench.common import dbt_build, peak_rss_mb, stage
from emonet_assets.lib.shared.rules import GENERATED_INTENSITY_SQL
from emonet_assets.lib.shared.tables import Table

ANNOTATORS = 4


def _store(root: Path):
    from emonet_assets.lib.shared.storage import Store

    return Store(str(root))


def stand_in_image(prompt_id: str) -> bytes:
    """An image file's stand-in: what the release reads, hashes and packs, without pixels to generate."""
    return f"stand-in image for prompt {prompt_id}".encode()


def stage_prompts(root: Path, images: int) -> dict:
    from emonet_assets.lib.design.prompt_design import DesignSpec, build_design
    from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy

    started = time.perf_counter()
    taxonomy = load_taxonomy()
    prompts, cells = build_design(DesignSpec(total=images), taxonomy)
    store = _store(root)
    store.write_table(Table.PROMPT_DESIGN, prompts)
    store.write_table(Table.TAXONOMY, taxonomy.table())
    seconds = {"design": time.perf_counter() - started}
    clock = time.perf_counter()
    # One image per prompt: stand-in bytes (written by the release stage) and a random perceptual hash, the tables
    # that generation and image QC write.
    sha = [hashlib.sha256(stand_in_image(p)).hexdigest() for p in prompts["prompt_id"]]
    rng = np.random.default_rng(0)
    manifest = prompts.select("prompt_id", "shard", "seed").with_columns(
        image_sha256=pl.Series(sha),
        image_path=pl.format("images/{}.png", pl.Series(sha)),
        model=pl.lit("models/stand-in"),
        model_fingerprint=pl.lit("stand-in"),
        license=pl.lit("MIT"),
        scheduler=pl.lit("EulerDiscreteScheduler"),
        steps=pl.lit(4, pl.Int32),
        guidance=pl.lit(0.0),
        width=pl.lit(512, pl.Int32),
        height=pl.lit(512, pl.Int32),
    )
    qc = pl.DataFrame(
        {
            "image_sha256": sha,
            "passed": (passed := rng.random(len(sha)) >= 0.02),
            "reasons": [[] if ok else ["blank"] for ok in passed],
            "phash": [f"{h:016x}" for h in rng.integers(0, 2**63, len(sha), dtype=np.int64)],
        }
    )
    store.write_table(Table.GENERATED_IMAGES, manifest)
    store.write_table(Table.IMAGE_QC, qc)
    seconds["stand_in_tables"] = time.perf_counter() - clock
    return {
        "seconds": seconds,
        "prompts": prompts.height,
        "cells": cells.height,
        "peak_rss_mb": peak_rss_mb(),
    }


def stage_annotations(root: Path, batch_images: int, tmp: Path) -> dict:
    from emonet_assets.lib.annotation.annotation_batches import LOG_SCHEMA, earlier_keys, stored_batch
    from emonet_assets.lib.annotation.annotation_formats import parse_annotation_file
    from emonet_assets.lib.annotation.annotation_import import ImageIndex, import_batch
    from emonet_assets.lib.annotation.simulated_panel import PanelSpec, ground_truth, simulate_ratings, write_long_csv
    from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy

    store = _store(root)
    taxonomy = load_taxonomy()
    emotions = [e.name for e in taxonomy.emotions]
    prompts = store.read_table(Table.PROMPT_DESIGN)
    index = ImageIndex.from_tables(store.read_table(Table.GENERATED_IMAGES), prompts)
    refs = prompts["prompt_id"].to_list()
    seconds = {"simulate": 0.0, "csv": 0.0, "parse": 0.0, "validate": 0.0, "parquet": 0.0}
    accepted = rejected = 0
    for number, start in enumerate(range(0, len(refs), batch_images)):
        clock = time.perf_counter()
        spec = PanelSpec(annotators=ANNOTATORS, seed=number)
        ratings = simulate_ratings(ground_truth(refs[start : start + batch_images], emotions, spec), spec)
        seconds["simulate"] += time.perf_counter() - clock
        clock = time.perf_counter()
        csv = tmp / f"batch-{number:03d}.csv"
        write_long_csv(ratings, csv)
        del ratings
        seconds["csv"] += time.perf_counter() - clock
        clock = time.perf_counter()
        parsed = parse_annotation_file(csv.name, csv.read_bytes())
        seconds["parse"] += time.perf_counter() - clock
        clock = time.perf_counter()
        batch = f"batch-{number:03d}"
        result = import_batch(parsed, batch, taxonomy, index, earlier_keys=earlier_keys(store, batch))
        seconds["validate"] += time.perf_counter() - clock
        clock = time.perf_counter()
        # One partition per batch and its log row, as the import asset writes them.
        now = datetime.now(UTC)
        store.write_table(Table.ANNOTATION_BATCHES, stored_batch(result.accepted, now, "expert"), batch)
        log = {name: None for name in LOG_SCHEMA} | {"batch_id": batch, "status": "imported", "raters": "expert"}
        log |= {"imported_at": now, "notes": [], **result.counts}
        store.write_table(Table.ANNOTATION_BATCH_LOG, pl.DataFrame([log], schema=LOG_SCHEMA), batch)
        seconds["parquet"] += time.perf_counter() - clock
        accepted += result.counts["accepted"]
        rejected += result.counts["rejected"]
        csv.unlink()
    return {"seconds": seconds, "accepted": accepted, "rejected": rejected, "peak_rss_mb": peak_rss_mb()}


def stage_annotations_table(root: Path, settings: dict) -> dict:
    """The annotations asset: a file per imported batch, each a copy of the batch's file, in import order."""
    from emonet_assets.lib.annotation.annotation_batches import write_annotations

    collected = write_annotations(_store(root), _duckdb(settings))
    return {"rows": collected.rows, "external": collected.external.height}


def stage_ratings_check(root: Path, settings: dict) -> dict:
    """The annotations asset's blocking check: GX file by file in worker processes, one key-uniqueness test in SQL."""
    from emonet_assets.lib.annotation.rating_checks import check_ratings
    from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy

    emotion_ids = [e.id for e in load_taxonomy().emotions]
    # As many GX worker processes as DuckDB threads: the profile's default (2) on the 2-core reference machine.
    workers = settings["duckdb_threads"]
    rows, suite = check_ratings(_store(root), Table.ANNOTATIONS, emotion_ids, _duckdb(settings), workers)
    return {"rows": rows, "passed": suite.success, "evaluated": suite.evaluated, "failures": suite.failures}


def _duckdb(settings: dict) -> dict:
    return {name.removeprefix("duckdb_"): value for name, value in settings.items()}


def stage_splits(root: Path, settings: dict) -> dict:
    """Read as the `splits` asset reads: only the columns and rows it uses, by DuckDB under the profile's settings."""
    from emonet_assets.lib.dataset.splits import assign_splits, read_rated_images
    from emonet_assets.lib.shared.catalog import scratch

    started = time.perf_counter()
    store = _store(root)
    with scratch(store, _duckdb(settings)) as con:
        images = read_rated_images(con, store)
    loaded = time.perf_counter() - started
    result = assign_splits(images)
    store.write_table(Table.SPLITS, result.assignments)
    counts = dict(result.assignments.group_by("split").len().iter_rows())
    return {
        "seconds": time.perf_counter() - started,
        "load_s": loaded,
        "splits": counts,
        "warnings": len(result.warnings),
        "peak_rss_mb": peak_rss_mb(),
    }


def stage_fairness(root: Path, resamples: int, settings: dict) -> dict:
    """The tables `fairness_report` builds, read as it reads them (the test images' consensus and the per-item
    agreement statistics from their Parquet files, by DuckDB under the profile's settings); predictions stand in."""
    from emonet_assets.lib.fairness import fairness
    from emonet_assets.lib.shared.catalog import quote_literal, read_columns, scratch

    store = _store(root)
    started = time.perf_counter()
    splits = store.read_table(Table.SPLITS)
    test = splits.filter(pl.col("split") == "test").select(image_id="image_sha256")
    seconds = {}

    def timed(name, fn, *args):
        clock = time.perf_counter()
        value = fn(*args)
        seconds[name] = time.perf_counter() - clock
        return value

    with scratch(store, _duckdb(settings)) as con:
        consensus, demographics = fairness.read_scored(con, store, test)
        rng = np.random.default_rng(1)
        predictions = consensus.select(
            "image_id",
            "emotion_id",
            predicted=(pl.col("median_rating") + rng.normal(0.0, 1.0, consensus.height)).clip(0, 7),
        )
        seconds["load"] = time.perf_counter() - started
        groups = timed(
            "group_metrics",
            fairness.group_metrics,
            predictions,
            consensus,
            demographics,
            fairness.ATTRIBUTES,
            20,
            resamples,
        )
        gaps = timed("disparities", fairness.disparities, groups)
        qc = read_columns(con, store, Table.IMAGE_QC, ["image_sha256", "passed"])
        balance = timed("data_balance", fairness.data_balance, splits, qc, demographics)
        items = f"(SELECT * FROM read_parquet({quote_literal(store.table_glob(Table.AGREEMENT_ITEM_STATS))}) "
        items += f"WHERE {GENERATED_INTENSITY_SQL})"
        agreement = timed("agreement", fairness.agreement_by_group, items, demographics, 20, fairness.ATTRIBUTES, con)
    return {
        "seconds": seconds,
        "test_images": test.height,
        "rows": {"group_metrics": groups.height, "disparities": gaps.height, "balance": balance.height},
        "agreement_items": int(agreement.filter(pl.col("attribute") == "age")["n_items"].sum()),
        "agreement_groups": agreement.height,
        "peak_rss_mb": peak_rss_mb(),
    }


def stage_export(root: Path, settings: dict) -> dict:
    """The marts and the per-item statistics copied from the catalog to Parquet by DuckDB, as the consensus asset
    does after `dbt build`."""
    from emonet_assets.defs.consensus.project import EXPORTED
    from emonet_assets.resources import StorageResource

    storage = StorageResource(root=str(root))
    catalog = str(root / "catalog.duckdb")
    copied = {name: storage.copy_table(Table(name), catalog, f"main.{name}", _duckdb(settings)) for name in EXPORTED}
    return {"rows": {name: metadata["dagster/row_count"] for name, metadata in copied.items()}}


def stage_release(root: Path, settings: dict) -> dict:
    """The release's rows assembled by DuckDB and packed into Parquet shards with the (stand-in) image bytes, as
    `benchmark_release` does before its card; the stand-in files are written first and removed last, timed apart."""
    clock = time.perf_counter()
    manifest = _store(root).read_table(Table.GENERATED_IMAGES).select("prompt_id", "image_path")
    images = _stand_in_images(root, manifest.height)
    try:
        for prompt_id, path in manifest.iter_rows():
            handle = os.open(root / path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(handle, stand_in_image(prompt_id))
            os.close(handle)
        del manifest
        written = time.perf_counter() - clock
        result = _release(root, settings)
    finally:
        clock = time.perf_counter()
        shutil.rmtree(images)
        (root / "images").unlink()
    result["seconds"] = {"stand_in_files": written + time.perf_counter() - clock, **result["seconds"]}
    return result


# What a small file takes in tmpfs: a page, and its inode and name.
MEMORY_PER_FILE = 5 * 1024


def _stand_in_images(root: Path, files: int) -> Path:
    """A fresh folder in memory (tmpfs) for the stand-in image files, linked in as the root's `images/`; under the
    root where /dev/shm has no room for them (a container's is often 64 MB). They stand for generation's output,
    written long before a release: on the reference machine's ext4, creating a file cost 85 to 310 us of kernel
    time (the more, the more files had just been deleted; a million took 85 s at best), more than the release
    spends reading and packing it, and 8 writer threads took longer than one. In memory a million take about 10 s
    (and 3.9 GB), and the release reads them as it reads any local file."""
    memory = Path("/dev/shm")
    roomy = memory.is_dir() and shutil.disk_usage(memory).free > files * MEMORY_PER_FILE
    folder = Path(tempfile.mkdtemp(prefix="emonet-bench-images-", dir=memory if roomy else root))
    link = root / "images"
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(folder, target_is_directory=True)
    return folder


def _release(root: Path, settings: dict) -> dict:
    from emonet_assets.lib.release.rows import license_conflicts, release_rows
    from emonet_assets.lib.release.shards import write_shards
    from emonet_assets.lib.shared.catalog import scratch_on_disk
    from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy
    from emonet_assets.profiles import ReleaseSettings

    store = _store(root)
    seconds = {}
    settings_ = ReleaseSettings()
    emotion_ids = [e.id for e in load_taxonomy().emotions]
    with scratch_on_disk(store, _duckdb(settings)) as con:
        # The simulated panel leaves some (image, emotion) items with no rating at all, and the release refuses an
        # image without consensus on every emotion: such images leave the splits first.
        clock = time.perf_counter()
        complete = con.sql(
            f"SELECT s.* FROM read_parquet('{store.table_glob(Table.SPLITS)}') AS s SEMI JOIN ("
            f"SELECT image_id FROM read_parquet('{store.table_glob(Table.CONSENSUS_LABELS)}') "
            f"WHERE {GENERATED_INTENSITY_SQL} GROUP BY image_id "
            f"HAVING count(*) = {len(emotion_ids)}) AS c ON s.image_sha256 = c.image_id"
        ).pl()
        dropped = store.read_table(Table.SPLITS).height - complete.height
        store.write_table(Table.SPLITS, complete)
        seconds["drop_incomplete"] = time.perf_counter() - clock
        clock = time.perf_counter()
        rows = release_rows(con, store, emotion_ids, settings_.max_failed_qc_share)
        seconds["rows"] = time.perf_counter() - clock
        clock = time.perf_counter()
        files = write_shards(store, rows, settings_.shard_bytes)
        seconds["shards"] = time.perf_counter() - clock
    conflicts = license_conflicts(rows.images, settings_.license)
    return {
        "seconds": seconds,
        "rows": files.rows,
        "shards": files.shards,
        "bytes": files.data_bytes(),
        "conflicts": conflicts.height,
        "dropped": dropped,
    }


# Timed parts of stages that are the bench standing in for the world, not the product's work: generation and image QC
# (their tables and the image files), experts (their ratings and CSV files) and the panel's incomplete images,
# dropped before the release.
STAND_INS = ("stand_in_tables", "simulate", "csv", "stand_in_files", "drop_incomplete")


def _line(name: str, result: dict, detail: str) -> dict:
    print(f"stage {name} {result['stage_s']:.1f} s {result['stage_peak_mb']:,.0f} MB", flush=True)
    print(f"  {detail}", flush=True)
    return result


def _seconds(result: dict) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in result["seconds"].items())


def _stages(args: argparse.Namespace, root: Path, tmp: Path, settings: dict) -> list:
    """(name, run, describe) per stage, in order: `run()` measures the stage in its own process."""

    def slowest(dbt: dict) -> str:
        return ", ".join(f"{m} {s:.1f} s" for m, s in sorted(dbt["models"].items(), key=lambda kv: -kv[1])[:6])

    return [
        (
            "prompts",
            lambda: stage(stage_prompts, root, args.images),
            lambda r: (
                f"{r['prompts']:,} prompts over {r['cells']:,} cells: {_seconds(r)} (the generation manifest and "
                "the QC table)"
            ),
        ),
        (
            "import",
            lambda: stage(stage_annotations, root, args.batch_images, tmp),
            lambda r: (
                f"{r['accepted'] + r['rejected']:,} ratings ({ANNOTATORS} annotators x 40 emotions, 5% "
                f"missing) in batches of {args.batch_images:,} images: {_seconds(r)}; {r['accepted']:,} accepted, "
                f"{r['rejected']:,} rejected"
            ),
        ),
        (
            "annotations_table",
            lambda: stage(stage_annotations_table, root, settings),
            lambda r: (
                f"{r['rows']:,} ratings in the annotations table, a file per batch; {r['external']} external images"
            ),
        ),
        (
            "ratings_check",
            lambda: stage(stage_ratings_check, root, settings),
            lambda r: (
                f"{r['rows']:,} ratings, {r['evaluated']} expectations, passed {r['passed']}"
                + (f", failures {r['failures']}" if r["failures"] else "")
            ),
        ),
        (
            "consensus",
            lambda: stage(dbt_build, root, args.dbt_select, settings),
            lambda r: (
                f"dbt build --select {args.dbt_select}: {len(r['models'])} models, tests {r['tests_s']:.1f} s, "
                f"failed {r['failed'] or 'none'}; slowest: {slowest(r)}"
            ),
        ),
        ("export", lambda: stage(stage_export, root, settings), lambda r: f"COPY ... TO Parquet: {r['rows']}"),
        (
            "splits",
            lambda: stage(stage_splits, root, settings),
            lambda r: f"loading {r['load_s']:.1f} s, {r['splits']}, {r['warnings']} warnings",
        ),
        (
            "fairness",
            lambda: stage(stage_fairness, root, args.resamples, settings),
            lambda r: (
                f"{r['test_images']:,} test images, {args.resamples:,} resamples: {_seconds(r)}; {r['rows']}, "
                f"agreement over {r['agreement_items']:,} items in {r['agreement_groups']} groups"
            ),
        ),
        (
            "release",
            lambda: stage(stage_release, root, settings),
            lambda r: (
                f"rows per split {r['rows']}, shards {r['shards']}, {r['bytes'] / 1e9:.2f} GB: {_seconds(r)}; "
                f"{r['dropped']} split images without consensus on every emotion left out first; "
                f"{r['conflicts']} license conflicts"
            ),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--batch-images", type=int, default=100_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--dbt-select", default="*", help="dbt models of the consensus stage (default: all of them)")
    parser.add_argument("--duckdb-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--duckdb-memory-limit", default="4GB", help="DuckDB's limit under dbt; past it, it spills")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument(
        "--stages",
        help="only these stages, comma-separated (default: all): re-measures them on a folder a --keep run filled",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_folder:
        tmp = args.keep or Path(scratch_folder)
        tmp.mkdir(parents=True, exist_ok=True)
        root = tmp / "root"
        settings = {
            "duckdb_threads": args.duckdb_threads,
            "duckdb_memory_limit": args.duckdb_memory_limit,
            "duckdb_temp_directory": str(tmp / "spill"),
        }
        stages = _stages(args, root, tmp, settings)
        names = [name for name, _, _ in stages]
        chosen = args.stages.split(",") if args.stages else names
        if unknown := sorted(set(chosen) - set(names)):
            parser.error(f"--stages: {', '.join(unknown)} not among {', '.join(names)}")
        total = time.perf_counter()
        results = [_line(name, result := run(), describe(result)) for name, run, describe in stages if name in chosen]
        elapsed = time.perf_counter() - total
        disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        print(f"  {disk / 1e9:.2f} GB under the storage root")
        parts = [r["seconds"] for r in results if isinstance(r.get("seconds"), dict)]
        stand_ins = sum(seconds.get(part, 0.0) for seconds in parts for part in STAND_INS)
        print(
            f"  of which the bench's stand-ins {stand_ins:.1f} s ({', '.join(STAND_INS)}): the product's work "
            f"{elapsed - stand_ins:.1f} s"
        )
        print(f"total {elapsed:.1f} s peak {max(r['stage_peak_mb'] for r in results):,.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
