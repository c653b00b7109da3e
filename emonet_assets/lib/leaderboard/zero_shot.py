"""Zero-shot scores from an image-text model (CLIP, SigLIP): each image's similarity to a prompt built from each
emotion's word cluster. Nothing is trained on the benchmark, so it is the baseline a trained head must beat.

Models load from a local folder or the Hugging Face cache only. The tiny profile builds a tiny two-tower SigLIP from
config (a word-level tokenizer over the taxonomy's words, random weights) and loads it through the same path.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import polars as pl

from emonet_assets.lib.generation.generation import build_model_folder, hub_model_fingerprint, resolve_model
from emonet_assets.lib.model.embedding import quiet_transformers
from emonet_assets.lib.taxonomy.taxonomy import Taxonomy

DEFAULT_TEMPLATE = "a photo of a face showing {words}"
_TINY_FILES = ("config.json", "preprocessor_config.json", "model.safetensors", "tokenizer.json")
_TINY_IMAGE_SIZE = 64
_TINY_TEXT_LENGTH = 16


class ZeroShotError(RuntimeError):
    """A zero-shot model that cannot be loaded or used; the message names the folder."""


def emotion_prompts(taxonomy: Taxonomy, template: str = DEFAULT_TEMPLATE, words: int = 3) -> dict[str, str]:
    """One prompt per emotion: its name and the first words of its cluster, in the template."""
    return {
        e.id: template.format(words=", ".join(dict.fromkeys([e.name.lower(), *e.cluster[:words]])))
        for e in taxonomy.emotions
    }


def prompt_hash(prompts: dict[str, str]) -> str:
    """Identifies the prompts a model was asked with: part of its version, so new prompts score as a new one."""
    return hashlib.sha256("\n".join(f"{k}\t{v}" for k, v in sorted(prompts.items())).encode()).hexdigest()


def build_tiny_two_tower(directory: str | Path, taxonomy: Taxonomy, seed: int = 0) -> Path:
    """A random SigLIP image-text model of a few hundred KB with a word-level tokenizer over the taxonomy's words and
    the default template's, saved like a real checkpoint."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipModel
    from transformers.models.siglip import SiglipImageProcessorPil

    longest = max(len(e.cluster) for e in taxonomy.emotions)
    text = " ".join(emotion_prompts(taxonomy, DEFAULT_TEMPLATE, longest).values()).lower()
    words = sorted({word for word, _ in pre_tokenizers.Whitespace().pre_tokenize_str(text)})
    vocab = {"<pad>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(words)}}

    def save(staging: Path) -> None:
        config = SiglipConfig(
            text_config={
                "vocab_size": len(vocab),
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "max_position_embeddings": _TINY_TEXT_LENGTH,
                "pad_token_id": 0,
                "bos_token_id": 0,
                "eos_token_id": 0,
            },
            vision_config={
                "image_size": _TINY_IMAGE_SIZE,
                "patch_size": 16,
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 64,
            },
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SiglipModel(config).eval()
        with quiet_transformers():
            model.save_pretrained(staging, safe_serialization=True)
        tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        tokenizer.normalizer = normalizers.Lowercase()
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        PreTrainedTokenizerFast(
            tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", model_max_length=_TINY_TEXT_LENGTH
        ).save_pretrained(staging)
        SiglipImageProcessorPil(size={"height": _TINY_IMAGE_SIZE, "width": _TINY_IMAGE_SIZE}).save_pretrained(staging)

    return build_model_folder(Path(directory), _TINY_FILES, save, "tiny two-tower model")


def zero_shot_registration(
    name: str, source: str, build_tiny: bool, taxonomy: Taxonomy, template: str, words: int
) -> tuple[str | None, str | None, str | None]:
    """(weights fingerprint, prompts hash, error) of a profile's zero-shot model; the tiny one is built first."""
    from emonet_assets.lib.generation.generation import GenerationError
    from emonet_assets.lib.shared.profile_files import model_location

    try:
        location = model_location(source, build=build_tiny)
        if build_tiny:
            build_tiny_two_tower(location, taxonomy)
        fingerprint = hub_model_fingerprint(location)[:16]
    except (GenerationError, OSError) as exc:
        return None, None, f"zero-shot model {name}: {exc}"
    return fingerprint, prompt_hash(emotion_prompts(taxonomy, template, words)), None


class ZeroShotModel:
    """An image-text model loaded once: `score` gives each image's cosine similarity to each prompt."""

    def __init__(self, folder: Path, model, tokenizer, processor) -> None:
        self.folder = folder
        self.fingerprint = hub_model_fingerprint(folder)[:16]
        self._model, self._tokenizer, self._processor = model, tokenizer, processor

    @classmethod
    def load(cls, source: str | Path) -> ZeroShotModel:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        try:
            folder = resolve_model(source)
            with quiet_transformers():
                model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True, backend="pil")
        except (OSError, ValueError) as exc:
            raise ZeroShotError(f"zero-shot model {source}: {exc}") from exc
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise ZeroShotError(f"{folder} holds a {model.config.model_type!r} model, not an image-text model")
        return cls(folder, model, tokenizer, processor)

    def _unit(self, features) -> np.ndarray:
        tensor = features if hasattr(features, "norm") else features.pooler_output
        return (tensor / tensor.norm(dim=-1, keepdim=True)).float().numpy()

    def score(self, images: list[tuple[str, bytes]], prompts: dict[str, str], batch_size: int = 32) -> pl.DataFrame:
        """image_id, emotion_id, score (cosine similarity) for every decodable image; undecodable ones are left
        out, so they count against coverage rather than being guessed."""
        import torch
        from PIL import Image, UnidentifiedImageError

        emotion_ids = list(prompts)
        with torch.inference_mode():
            tokens = self._tokenizer(
                [prompts[e] for e in emotion_ids], padding="max_length", truncation=True, return_tensors="pt"
            )
            text = self._unit(self._model.get_text_features(input_ids=tokens["input_ids"]))
            frames = []
            for start in range(0, len(images), batch_size):
                decoded = []
                for image_id, data in images[start : start + batch_size]:
                    try:
                        decoded.append((image_id, Image.open(io.BytesIO(data)).convert("RGB")))
                    except (UnidentifiedImageError, OSError):
                        continue
                if not decoded:
                    continue
                pixels = self._processor([image for _, image in decoded], return_tensors="pt")["pixel_values"]
                similarity = self._unit(self._model.get_image_features(pixel_values=pixels)) @ text.T
                frames.append(
                    pl.DataFrame(
                        {
                            "image_id": np.repeat([i for i, _ in decoded], len(emotion_ids)),
                            "emotion_id": np.tile(emotion_ids, len(decoded)),
                            "score": similarity.reshape(-1).astype(np.float64),
                        }
                    )
                )
        schema = {"image_id": pl.String, "emotion_id": pl.String, "score": pl.Float64}
        return pl.concat(frames).cast(schema) if frames else pl.DataFrame(schema=schema)
