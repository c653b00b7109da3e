"""Text-to-image generation (emonet_assets.lib.generation.generation) on the tiny offline pipeline, CPU only."""

from __future__ import annotations

import hashlib
import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from emonet_assets.lib.generation.generation import (
    GENERATION_LIBRARIES,
    PIXEL_NOISE_VARIABLE,
    GenerationError,
    build_tiny_pipeline,
    encode_png,
    generate,
    generate_with_backoff,
    hub_model_fingerprint,
    load_pipeline,
    token_overflow,
)
from emonet_assets.lib.shared.lineage import library_versions

SETTINGS = {"steps": 2, "guidance": 1.0, "width": 64, "height": 64}
LONG_PROMPT = " ".join(["a portrait photograph of a person with a clearly visible emotional expression"] * 30)


pytestmark = pytest.mark.usefixtures("offline_single_thread")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="module")
def pipe(tiny_model):
    return load_pipeline(tiny_model, device="cpu")


def pixels(images: list[Image.Image]) -> list[np.ndarray]:
    return [np.asarray(image, dtype=np.int16) for image in images]


def test_tiny_pipeline_loads_as_a_float32_cpu_pipeline_and_makes_rgb_images_of_the_requested_size(pipe):
    assert pipe.device.type == "cpu"
    assert pipe.dtype == torch.float32
    [image] = generate(pipe, ["a happy face"], [1], **SETTINGS)
    assert image.size == (64, 64)
    assert image.mode == "RGB"


def test_same_prompt_and_seed_give_identical_pixels_across_calls_and_a_fresh_load(pipe, tiny_model):
    [first] = pixels(generate(pipe, ["a happy face"], [7], **SETTINGS))
    [again] = pixels(generate(pipe, ["a happy face"], [7], **SETTINGS))
    [reloaded] = pixels(generate(load_pipeline(tiny_model, device="cpu"), ["a happy face"], [7], **SETTINGS))
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, reloaded)


def test_different_seeds_give_different_images(pipe):
    one, two = pixels(generate(pipe, ["a happy face", "a happy face"], [1, 2], **SETTINGS))
    assert (one != two).mean() > 0.5


def test_an_image_depends_on_its_own_prompt_and_seed_not_on_the_rest_of_the_batch(pipe):
    batch = pixels(generate(pipe, ["anger", "joy", "awe", "fear"], [11, 12, 13, 14], **SETTINGS))
    reshuffled = pixels(generate(pipe, ["awe", "pride", "shame", "grief"], [13, 99, 98, 97], **SETTINGS))
    [alone] = pixels(generate(pipe, ["awe"], [13], **SETTINGS))
    # Same batch size: other images and the position in the batch change nothing.
    np.testing.assert_array_equal(batch[2], reshuffled[0])
    # Alone: the same image; CPU kernels for a batch of one may round a few values by one grey level.
    assert np.abs(batch[2] - alone).max() <= 1
    assert (batch[2] != alone).mean() < 0.001
    assert (batch[1] != alone).mean() > 0.5


def test_pixel_noise_setting_moves_pixels_by_at_most_its_level_and_the_same_way_every_run(pipe, monkeypatch):
    monkeypatch.delenv(PIXEL_NOISE_VARIABLE, raising=False)
    [clean] = pixels(generate(pipe, ["a happy face"], [5], **SETTINGS))
    monkeypatch.setenv(PIXEL_NOISE_VARIABLE, "2")
    [noisy] = pixels(generate(pipe, ["a happy face"], [5], **SETTINGS))
    [again] = pixels(generate(pipe, ["a happy face"], [5], **SETTINGS))
    assert np.abs(noisy - clean).max() <= 2
    assert (noisy != clean).mean() > 0.5
    np.testing.assert_array_equal(noisy, again)
    monkeypatch.setenv(PIXEL_NOISE_VARIABLE, "lots")
    with pytest.raises(GenerationError, match=PIXEL_NOISE_VARIABLE):
        generate(pipe, ["a happy face"], [5], **SETTINGS)


def test_negative_prompt_steers_the_image_when_guidance_is_on(pipe):
    settings = {**SETTINGS, "guidance": 3.0}
    [plain] = pixels(generate(pipe, ["a face"], [5], **settings))
    [steered] = pixels(generate(pipe, ["a face"], [5], negative_prompt="blurry", **settings))
    assert (plain != steered).any()


def test_prompts_and_seeds_must_pair_up(pipe):
    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        generate(pipe, ["a", "b"], [1], **SETTINGS)


def test_token_overflow_counts_what_the_text_encoder_drops_and_long_prompts_still_generate(pipe):
    assert token_overflow(pipe, "a happy face") == 0
    assert len(LONG_PROMPT.split()) > 300
    assert token_overflow(pipe, LONG_PROMPT) > 0
    [image] = generate(pipe, [LONG_PROMPT], [3], **SETTINGS)
    assert image.size == (64, 64)


def test_fingerprint_is_stable_and_the_same_for_the_same_weights_elsewhere(tiny_model, tmp_path):
    rebuilt = build_tiny_pipeline(tmp_path / "elsewhere" / "tiny-sd")
    assert hub_model_fingerprint(tiny_model) == hub_model_fingerprint(tiny_model)
    assert hub_model_fingerprint(str(rebuilt)) == hub_model_fingerprint(tiny_model)
    assert len(hub_model_fingerprint(tiny_model)) == 16


def test_fingerprint_changes_when_a_weight_file_changes_but_not_with_the_saving_library_version(tiny_model, tmp_path):
    copy = shutil.copytree(tiny_model, tmp_path / "copy")
    original = hub_model_fingerprint(tiny_model)

    config = copy / "unet" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "_diffusers_version": "0.0.1"}, indent=4))
    assert hub_model_fingerprint(copy) == original

    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    assert hub_model_fingerprint(copy) != original


def test_fingerprint_of_a_hugging_face_cache_layout_matches_a_plain_folder(tiny_model, tmp_path):
    """In the HF cache, weight files are links to blobs named by their sha256; the fingerprint must not change."""
    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshot"
    blobs.mkdir()
    for file in sorted(p for p in tiny_model.rglob("*") if p.is_file()):
        target = snapshot / file.relative_to(tiny_model)
        target.parent.mkdir(parents=True, exist_ok=True)
        if file.suffix == ".json":
            shutil.copy(file, target)
        else:
            blob = blobs / hashlib.sha256(file.read_bytes()).hexdigest()
            shutil.copy(file, blob)
            target.symlink_to(blob)
    assert hub_model_fingerprint(snapshot) == hub_model_fingerprint(tiny_model)


def test_missing_model_folder_says_where_and_how_to_download(tmp_path):
    missing = tmp_path / "models" / "sdxl"
    with pytest.raises(GenerationError) as info:
        load_pipeline(missing, device="cpu")
    assert str(missing) in str(info.value)
    assert "hf download" in str(info.value)
    assert "--local-dir" in str(info.value)


def test_uncached_hugging_face_id_says_how_to_download_it():
    with pytest.raises(GenerationError, match="hf download emonet-tests/not-a-cached-model"):
        load_pipeline("emonet-tests/not-a-cached-model", device="cpu")


def test_folder_without_a_pipeline_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(GenerationError, match="no model_index.json"):
        load_pipeline(tmp_path, device="cpu")
    with pytest.raises(GenerationError, match=r"not a complete diffusers pipeline \(needs model_index.json\)"):
        build_tiny_pipeline(tmp_path)


def test_scheduler_can_be_swapped_by_class_name(tiny_model):
    pipe = load_pipeline(tiny_model, device="cpu", scheduler="EulerDiscreteScheduler")
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    [image] = generate(pipe, ["a calm face"], [1], **SETTINGS)
    assert image.size == (64, 64)


def test_unknown_scheduler_lists_valid_ones(tiny_model):
    with pytest.raises(GenerationError, match="unknown scheduler 'WarpDrive'.*EulerDiscreteScheduler"):
        load_pipeline(tiny_model, device="cpu", scheduler="WarpDrive")


def test_half_precision_on_cpu_falls_back_to_float32_with_a_warning(tiny_model):
    with pytest.warns(RuntimeWarning, match="using float32"):
        pipe = load_pipeline(tiny_model, device="cpu", dtype="bfloat16")
    assert pipe.dtype == torch.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_requested_without_cuda_is_an_error(tiny_model):
    with pytest.raises(GenerationError, match="CUDA is not available"):
        load_pipeline(tiny_model, device="cuda")


def test_compile_compiles_the_denoiser(tiny_model, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda module, *args, **kwargs: compiled.append(module))
    pipe = load_pipeline(tiny_model, device="cpu", compile=True)
    assert compiled == [pipe.unet]


def test_build_tiny_pipeline_is_idempotent_and_leaves_no_staging_folders(tiny_model):
    index = tiny_model / "model_index.json"
    before = index.stat().st_mtime_ns
    assert build_tiny_pipeline(tiny_model) == tiny_model
    assert index.stat().st_mtime_ns == before
    assert [p.name for p in tiny_model.parent.iterdir()] == [tiny_model.name]


def test_encode_png_depends_on_pixels_only(pipe):
    [image] = generate(pipe, ["a face"], [4], **SETTINGS)
    assert encode_png(image) == encode_png(image)
    tagged = Image.open(io.BytesIO(encode_png(image)))
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "something with a timestamp")
    buffer = io.BytesIO()
    tagged.save(buffer, format="PNG", pnginfo=info)
    assert encode_png(Image.open(io.BytesIO(buffer.getvalue()))) == encode_png(image)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(image)))), np.asarray(image))


def fake_batch_runner(limit: int, calls: list[int]):
    def run_batch(chunk: list[int]) -> list[int]:
        calls.append(len(chunk))
        if len(chunk) > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [item * 10 for item in chunk]

    return run_batch


def test_backoff_halves_the_batch_on_out_of_memory_and_keeps_item_order():
    calls: list[int] = []
    halvings: list[int] = []
    results, final = generate_with_backoff(
        fake_batch_runner(2, calls), list(range(9)), 8, on_oom=lambda size, exc: halvings.append(size)
    )
    assert results == [item * 10 for item in range(9)]
    assert final == 2
    assert halvings == [4, 2]
    assert calls == [8, 4, 2, 2, 2, 2, 1]


def test_backoff_recognises_out_of_memory_by_message_too():
    def run_batch(chunk):
        if len(chunk) > 1:
            raise RuntimeError("[enforce fail] DefaultCPUAllocator: out of memory")
        return chunk

    assert generate_with_backoff(run_batch, ["a", "b", "c"], 4) == (["a", "b", "c"], 1)


def test_backoff_reraises_at_batch_size_one():
    calls: list[int] = []
    with pytest.raises(torch.OutOfMemoryError):
        generate_with_backoff(fake_batch_runner(0, calls), [1, 2, 3, 4], 4)
    assert calls == [4, 2, 1]


def test_backoff_does_not_retry_other_errors():
    calls = []

    def run_batch(chunk):
        calls.append(len(chunk))
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        generate_with_backoff(run_batch, [1, 2, 3, 4], 4)
    assert calls == [4]


def test_library_versions_name_the_libraries_that_made_an_image():
    versions = library_versions(GENERATION_LIBRARIES)
    assert set(versions) == {"torch", "diffusers", "transformers"}
    assert versions["torch"] == torch.__version__
