"""16 million ratings (100,000 images x 4 annotators x 40 emotions) through import, validation and dbt.

Each stage runs in its own process, so its peak RSS is its own. The bootstrap CI of alpha is timed
against the naive loop (the `krippendorff` package once per resample: a few resamples, extrapolated to
1,000), and the SQL point estimates are compared with the package's.
`python -m bench.bench_annotation [--images N]` (default 100,000).
"""

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from bench.common import dbt_build, in_process, peak_rss_mb

ANNOTATORS = 4
NAIVE_RESAMPLES = 3


def write_ratings_csv(path: Path, images: int) -> int:
    """A long intensity CSV with a shared truth per (image, emotion) plus annotator noise."""
    from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy

    emotions = [e.name for e in load_taxonomy().emotions]
    rng = np.random.default_rng(0)
    truth = np.where(rng.random((images, len(emotions))) < 0.2, rng.integers(1, 8, (images, len(emotions))), 0)
    frames = []
    for a in range(ANNOTATORS):
        noisy = np.clip(np.rint(truth + rng.normal(0.3 * (a - 1.5), 1.0, truth.shape)), 0, 7).astype(np.int8)
        frames.append(
            pl.DataFrame(
                {
                    "path": np.repeat(np.arange(images), len(emotions)),
                    "annotator": f"expert-{a + 1}",
                    "value": noisy.ravel(),
                    "emotion": np.tile(np.array(emotions), images),
                }
            )
        )
    ratings = pl.concat(frames).with_columns(pl.col("path").cast(pl.String).str.zfill(5))
    ratings.write_csv(path)
    return ratings.height


def stage_import(csv: Path, root: Path) -> dict:
    from emonet_assets.lib.annotation.annotation_formats import parse_annotation_file
    from emonet_assets.lib.annotation.annotation_import import ImageIndex, import_batch
    from emonet_assets.lib.shared.storage import Store
    from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy

    started = time.perf_counter()
    data = csv.read_bytes()
    parsed = parse_annotation_file(csv.name, data)
    parsed_s = time.perf_counter() - started
    result = import_batch(parsed, "bench", load_taxonomy(), ImageIndex(refs={}), collection="bench")
    validated_s = time.perf_counter() - started - parsed_s
    store = Store(str(root))
    store.write_table("annotations", result.accepted.with_columns(imported_at=pl.lit(datetime.now(UTC))))
    store.write_table("taxonomy", load_taxonomy().table())
    return {
        "parse_s": parsed_s,
        "validate_s": validated_s,
        "write_s": time.perf_counter() - started - parsed_s - validated_s,
        "counts": result.counts,
        "peak_rss_mb": peak_rss_mb(),
    }


def stage_expectations(root: Path) -> dict:
    from emonet_assets.lib.shared.expectations import rating_expectations, validate
    from emonet_assets.lib.shared.storage import Store
    from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy

    started = time.perf_counter()
    ratings = Store(str(root)).read_table("annotations").drop("imported_at")
    suite = validate(ratings.to_pandas(), "annotations", rating_expectations([e.id for e in load_taxonomy().emotions]))
    return {"seconds": time.perf_counter() - started, "success": suite.success, "peak_rss_mb": peak_rss_mb()}


def stage_naive_bootstrap(root: Path) -> dict:
    import duckdb
    import krippendorff

    from emonet_assets.lib.consensus.agreement import naive_bootstrap_alpha, reliability_matrix
    from emonet_assets.lib.shared.storage import Store

    ratings = Store(str(root)).read_table("annotations").select("image_id", "annotator", "emotion_id", "value")
    seconds = {}
    for resamples in (1, 1 + NAIVE_RESAMPLES):
        started = time.perf_counter()
        naive_bootstrap_alpha(ratings, resamples=resamples, seed=42)
        seconds[resamples] = time.perf_counter() - started
    # The difference leaves out building the 40 reliability matrices, which a loop does once.
    per_resample = (seconds[1 + NAIVE_RESAMPLES] - seconds[1]) / NAIVE_RESAMPLES
    with duckdb.connect(str(root / "catalog.duckdb"), read_only=True) as con:
        sql = dict(con.sql("select emotion_id, alpha_interval from emotion_agreement").fetchall())
    worst = max(
        abs(
            sql[e]
            - krippendorff.alpha(reliability_data=reliability_matrix(ratings, e), level_of_measurement="interval")
        )
        for e in sorted(sql)
    )
    return {"per_resample_s": per_resample, "max_abs_diff_vs_package": worst, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100_000)
    images = parser.parse_args().images
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        csv = Path(tmp) / "ratings.csv"
        started = time.perf_counter()
        rows = write_ratings_csv(csv, images)
        print(
            f"{rows:,} ratings ({images:,} images x {ANNOTATORS} annotators x 40 emotions), "
            f"CSV {csv.stat().st_size / 1e6:,.0f} MB written in {time.perf_counter() - started:.1f} s"
        )
        imported = in_process(stage_import, csv, root)
        print(
            f"import: parse {imported['parse_s']:.1f} s, validate {imported['validate_s']:.1f} s, "
            f"write Parquet {imported['write_s']:.1f} s; {imported['counts']}; "
            f"peak RSS {imported['peak_rss_mb']:,.0f} MB"
        )
        suite = in_process(stage_expectations, root)
        print(
            f"GX suite on the accepted ratings: {suite['seconds']:.1f} s (success {suite['success']}); "
            f"peak RSS {suite['peak_rss_mb']:,.0f} MB"
        )
        dbt = in_process(dbt_build, root)
        print(
            f"dbt build: {dbt['seconds']:.1f} s wall, tests {dbt['tests_s']:.1f} s, failed {dbt['failed'] or 'none'}; "
            f"peak RSS {dbt['peak_rss_mb']:,.0f} MB"
        )
        for model, seconds in sorted(dbt["models"].items(), key=lambda kv: -kv[1]):
            print(f"  {model:<34} {seconds:6.1f} s")
        naive = in_process(stage_naive_bootstrap, root)
        fast = dbt["models"]["agreement_bootstrap"]
        extrapolated = naive["per_resample_s"] * 1000
        print(
            f"bootstrap CI, 1,000 resamples x 40 emotions: sufficient statistics {fast:.1f} s; naive krippendorff "
            f"loop {naive['per_resample_s']:.2f} s per resample -> {extrapolated / 60:.1f} min extrapolated; "
            f"ratio {extrapolated / fast:,.0f}x"
        )
        print(f"SQL alpha vs krippendorff package, 40 emotions: max |diff| {naive['max_abs_diff_vs_package']:.1e}")


if __name__ == "__main__":
    sys.exit(main())
