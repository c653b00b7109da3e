"""Image embeddings (emonet_assets.lib.model.embedding) on tiny offline backbones, CPU only."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from emonet_assets.lib.generation.generation import encode_png
from emonet_assets.lib.model.embedding import (
    BackboneSpec,
    Embedder,
    EmbeddingError,
    EmbeddingMismatchError,
    build_tiny_backbone,
    check_embedding_table,
    decode_image,
    embedding_matrix,
    embedding_schema,
    images_to_embed,
)

pytestmark = pytest.mark.usefixtures("offline_single_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_backbone(tmp_path_factory.mktemp("models") / "tiny-a")


def load(source, kind="tiny", batch_size=4) -> Embedder:
    return Embedder.load(BackboneSpec(kind, str(source), batch_size=batch_size, device="cpu"))


@pytest.fixture(scope="module")
def embedder(tiny_dir):
    return load(tiny_dir)


def png(seed: int, size: tuple[int, int] = (80, 64)) -> tuple[str, bytes]:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    data = encode_png(Image.fromarray(pixels))
    return hashlib.sha256(data).hexdigest(), data


def embeddings(table: pl.DataFrame) -> np.ndarray:
    return embedding_matrix(table)[1]


def test_tiny_backbone_embeds_unit_vectors_of_its_dimension_in_input_order(embedder):
    images = [png(seed) for seed in range(6)]
    calls = []
    result = embedder.embed(images, progress=lambda done, total: calls.append((done, total)))
    assert result.table.schema == embedding_schema(embedder.dim)
    assert result.table["image_sha256"].to_list() == [sha for sha, _ in images]
    assert result.table["backbone"].unique().to_list() == [embedder.name] == ["tiny:tiny-a"]
    assert result.table["backbone_fingerprint"].unique().to_list() == [embedder.fingerprint]
    matrix = embeddings(result.table)
    assert matrix.shape == (6, embedder.dim) == (6, 32)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-5)
    assert result.failed.is_empty()
    assert calls == [(4, 6), (6, 6)]


def test_embeddings_are_identical_after_a_reload_and_for_the_same_image_twice(embedder, tiny_dir):
    a, b = png(1), png(2)
    first = embeddings(embedder.embed([a, b, a]).table)
    reloaded = embeddings(load(tiny_dir).embed([a, b, a]).table)
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(first, reloaded)


def test_embeddings_do_not_depend_on_how_many_threads_decode(embedder, tiny_dir):
    images = [png(seed) for seed in range(5)]
    one = Embedder.load(BackboneSpec("tiny", str(tiny_dir), batch_size=4, device="cpu", workers=1))
    four = Embedder.load(BackboneSpec("tiny", str(tiny_dir), batch_size=4, device="cpu", workers=4))
    assert one.embed(images).table.equals(four.embed(images).table)


def test_different_images_get_different_embeddings(embedder):
    one, two = embeddings(embedder.embed([png(1), png(2)]).table)
    assert float(one @ two) < 0.999


def test_fingerprint_is_stable_across_reloads_and_places_and_changes_with_the_weights(embedder, tiny_dir, tmp_path):
    assert load(tiny_dir).fingerprint == embedder.fingerprint
    assert load(build_tiny_backbone(tmp_path / "same-seed-elsewhere")).fingerprint == embedder.fingerprint
    other = load(build_tiny_backbone(tmp_path / "tiny-b", seed=1))
    assert other.fingerprint != embedder.fingerprint
    image = png(3)
    assert not np.array_equal(embeddings(other.embed([image]).table), embeddings(embedder.embed([image]).table))


def test_build_tiny_backbone_is_idempotent_and_leaves_no_staging_folders(tiny_dir):
    before = {p.name: p.stat().st_mtime_ns for p in tiny_dir.iterdir()}
    assert build_tiny_backbone(tiny_dir) == tiny_dir
    assert {p.name: p.stat().st_mtime_ns for p in tiny_dir.iterdir()} == before
    assert [p.name for p in tiny_dir.parent.iterdir()] == ["tiny-a"]


def test_build_tiny_backbone_refuses_an_incomplete_folder(tiny_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(EmbeddingError, match="not a complete tiny backbone"):
        build_tiny_backbone(broken)


def test_undecodable_images_are_skipped_and_named_with_a_reason(embedder):
    good = [png(seed) for seed in range(3)]
    sha, data = png(9)
    garbage = ("garbage", np.random.default_rng(0).bytes(500))
    truncated = ("truncated", data[: len(data) // 2])
    result = embedder.embed([good[0], garbage, good[1], truncated, ("empty", b""), good[2]])
    assert result.table["image_sha256"].to_list() == [sha for sha, _ in good]
    assert embeddings(result.table).shape == (3, embedder.dim)
    reasons = dict(result.failed.iter_rows())
    assert list(reasons) == ["garbage", "truncated", "empty"]
    assert reasons["garbage"] == reasons["empty"] == "UnidentifiedImageError: not an image format Pillow can read"
    assert reasons["truncated"] == "OSError: image file is truncated"


def test_a_batch_where_nothing_decodes_gives_an_empty_table_of_the_same_schema(embedder):
    result = embedder.embed([("x", b"not an image"), ("y", b"")])
    assert result.table.is_empty()
    assert result.table.schema == embedding_schema(embedder.dim)
    assert result.failed["image_sha256"].to_list() == ["x", "y"]
    assert embedder.embed([]).table.schema == embedding_schema(embedder.dim)


def test_images_to_embed_returns_only_images_without_an_embedding_from_these_weights(embedder):
    images = pl.DataFrame({"image_sha256": ["a", "b", "c", "b"], "shard": [0, 0, 1, 1]})
    assert images_to_embed(images, None, embedder.fingerprint)["image_sha256"].to_list() == ["a", "b", "c"]
    existing = pl.DataFrame(
        {"image_sha256": ["a", "c"], "backbone_fingerprint": [embedder.fingerprint, "0123456789abcdef"]}
    )
    todo = images_to_embed(images, existing, embedder.fingerprint)
    assert todo.rows() == [("b", 0), ("c", 1)]
    assert images_to_embed(images, existing, "another-fingerprint")["image_sha256"].to_list() == ["a", "b", "c"]


def test_check_embedding_table_refuses_another_backbones_embeddings_naming_both_fingerprints(embedder, tmp_path):
    other = load(build_tiny_backbone(tmp_path / "tiny-b", seed=1))
    theirs = other.embed([png(1)]).table
    check_embedding_table(embedder.embed([png(1)]).table, embedder.fingerprint)
    check_embedding_table(theirs.clear(), embedder.fingerprint)
    with pytest.raises(EmbeddingMismatchError) as info:
        check_embedding_table(theirs, embedder.fingerprint, embedder.name)
    message = str(info.value)
    assert other.fingerprint in message and embedder.fingerprint in message
    assert "tiny:tiny-b" in message and "tiny:tiny-a" in message


def test_embedding_matrix_reads_array_and_list_columns_and_refuses_mixed_backbones(embedder):
    table = embedder.embed([png(1), png(2)]).table
    shas, matrix = embedding_matrix(table)
    assert shas == table["image_sha256"].to_list()
    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous
    as_lists = table.with_columns(pl.col("embedding").cast(pl.List(pl.Float32)))
    np.testing.assert_array_equal(embedding_matrix(as_lists)[1], matrix)
    mixed = pl.concat([table, table.with_columns(backbone_fingerprint=pl.lit("fedcba9876543210"))])
    with pytest.raises(EmbeddingMismatchError, match="fedcba9876543210"):
        embedding_matrix(mixed)


@pytest.mark.parametrize(
    ("kind", "hint"),
    [("siglip", "hf download <hugging-face-id> --local-dir {folder}"), ("tiny", "build_tiny_backbone('{folder}')")],
)
def test_missing_model_folder_names_the_folder_and_how_to_get_it(tmp_path, kind, hint):
    missing = tmp_path / "models" / "backbone"
    with pytest.raises(EmbeddingError) as info:
        load(missing, kind=kind)
    assert f"folder {missing} does not exist" in str(info.value)
    assert hint.format(folder=missing) in str(info.value)
    assert kind != "siglip" or "google/siglip2-so400m-patch16-384" in str(info.value)


def test_cuda_requested_without_cuda_is_an_error(tiny_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EmbeddingError, match="CUDA is not available"):
        Embedder.load(BackboneSpec("tiny", str(tiny_dir), device="cuda"))


def test_uncached_hugging_face_id_says_how_to_download_it():
    with pytest.raises(EmbeddingError, match="hf download emonet-tests/not-a-cached-backbone"):
        load("emonet-tests/not-a-cached-backbone", kind="clip")


def test_a_folder_of_another_kind_is_refused(tiny_dir):
    with pytest.raises(EmbeddingError, match="holds a 'siglip_vision_model' model, not a clip backbone"):
        load(tiny_dir, kind="clip")


def test_a_checkpoint_missing_vision_weights_is_refused(tiny_dir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(tiny_dir, partial)
    weights = load_file(partial / "model.safetensors")
    dropped = sorted(weights)[0]
    save_file({k: v for k, v in weights.items() if k != dropped}, partial / "model.safetensors", {"format": "pt"})
    with pytest.raises(EmbeddingError, match=f"lacks 1 and misshapes 0 weights.*{dropped}"):
        load(partial)


def test_a_checkpoint_with_wrongly_shaped_weights_is_refused(tiny_dir, tmp_path):
    reshaped = tmp_path / "reshaped"
    shutil.copytree(tiny_dir, reshaped)
    config = json.loads((reshaped / "config.json").read_text())
    (reshaped / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
    with pytest.raises(EmbeddingError, match=r"misshapes 9 weights.*fc1.bias shaped \(64,\), not \(48,\)"):
        load(reshaped)


VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
TEXT = {
    **VISION,
    "vocab_size": 99,
    "max_position_embeddings": 16,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
}


def reference_embeddings(folder, vision_tower, images) -> np.ndarray:
    """What the checkpoint's own image-text model makes of the images, through its saved processor."""
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
    with torch.inference_mode():
        pooled = vision_tower(processor(images=images, return_tensors="pt")["pixel_values"])
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def test_siglip_kind_embeds_with_the_vision_tower_of_a_full_siglip_checkpoint(tmp_path):
    from transformers import SiglipConfig, SiglipModel
    from transformers.models.siglip import SiglipImageProcessorPil

    torch.manual_seed(0)
    config = SiglipConfig(text_config=TEXT, vision_config={**VISION, "image_size": 64, "patch_size": 16})
    full = SiglipModel(config).eval()
    full.save_pretrained(tmp_path / "siglip")
    SiglipImageProcessorPil(size={"height": 64, "width": 64}).save_pretrained(tmp_path / "siglip")

    embedder = load(tmp_path / "siglip", kind="siglip")
    images = [png(1), png(2)]
    matrix = embeddings(embedder.embed(images).table)
    decoded = [decode_image(data) for _, data in images]
    expected = reference_embeddings(
        tmp_path / "siglip", lambda x: full.vision_model(pixel_values=x).pooler_output, decoded
    )
    assert embedder.dim == 32
    np.testing.assert_allclose(matrix, expected, atol=1e-6)


def test_clip_kind_embeds_with_the_projected_image_embeddings_of_a_full_clip_checkpoint(tmp_path):
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip import CLIPImageProcessorPil

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=TEXT, vision_config={**VISION, "image_size": 64, "patch_size": 16}, projection_dim=24
    )
    full = CLIPModel(config).eval()
    full.save_pretrained(tmp_path / "clip")
    CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(
        tmp_path / "clip"
    )

    embedder = load(tmp_path / "clip", kind="clip")
    images = [png(1), png(2)]
    matrix = embeddings(embedder.embed(images).table)
    decoded = [decode_image(data) for _, data in images]

    def tower(pixels):
        return full.visual_projection(full.vision_model(pixel_values=pixels).pooler_output)

    assert embedder.dim == 24
    np.testing.assert_allclose(matrix, reference_embeddings(tmp_path / "clip", tower, decoded), atol=1e-6)


def test_siglip_kind_also_loads_a_naflex_siglip2_vision_model(tmp_path):
    from transformers import Siglip2VisionConfig, Siglip2VisionModel
    from transformers.models.siglip2 import Siglip2ImageProcessorPil

    torch.manual_seed(0)
    Siglip2VisionModel(Siglip2VisionConfig(**VISION, patch_size=16, num_patches=16)).save_pretrained(tmp_path / "s2")
    Siglip2ImageProcessorPil(patch_size=16, max_num_patches=16).save_pretrained(tmp_path / "s2")
    embedder = load(tmp_path / "s2", kind="siglip")
    matrix = embeddings(embedder.embed([png(1), png(2, size=(50, 90))]).table)
    assert matrix.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-5)
