import io

import polars as pl
from PIL import Image
from polars.testing import assert_frame_equal

from emonet_assets.lib.leaderboard.registry import zero_shot_entry
from emonet_assets.lib.leaderboard.zero_shot import (
    ZeroShotModel,
    build_tiny_two_tower,
    emotion_prompts,
    prompt_hash,
    zero_shot_registration,
)
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy

TAXONOMY = load_taxonomy()


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (shade, 40, 200 - shade)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_tiny_two_tower_model_gives_40_scores_per_image_offline_and_skips_what_it_cannot_decode(
    tmp_path, offline_single_thread
):
    folder = build_tiny_two_tower(tmp_path / "tiny", TAXONOMY)
    model = ZeroShotModel.load(folder)
    prompts = emotion_prompts(TAXONOMY)
    scores = model.score([("a", png(0)), ("b", png(120)), ("broken", b"not an image")], prompts)
    assert scores.group_by("image_id").len().sort("image_id").rows() == [("a", 40), ("b", 40)]
    assert set(scores["emotion_id"]) == {e.id for e in TAXONOMY.emotions}
    assert scores["score"].is_between(-1, 1).all()
    again = ZeroShotModel.load(build_tiny_two_tower(tmp_path / "again", TAXONOMY))
    assert again.fingerprint == model.fingerprint
    alone = again.score([("a", png(0))], prompts)
    assert_frame_equal(alone, scores.filter(pl.col("image_id") == "a"), abs_tol=1e-5)


def test_new_prompts_or_weights_are_a_new_version_and_a_missing_model_is_rejected(tmp_path):
    source = str(tmp_path / "tiny")
    fingerprint, prompts_hash, error = zero_shot_registration("z", source, True, TAXONOMY, "{words}", 3)
    assert error is None and prompts_hash == prompt_hash(emotion_prompts(TAXONOMY, "{words}", 3))
    first = zero_shot_entry("z", source, None, fingerprint, prompts_hash, None)
    other = zero_shot_entry("z", source, None, fingerprint, prompt_hash(emotion_prompts(TAXONOMY)), None)
    assert first["model_key"][0] != other["model_key"][0] and first["scale"][0] == "rank"
    missing = zero_shot_registration("z", str(tmp_path / "absent"), False, TAXONOMY, "{words}", 3)
    rejected = zero_shot_entry("z", "absent", None, *missing)
    assert rejected["status"][0] == "rejected" and "zero-shot model z" in rejected["message"][0]
