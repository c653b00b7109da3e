"""Generation throughput: the asset's shard loop against a bare diffusers loop over the same pipeline, batch
size and steps, measured in the same process on the tiny CPU model.

The asset path adds what the bare loop skips: PNG encoding, sha256, atomic content-addressed writes, and a
manifest checkpoint after every batch (what makes a killed run resumable). `--gpu` runs the SDXL-architecture
variant in bench_generation_gpu.py instead.
"""

import tempfile
import time
from pathlib import Path

import polars as pl
import torch

from bench.common import peak_rss_mb
from emonet_assets.lib.generation import build_tiny_pipeline, generate, library_versions, load_pipeline, quiet_libraries
from emonet_assets.lib.prompt_design import DesignSpec, build_design
from emonet_assets.lib.shard_generation import RunSettings, generate_shard
from emonet_assets.lib.storage import Store
from emonet_assets.lib.taxonomy import load_taxonomy

N_PROMPTS, BATCH, STEPS, SIZE = 256, 8, 2, 64


def bare_loop_settings(steps: int = STEPS, size: int = SIZE) -> dict:
    return {"steps": steps, "guidance": 1.0, "width": size, "height": size}


def bare_loop(pipe, prompts: pl.DataFrame) -> float:
    started = time.perf_counter()
    rows = prompts.to_dicts()
    for i in range(0, len(rows), BATCH):
        batch = rows[i : i + BATCH]
        generate(pipe, [r["prompt"] for r in batch], [r["seed"] for r in batch], **bare_loop_settings())
    return time.perf_counter() - started


def asset_loop(pipe, prompts: pl.DataFrame, root: Path) -> float:
    run = RunSettings(
        model="tiny",
        fingerprint="bench",
        license="MIT",
        scheduler="DDIMScheduler",
        steps=STEPS,
        guidance=1.0,
        width=SIZE,
        height=SIZE,
        dtype="float32",
        device="cpu",
        batch_size=BATCH,
        versions=library_versions(),
    )
    started = time.perf_counter()
    generate_shard(Store(str(root)), "shard-00000", prompts, pipe, run)
    return time.perf_counter() - started


def main() -> None:
    quiet_libraries()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        pipe = load_pipeline(build_tiny_pipeline(Path(tmp) / "tiny-sd"), device="cpu")
        prompts, _ = build_design(DesignSpec(seed=1, total=N_PROMPTS, shard_size=N_PROMPTS), load_taxonomy())
        bare_loop(pipe, prompts.head(BATCH))  # warm-up
        bare, asset = [], []
        for attempt in range(3):
            bare.append(bare_loop(pipe, prompts))
            asset.append(asset_loop(pipe, prompts, Path(tmp) / f"root-{attempt}"))
        b, a = min(bare), min(asset)
        print(
            f"tiny model, {N_PROMPTS} prompts, {SIZE}x{SIZE}, batch {BATCH}, {STEPS} steps, CPU: "
            f"bare diffusers loop {N_PROMPTS / b:.1f} images/s, asset {N_PROMPTS / a:.1f} images/s, "
            f"ratio asset/bare {b / a:.2f}"
        )
    print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
