"""The GPU variant of bench_generation: an SDXL-architecture pipeline (random weights: the cost does not
depend on them) at 1024x1024 in bf16 with SDPA attention, with and without torch.compile, images per second
for the asset's shard loop and for a bare diffusers loop over the same pipeline, batch size and steps.

    python -m bench.bench_generation_gpu            # needs CUDA; prints the GPU's name with the figures
    python -m bench.bench_generation_gpu --smoke    # a scaled-down SDXL on CPU, to check the script itself
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench.bench_generation import asset_loop, bare_loop, design_prompts
from bench.common import peak_rss_mb
from emonet_assets.lib.generation.generation import byte_level_tokenizer, quiet_libraries

FULL = {
    "blocks": (320, 640, 1280),
    "transformer_layers": (1, 2, 10),
    "head_dim": (5, 10, 20),
    "text": ((768, 3072, 12, 12), (1280, 5120, 32, 20)),
    "vae": (128, 256, 512, 512),
    "time_dim": 256,
    "size": 1024,
}
SMOKE = {
    "blocks": (32, 64, 64),
    "transformer_layers": (1, 1, 1),
    "head_dim": (2, 4, 4),
    "text": ((32, 37, 2, 4), (32, 37, 2, 4)),
    "vae": (32, 32, 64, 64),
    "time_dim": 8,
    "size": 64,
}


def sdxl_pipeline(arch: dict, dtype: torch.dtype, device: str):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = byte_level_tokenizer()
    tokenizer.model_max_length = 77
    encoders = []
    for (hidden, ffn, layers, heads), cls in zip(
        arch["text"], (CLIPTextModel, CLIPTextModelWithProjection), strict=True
    ):
        config = CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=ffn,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            projection_dim=hidden,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        encoders.append(cls(config))
    cross_dim = arch["text"][0][0] + arch["text"][1][0]
    unet = UNet2DConditionModel(
        sample_size=arch["size"] // 8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=arch["blocks"],
        layers_per_block=2,
        transformer_layers_per_block=arch["transformer_layers"],
        attention_head_dim=arch["head_dim"],
        cross_attention_dim=cross_dim,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=arch["time_dim"],
        projection_class_embeddings_input_dim=arch["time_dim"] * 6 + arch["text"][1][0],
    )
    vae = AutoencoderKL(
        block_out_channels=arch["vae"],
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=arch["size"],
        scaling_factor=0.13025,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=encoders[0],
        text_encoder_2=encoders[1],
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )
    for module in (unet, vae, *encoders):
        module.eval()
    pipe = pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def measure(pipe, prompts, size: int, steps: int, batch: int, root: Path, device: str, dtype: str):
    """(warm-up seconds, bare, asset images per second); the warm-up batch also triggers compilation."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    started = time.perf_counter()
    bare_loop(pipe, prompts.head(batch), batch, steps, size, sync)
    return (
        time.perf_counter() - started,
        bare_loop(pipe, prompts, batch, steps, size, sync),
        asset_loop(pipe, prompts, batch, steps, size, root, device, dtype, sync),
    )


def main() -> None:
    quiet_libraries()
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="scaled-down SDXL on CPU")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument(
        "--compile-mode",
        default="max-autotune-no-cudagraphs",
        help="torch.compile mode on CUDA (max-autotune tunes every GEMM and takes minutes; 'default' does not)",
    )
    args = parser.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        print("no CUDA device here: the GPU benchmark did not run (use --smoke to check the script on CPU)")
        return
    device, dtype = ("cpu", torch.float32) if args.smoke else ("cuda", torch.bfloat16)
    arch = SMOKE if args.smoke else FULL
    name = "CPU (smoke)" if args.smoke else torch.cuda.get_device_name()
    prompts = design_prompts(args.images)
    pipe = sdxl_pipeline(arch, dtype, device)
    compile_mode = args.compile_mode if device == "cuda" else "default"
    with tempfile.TemporaryDirectory() as tmp:
        for compiled in (False, True):
            if compiled:
                pipe.unet = torch.compile(pipe.unet, mode=compile_mode)
            warm_up, bare, asset = measure(
                pipe,
                prompts,
                arch["size"],
                args.steps,
                args.batch,
                Path(tmp) / f"c{compiled}",
                device,
                str(dtype).removeprefix("torch."),
            )
            print(
                f"{name}: SDXL architecture {arch['size']}x{arch['size']}, {str(dtype).removeprefix('torch.')}, SDPA, "
                f"torch.compile {f'on ({compile_mode})' if compiled else 'off'}, batch {args.batch}, "
                f"{args.steps} steps: warm-up batch {warm_up:.1f} s, bare loop {bare:.2f} images/s, "
                f"asset {asset:.2f} images/s, ratio {asset / bare:.2f}"
            )
    print(
        f"peak RSS {peak_rss_mb():.0f} MB"
        + (f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device == "cuda" else "")
    )


if __name__ == "__main__":
    main()
