"""Embedding throughput: Embedder.embed against a bare loop (decode, image processor, model forward) over the same
backbone, batch size and PNGs, measured in the same process.

Embedder.embed adds what the bare loop skips: per-image decode error handling, out-of-memory backoff,
L2 normalisation and the polars result table. With --gpu, a SigLIP so400m-architecture vision model (random
weights: the cost does not depend on them) runs in bf16 on CUDA at several batch sizes, with the model alone on
ready-made pixels as the ceiling the loops could reach.

    python -m bench.bench_embedding           # tiny backbone on CPU
    python -m bench.bench_embedding --gpu     # needs CUDA; prints the GPU's name with the figures
    python -m bench.bench_embedding --smoke   # the --gpu path on CPU with a tiny config, to check the script
"""

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

from bench.common import peak_rss_mb
from emonet_assets.lib.generation.generation import encode_png
from emonet_assets.lib.model.embedding import BackboneSpec, Embedder, build_tiny_backbone, decode_image

BATCH = 32
# (PNGs, side): the tiny model's own size, where per-image overheads show, and the sdxl-turbo profile's 512x512,
# where decoding and resizing dominate and Embedder's decode threads pay off.
CPU_CASES = ((512, 64), (128, 512))
SO400M = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "patch_size": 16,
    "image_size": 384,
}
SMOKE = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "patch_size": 16,
    "image_size": 64,
}


def synthetic_pngs(n: int, size: int) -> list[tuple[str, bytes]]:
    """Smooth random colour fields, upsampled from coarse noise so they compress (and decode) like photos."""
    rng = np.random.default_rng(0)
    images = []
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        images.append((f"{i:064x}", encode_png(coarse.resize((size, size), Image.Resampling.BICUBIC))))
    return images


def bare_loop(model, processor, images: list[tuple[str, bytes]], batch: int, sync: Callable = lambda: None) -> float:
    """Images per second of decoding, the image processor and the forward pass alone."""
    started = time.perf_counter()
    for i in range(0, len(images), batch):
        decoded = [decode_image(data) for _, data in images[i : i + batch]]
        pixels = processor(images=decoded, return_tensors="pt")["pixel_values"].to(model.device, model.dtype)
        with torch.inference_mode():
            model(pixel_values=pixels).pooler_output.float().cpu()
    sync()
    return len(images) / (time.perf_counter() - started)


def embed_loop(embedder: Embedder, images: list[tuple[str, bytes]], sync: Callable = lambda: None) -> float:
    started = time.perf_counter()
    result = embedder.embed(images)
    sync()
    assert result.table.height == len(images)
    return len(images) / (time.perf_counter() - started)


def model_only(model, batch: int, steps: int, sync: Callable) -> float:
    """Images per second of the forward pass on pixels already on the device: what the loops could reach."""
    size = model.config.image_size
    pixels = torch.randn(batch, 3, size, size, device=model.device, dtype=model.dtype)
    with torch.inference_mode():
        model(pixel_values=pixels)
        sync()
        started = time.perf_counter()
        for _ in range(steps):
            model(pixel_values=pixels)
        sync()
    return batch * steps / (time.perf_counter() - started)


def bare_backbone(folder: Path, device: str, dtype: str):
    """The weights Embedder loads, loaded again without it, for the baseline loop."""
    from transformers import AutoImageProcessor, SiglipVisionModel

    model = SiglipVisionModel.from_pretrained(folder, local_files_only=True, dtype=getattr(torch, dtype))
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True, backend="pil")
    return model.to(device).eval(), processor


def load_embedder(folder: Path, batch: int, device: str, dtype: str) -> Embedder:
    return Embedder.load(BackboneSpec("siglip", str(folder), batch_size=batch, device=device, dtype=dtype))


def cpu_main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_backbone(Path(tmp) / "tiny")
        embedder = load_embedder(folder, BATCH, "cpu", "float32")
        model, processor = bare_backbone(folder, "cpu", "float32")
        for n_images, size in CPU_CASES:
            images = synthetic_pngs(n_images, size)
            bare_loop(model, processor, images[:BATCH], BATCH)  # warm-up
            bare, embed = [], []
            for _ in range(3):
                bare.append(bare_loop(model, processor, images, BATCH))
                embed.append(embed_loop(embedder, images))
            b, e = max(bare), max(embed)
            print(
                f"tiny backbone ({embedder.dim}-dim), {n_images} PNGs {size}x{size}, batch {BATCH}, CPU, "
                f"2 torch threads, {embedder.workers} decode threads: "
                f"bare loop {b:.0f} images/s, Embedder.embed {e:.0f} images/s, ratio embed/bare {e / b:.2f}"
            )
    print(f"peak RSS {peak_rss_mb():.0f} MB")


def gpu_main(smoke: bool, n_images: int, png_size: int, batches: list[int]) -> None:
    from transformers import SiglipVisionConfig, SiglipVisionModel
    from transformers.models.siglip import SiglipImageProcessorPil

    device, dtype = ("cpu", "float32") if smoke else ("cuda", "bfloat16")
    arch = SMOKE if smoke else SO400M
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    name = "CPU (smoke)" if smoke else torch.cuda.get_device_name()
    images = synthetic_pngs(n_images, png_size)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "siglip"
        started = time.perf_counter()
        SiglipVisionModel(SiglipVisionConfig(**arch)).to(getattr(torch, dtype)).save_pretrained(folder)
        size = arch["image_size"]
        SiglipImageProcessorPil(size={"height": size, "width": size}).save_pretrained(folder)
        built = time.perf_counter() - started
        model, processor = bare_backbone(folder, device, dtype)
        print(
            f"{name}: random SigLIP {'tiny' if smoke else 'so400m'}-architecture vision model built and saved in "
            f"{built:.1f} s; {n_images} PNGs {png_size}x{png_size} resized to {size}x{size}, {dtype}"
        )
        for batch in batches:
            started = time.perf_counter()
            embedder = load_embedder(folder, batch, device, dtype)
            loaded = time.perf_counter() - started
            bare_loop(model, processor, images[:batch], batch, sync)  # warm-ups
            embed_loop(embedder, images[:batch], sync)
            peak = ""
            if device == "cuda":
                resident = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            embed = embed_loop(embedder, images, sync)
            if device == "cuda":
                top = torch.cuda.max_memory_allocated()
                peak = (
                    f", peak GPU memory {top / 2**30:.2f} GiB ({(top - resident) / 2**30:.2f} above both weight copies)"
                )
            bare = bare_loop(model, processor, images, batch, sync)
            ceiling = model_only(model, batch, max(1, n_images // batch), sync)
            print(
                f"  batch {batch}: Embedder.load {loaded:.1f} s (fingerprint included); "
                f"model alone {ceiling:.0f} images/s, bare loop {bare:.0f} images/s, "
                f"Embedder.embed {embed:.0f} images/s, ratio embed/bare {embed / bare:.2f}{peak}"
            )
    print(f"peak RSS {peak_rss_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--gpu", action="store_true", help="SigLIP so400m architecture, bf16, on CUDA")
    mode.add_argument("--smoke", action="store_true", help="the --gpu path on CPU with a tiny config")
    parser.add_argument("--images", type=int, help="PNGs per measurement (default 1024 with --gpu, 32 with --smoke)")
    parser.add_argument("--png-size", type=int, help="PNG side in pixels (default 512 with --gpu, 64 with --smoke)")
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 32 64 128; 4 8 with --smoke)")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if not (args.gpu or args.smoke):
        cpu_main()
    elif args.gpu and not torch.cuda.is_available():
        print("no CUDA device here: the GPU benchmark did not run (use --smoke to check the script on CPU)")
    else:
        gpu_main(
            args.smoke,
            args.images or (32 if args.smoke else 1024),
            args.png_size or (64 if args.smoke else 512),
            args.batches or ([4, 8] if args.smoke else [32, 64, 128]),
        )


if __name__ == "__main__":
    main()
