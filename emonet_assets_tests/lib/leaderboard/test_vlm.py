"""The VLM kind against a fake OpenAI-compatible server on 127.0.0.1: scripted answers and every failure mode."""

import hashlib
import io
import json

import polars as pl
import pytest
from PIL import Image

from emonet_assets.lib.leaderboard.registry import model_key, vlm_entry
from emonet_assets.lib.leaderboard.vlm import (
    Endpoint,
    ResponseCache,
    VlmError,
    parse_ratings,
    prompt_hash,
    rating_prompt,
    score_images,
)
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy
from emonet_assets_tests.local_servers import ChatServer, scripted, serving

TAXONOMY = load_taxonomy()
NAMES = [e.name for e in TAXONOMY.emotions]
IDS = [e.id for e in TAXONOMY.emotions]


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, 40, 200 - shade)).save(buffer, format="PNG")
    return buffer.getvalue()


def images(n: int) -> list[tuple[str, bytes]]:
    return [(hashlib.sha256(data).hexdigest(), data) for data in (png(10 * i) for i in range(n))]


def ratings(seed: int, names=NAMES) -> str:
    return json.dumps({name: (seed + i) % 8 for i, name in enumerate(names)})


def endpoint(server: ChatServer, **settings) -> Endpoint:
    return Endpoint(name="fake-vlm", base_url=server.base_url, model="fake/vl-model", **settings)


def test_an_answer_counts_only_when_it_rates_every_emotion_from_0_to_7():
    expected = {e: float(i % 8) for i, e in enumerate(IDS)}
    assert parse_ratings(ratings(0), TAXONOMY) == (expected, "")
    by_id = json.dumps({"ratings": {e: i % 8 for i, e in enumerate(IDS)}})
    assert parse_ratings(f"Here you go:\n```json\n{by_id}\n```", TAXONOMY)[0] == expected
    assert parse_ratings(json.dumps({**json.loads(ratings(0)), "note": "calm face"}), TAXONOMY)[0] == expected

    partial, problem = parse_ratings(ratings(0, NAMES[:30]), TAXONOMY)
    assert partial is None and problem == "10 emotions missing"
    out_of_scale = json.loads(ratings(0)) | {NAMES[0]: 9}
    assert "invalid ratings for " + NAMES[0] in parse_ratings(json.dumps(out_of_scale), TAXONOMY)[1]
    as_text = json.loads(ratings(0)) | {NAMES[1]: "high"}
    assert parse_ratings(json.dumps(as_text), TAXONOMY)[0] is None
    for text in ("I'm sorry, I can't rate emotions of real people.", "{not json", "", None, "[1, 2]"):
        assert parse_ratings(text, TAXONOMY)[0] is None


def test_the_version_is_the_endpoint_model_and_prompt_hash_and_registering_sends_nothing():
    prompt = rating_prompt(TAXONOMY)
    assert all(f"- {name}" in prompt for name in NAMES) and "{emotions}" not in prompt
    digest = prompt_hash(prompt)
    assert digest == hashlib.sha256(prompt.encode()).hexdigest()
    entry = vlm_entry("qwen-vl", "http://localhost:8000/v1", "Qwen/Qwen2.5-VL-7B-Instruct", "apache-2.0", digest)
    row = entry.row(0, named=True)
    assert row["kind"] == "vlm" and row["scale"] == "0-7" and row["status"] == "registered"
    assert row["model_key"] == model_key("qwen-vl", row["version"])
    same = vlm_entry("qwen-vl", "http://localhost:8000/v1/", "Qwen/Qwen2.5-VL-7B-Instruct", None, digest)
    assert same["version"][0] == row["version"]
    for changed in (
        vlm_entry("qwen-vl", "http://localhost:8000/v1", "Qwen/Qwen2.5-VL-72B-Instruct", None, digest),
        vlm_entry("qwen-vl", "http://gpu:8000/v1", "Qwen/Qwen2.5-VL-7B-Instruct", None, digest),
        vlm_entry("qwen-vl", "http://localhost:8000/v1", "Qwen/Qwen2.5-VL-7B-Instruct", None, "0" * 64),
    ):
        assert changed["version"][0] != row["version"]


def test_failures_are_retried_then_recorded_missing_and_a_rerun_costs_no_requests(tmp_path):
    a, b, c, d, partial, down = images(6)
    unparseable = "I cannot help with that."
    scripts = {
        b[0]: [(429, "rate limited"), (200, ratings(2))],
        c[0]: [(500, "overloaded"), (200, ratings(3))],
        d[0]: [(200, unparseable), (200, ratings(4))],
        partial[0]: [(200, ratings(5, NAMES[:39]))] * 10,
        down[0]: [(503, "down")] * 10,
    }
    store = Store(str(tmp_path / "root"))
    with serving(ChatServer(scripted(scripts, (200, ratings(1))))) as server:
        result = score_images([a, b, c, d, partial, down], endpoint(server, max_retries=2), TAXONOMY, store)
        sent = server.images()
        again = score_images([a, b, c, d], endpoint(server, max_retries=2), TAXONOMY, store)
        assert len(server.images()) == len(sent)

    # b and c: one chat call each, retried by the client; d and partial: asked again by the adapter
    assert sorted(sent) == sorted([a[0], b[0], b[0], c[0], c[0], d[0], d[0], *[partial[0]] * 3, *[down[0]] * 3])
    outcomes = {r["image_id"]: r for r in result.outcomes.iter_rows(named=True)}
    assert {k: v["status"] for k, v in outcomes.items()} == {
        a[0]: "answered",
        b[0]: "answered",
        c[0]: "answered",
        d[0]: "answered",
        partial[0]: "vlm_invalid_answer",
        down[0]: "vlm_request_failed",
    }
    assert outcomes[d[0]]["attempts"] == 2 and outcomes[partial[0]]["attempts"] == 3
    assert outcomes[partial[0]]["detail"] == "1 emotions missing"
    assert result.counts == {
        "requests_sent": 9,
        "images_answered": 4,
        "images_cached": 0,
        "images_vlm_invalid_answer": 1,
        "images_vlm_request_failed": 1,
        "images_vlm_not_scored": 0,
    }
    scores = result.scores
    assert scores.height == 4 * 40 and set(scores["image_id"]) == {a[0], b[0], c[0], d[0]}
    first = {e: float((3 + i) % 8) for i, e in enumerate(IDS)}
    assert dict(scores.filter(pl.col("image_id") == c[0]).select("emotion_id", "score").iter_rows()) == first
    rejects = result.rejects()
    assert dict(rejects.select("image_ref", "reason").iter_rows()) == {
        partial[0]: "vlm_invalid_answer",
        down[0]: "vlm_request_failed",
    }

    assert again.counts["requests_sent"] == 0 and again.counts["images_cached"] == 4
    assert again.scores.equals(scores)
    cache = ResponseCache(store, "fake/vl-model", result.prompt_hash)
    assert set(cache.load()) == {a[0], b[0], c[0], d[0]}


def test_the_request_budget_stops_sending_and_leaves_the_rest_not_scored(tmp_path):
    wanted = images(5)
    with serving(ChatServer(scripted({}, (200, ratings(0))))) as server:
        result = score_images(wanted, endpoint(server, request_budget=3), TAXONOMY, Store(str(tmp_path)))
        assert len(server.images()) == 3
    assert result.counts["requests_sent"] == 3 and result.counts["images_answered"] == 3
    assert result.counts["images_vlm_not_scored"] == 2
    assert result.rejects()["reason"].to_list() == ["vlm_not_scored"] * 2
    assert result.scores["image_id"].n_unique() == 3


def test_a_crash_loses_no_completed_chunk(tmp_path):
    wanted = images(5)
    store = Store(str(tmp_path))
    crash = {wanted[2][0]: [(401, "key revoked")]}
    with serving(ChatServer(scripted(crash, (200, ratings(0))))) as server:
        with pytest.raises(VlmError):
            score_images(wanted, endpoint(server, concurrency=1), TAXONOMY, store, chunk_size=2)
        before = len(server.images())
        result = score_images(wanted, endpoint(server, concurrency=1), TAXONOMY, store, chunk_size=2)
        assert sorted(server.images()[before:]) == sorted(sha for sha, _ in wanted[2:])
    assert result.counts["images_cached"] == 2 and result.counts["images_answered"] == 3


def test_the_api_key_comes_only_from_the_named_environment_variable(tmp_path):
    store = Store(str(tmp_path))
    with serving(ChatServer(scripted({}, (200, ratings(0))), api_key="sk-right")) as server:
        settings = endpoint(server, api_key_env="EMONET_TEST_VLM_KEY")
        with pytest.raises(VlmError, match="environment variable EMONET_TEST_VLM_KEY .* is not set"):
            score_images(images(1), settings, TAXONOMY, store, environ={})
        with pytest.raises(VlmError, match="refused the key from EMONET_TEST_VLM_KEY"):
            score_images(images(1), settings, TAXONOMY, store, environ={"EMONET_TEST_VLM_KEY": "sk-wrong"})
        assert not server.images()
        result = score_images(images(1), settings, TAXONOMY, store, environ={"EMONET_TEST_VLM_KEY": "sk-right"})
    assert result.counts["images_answered"] == 1
