"""Text-to-image generation over Hugging Face diffusers, reproducible per image.

Every image depends only on its own prompt, seed, model and settings: each one gets its own seeded
CPU generator, so its starting noise is the same whatever else is in the batch and on any device.
Models are read from a local folder or the local Hugging Face cache only; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from emonet_assets.lib.shared.profile_files import HUB_ID, cached_snapshot

if TYPE_CHECKING:  # diffusers and transformers load in seconds: import them where a pipeline is built or run
    from diffusers import StableDiffusionPipeline
    from diffusers.schedulers.scheduling_utils import SchedulerMixin
    from transformers import CLIPTokenizer

PNG_COMPRESS_LEVEL = 6
FINGERPRINT_LENGTH = 16
# The libraries whose versions each generated image records.
GENERATION_LIBRARIES = ("torch", "diffusers", "transformers")
# Keys that record which library version saved a config, not what the model is.
_SAVER_KEYS = {"_diffusers_version", "transformers_version"}
_SKIPPED_SUFFIXES = {".md", ".png", ".jpg", ".jpeg", ".gif", ".webp"}
# Test-only: set to N, every generated image gets ±N grey levels of noise seeded by its own seed. The whole suite
# run with it shows which results depend on exact pixels, as they would on another processor or GPU.
PIXEL_NOISE_VARIABLE = "EMONET_TEST_PIXEL_NOISE"


class GenerationError(RuntimeError):
    """A model that cannot be found or loaded, or settings it cannot run with; the message says what to do."""


def build_model_folder(path: Path, files: tuple[str, ...], save: Callable[[Path], None], what: str) -> Path:
    """Build in a hidden sibling folder and rename into place, so a half-built folder is never taken for a
    finished one; a folder that already holds `files` is left alone, and another process finishing first is fine.
    """
    path = Path(path)

    def complete() -> bool:
        return all((path / name).is_file() for name in files)

    if complete():
        return path
    if path.exists() and any(path.iterdir()):
        raise GenerationError(f"{path} exists but is not a complete {what} (needs {', '.join(files)}); remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.building-", dir=path.parent))
    try:
        save(staging)
        try:
            os.rename(staging, path)
        except OSError:
            if not complete():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def build_tiny_pipeline(path: str | Path) -> Path:
    """A few-MB random Stable Diffusion pipeline built from configs, so the demo and tests run offline on CPU."""
    return build_model_folder(
        Path(path),
        ("model_index.json",),
        lambda staging: _tiny_pipeline().save_pretrained(staging, safe_serialization=True),
        "diffusers pipeline",
    )


# One token per byte, so the window is wider than CLIP's 77 to hold the release prompts (about 220 characters).
TINY_TEXT_WINDOW = 320


def _tiny_pipeline() -> StableDiffusionPipeline:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = byte_level_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(32, 64),
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            latent_channels=4,
            norm_num_groups=32,
            sample_size=64,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=TINY_TEXT_WINDOW,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    for model in (unet, vae, text_encoder):
        model.eval()
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def byte_level_tokenizer() -> CLIPTokenizer:
    """CLIP's byte-level BPE with one token per byte and no merges: every text tokenizes, nothing is downloaded.

    transformers 5 builds CLIPTokenizer from an in-memory vocab and merges; it ignores vocab/merges file paths.
    """
    from transformers import CLIPTokenizer

    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    symbols = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]
    tokens = symbols + [f"{s}</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=TINY_TEXT_WINDOW)


def resolve_model(model: str | Path) -> Path:
    """The folder holding a model: a local folder as given, or a Hugging Face id's snapshot in the local cache."""
    from huggingface_hub import constants as hf_constants

    path = Path(model).expanduser()
    if path.is_dir():
        return path
    name = str(model)
    if HUB_ID.match(name):
        cached = cached_snapshot(name)
        if cached is not None:
            return cached
        raise GenerationError(
            f"model {name!r} is not in the local Hugging Face cache ({hf_constants.HF_HUB_CACHE}) and no "
            f"folder {path} exists; download it with `hf download {name}`, or with "
            f"`hf download {name} --local-dir <folder>` and set the model to that folder"
        )
    raise GenerationError(
        f"model folder {path.absolute()} does not exist; download the weights into it with "
        f"`hf download <hugging-face-id> --local-dir {path}`"
    )


def load_pipeline(
    model: str | Path,
    device: str = "auto",
    dtype: str = "auto",
    scheduler: str | None = None,
    compile: bool = False,
):
    """A ready-to-run pipeline from local files only, so a run never stalls on, or silently depends on, the network."""
    from diffusers import DiffusionPipeline

    folder = resolve_model(model)
    if not (folder / "model_index.json").exists():
        raise GenerationError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    device = resolve_device(device)
    pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True, dtype=resolve_dtype(dtype, device))
    if scheduler is not None:
        pipe.scheduler = _scheduler_class(pipe, scheduler).from_config(pipe.scheduler.config)
    pipe = pipe.to(device)
    if compile:
        _denoiser(pipe).compile()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise GenerationError("device 'cuda' was requested but CUDA is not available here; use device 'auto' or 'cpu'")
    if device not in ("cuda", "cpu"):
        raise GenerationError(f"unknown device {device!r}; use 'auto', 'cuda' or 'cpu'")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    if dtype not in ("bfloat16", "float16", "float32"):
        raise GenerationError(f"unknown dtype {dtype!r}; use 'auto', 'bfloat16', 'float16' or 'float32'")
    if device == "cpu" and dtype != "float32":
        warnings.warn(f"dtype {dtype} is slow or unsupported on CPU; using float32", RuntimeWarning, stacklevel=3)
        return torch.float32
    return getattr(torch, dtype)


def _scheduler_class(pipe, name: str) -> type[SchedulerMixin]:
    compatible = {cls.__name__: cls for cls in [type(pipe.scheduler), *pipe.scheduler.compatibles]}
    if name not in compatible:
        raise GenerationError(
            f"unknown scheduler {name!r} for this {type(pipe.scheduler).__name__} pipeline; "
            f"valid ones include: {', '.join(sorted(compatible))}"
        )
    return compatible[name]


def _denoiser(pipe) -> torch.nn.Module:
    for name in ("unet", "transformer"):
        module = getattr(pipe, name, None)
        if module is not None:
            return module
    raise GenerationError(f"{type(pipe).__name__} has neither a unet nor a transformer to compile")


def hub_model_fingerprint(model_path: str | Path) -> str:
    """Identifies the weights and configs, not where they live: equal on every machine holding the same model.

    Config JSONs count by content (without the saving library's version); every other file by its sha256,
    read from the Hugging Face cache's blob name when the file is a cache link, else streamed from disk.
    """
    folder = resolve_model(model_path)
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = file.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or file.suffix.lower() in _SKIPPED_SUFFIXES:
            continue
        digest.update(f"{rel.as_posix()}\0{_file_digest(file)}\n".encode())
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


def _file_digest(file: Path) -> str:
    if file.suffix == ".json":
        try:
            config = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            pass
        else:
            if isinstance(config, dict):
                config = {k: v for k, v in config.items() if k not in _SAVER_KEYS}
            canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
            return hashlib.sha256(canonical.encode()).hexdigest()
    if file.is_symlink():
        blob = Path(os.readlink(file)).name
        if re.fullmatch(r"[0-9a-f]{64}", blob):  # Hugging Face cache blobs of LFS files are named by their sha256
            return blob
    with file.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def generate(
    pipe,
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    steps: int,
    guidance: float,
    width: int,
    height: int,
    negative_prompt: str | None = None,
) -> list[Image.Image]:
    """One image per (prompt, seed); the starting noise comes from that seed alone, whatever the batch holds.

    Generators live on the CPU so the starting noise is also the same on CPU and GPU. The rest of the
    computation is exact for a given batch size; across batch sizes the kernels may round differently,
    which can move a few pixel values by one grey level.
    """
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    if not prompts:
        return []
    options: dict[str, Any] = {}
    if negative_prompt is not None:
        options["negative_prompt"] = [negative_prompt] * len(prompts)
    result = pipe(
        prompt=list(prompts),
        generator=[torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds],
        num_inference_steps=steps,
        guidance_scale=guidance,
        width=width,
        height=height,
        output_type="pil",
        **options,
    )
    noise = pixel_noise_level()
    if noise:
        return [perturbed(image, seed, noise) for image, seed in zip(result.images, seeds, strict=True)]
    return list(result.images)


def pixel_noise_level() -> int:
    """The grey levels of test noise asked for by EMONET_TEST_PIXEL_NOISE (0: none)."""
    text = os.environ.get(PIXEL_NOISE_VARIABLE, "").strip() or "0"
    if not text.isdigit() or not 0 <= int(text) <= 32:
        raise GenerationError(f"{PIXEL_NOISE_VARIABLE}={text!r}: give a whole number of grey levels from 0 to 32")
    return int(text)


def perturbed(image: Image.Image, seed: int, level: int) -> Image.Image:
    """`image` with up to ±`level` grey levels of noise drawn from `seed`: other pixels, the same for every run."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    noise = np.random.default_rng(int(seed)).integers(-level, level + 1, size=pixels.shape, dtype=np.int16)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8), mode="RGB")


def token_overflow(pipe, prompt: str) -> int:
    """Tokens past the longest text encoder window (0 when the prompt fits), so truncation can be recorded.

    Pipelines with several text encoders (SDXL, SD3, FLUX) report the most any one of them drops.
    """
    dropped = 0
    for name in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        tokenizer = getattr(pipe, name, None)
        if tokenizer is None:
            continue
        length = len(tokenizer(prompt, truncation=False, verbose=False).input_ids)
        dropped = max(dropped, length - tokenizer.model_max_length)
    return dropped


def generate_with_backoff(
    run_batch: Callable[[list], Sequence],
    items: Sequence,
    batch_size: int,
    on_oom: Callable[[int, BaseException], None] | None = None,
) -> tuple[list, int]:
    """Runs `run_batch` over `items` in chunks, halving the chunk after a GPU out-of-memory error and retrying it.

    A chunk that fails with a single item re-raises. `run_batch` returns one result per item; the results
    come back in item order with the batch size that worked last. `on_oom(new_batch_size, error)` hears of
    every halving.
    """
    items = list(items)
    results: list = []
    size = max(1, batch_size)
    start = 0
    while start < len(items):
        chunk = items[start : start + size]
        try:
            results.extend(run_batch(chunk))
            start += len(chunk)
            continue
        except RuntimeError as exc:
            if len(chunk) == 1 or not _is_out_of_memory(exc):
                raise
            size = len(chunk) // 2
            if on_oom is not None:
                on_oom(size, exc)
        # Outside the except block, so the failed batch's tensors (held by the traceback) are already freed.
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return results, size


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc)


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes that depend on the pixels alone (no metadata chunks, fixed compression), so equal pixels
    give an equal sha256 with the same Pillow and zlib."""
    pixels = image if image.mode in ("L", "RGB", "RGBA") else image.convert("RGB")
    clean = Image.frombytes(pixels.mode, pixels.size, pixels.tobytes())
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buffer.getvalue()


def quiet_libraries() -> None:
    """Truncation is recorded per image and loading is logged by the caller; the libraries' own chatter is noise."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
