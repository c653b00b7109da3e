"""Generation throughput: the asset's shard loop against a bare diffusers loop over the same pipeline, batch
size and steps, measured in the same process on the tiny CPU model.

The asset path adds what the bare loop skips: PNG encoding, sha256, atomic content-addressed writes, and a
manifest checkpoint after every batch (what makes a killed run resumable). bench_generation_gpu.py runs the
same two loops on an SDXL-architecture pipeline on a GPU.
"""

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import torch

from bench.common import peak_rss_mb
from emonet_assets.lib.design.prompt_design import DesignSpec, build_design
from emonet_assets.lib.generation.generation import (
    GENERATION_LIBRARIES,
    build_tiny_pipeline,
    generate,
    load_pipeline,
    quiet_libraries,
)
from emonet_assets.lib.generation.shard_generation import RunSettings, generate_shard
from emonet_assets.lib.shared.lineage import library_versions
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy

N_PROMPTS, BATCH, STEPS, SIZE = 256, 8, 2, 64


def design_prompts(n: int) -> pl.DataFrame:
    return build_design(DesignSpec(seed=1, total=n, shard_size=n), load_taxonomy())[0]


def bare_loop(pipe, prompts: pl.DataFrame, batch: int, steps: int, size: int, sync: Callable = lambda: None) -> float:
    """Images per second of diffusers alone, one seeded generator per image as the asset uses."""
    rows = prompts.to_dicts()
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        generate(
            pipe,
            [r["prompt"] for r in chunk],
            [r["seed"] for r in chunk],
            steps=steps,
            guidance=1.0,
            width=size,
            height=size,
        )
    sync()
    return len(rows) / (time.perf_counter() - started)


def asset_loop(
    pipe,
    prompts: pl.DataFrame,
    batch: int,
    steps: int,
    size: int,
    root: Path,
    device: str,
    dtype: str,
    sync: Callable = lambda: None,
) -> float:
    """Images per second of the generated_images asset's shard loop, storage writes included."""
    run = RunSettings(
        model="bench",
        fingerprint="bench",
        license="none",
        scheduler=type(pipe.scheduler).__name__,
        steps=steps,
        guidance=1.0,
        width=size,
        height=size,
        dtype=dtype,
        device=device,
        batch_size=batch,
        versions=library_versions(GENERATION_LIBRARIES),
    )
    started = time.perf_counter()
    generate_shard(Store(str(root)), "shard-00000", prompts, pipe, run)
    sync()
    return prompts.height / (time.perf_counter() - started)


def main() -> None:
    quiet_libraries()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        pipe = load_pipeline(build_tiny_pipeline(Path(tmp) / "tiny-sd"), device="cpu")
        prompts = design_prompts(N_PROMPTS)
        bare_loop(pipe, prompts.head(BATCH), BATCH, STEPS, SIZE)  # warm-up
        bare, asset = [], []
        for attempt in range(3):
            bare.append(bare_loop(pipe, prompts, BATCH, STEPS, SIZE))
            asset.append(asset_loop(pipe, prompts, BATCH, STEPS, SIZE, Path(tmp) / f"root-{attempt}", "cpu", "float32"))
        b, a = max(bare), max(asset)
        print(
            f"tiny model, {N_PROMPTS} prompts, {SIZE}x{SIZE}, batch {BATCH}, {STEPS} steps, CPU: "
            f"bare diffusers loop {b:.1f} images/s, asset {a:.1f} images/s, ratio asset/bare {a / b:.2f}"
        )
    print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
