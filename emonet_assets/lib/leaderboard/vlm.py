"""Scores from a vision-language model behind an OpenAI-compatible chat endpoint (vLLM, Ollama, a hosted API): each
image is sent with a versioned rating prompt asking for a 0-7 intensity of every emotion as JSON, as the EmoNet-Face
release scored prompted VLMs.

An answer counts only when it rates every emotion of the taxonomy (names, ids or aliases) with a number from 0 to
7; an unparseable, partial or refused answer is asked again, then the image is recorded as missing, never guessed.
Transport errors (429, 5xx, timeouts, dropped connections) are retried by the openai client itself, with its
exponential backoff and jitter (honouring Retry-After), `max_retries` times. Valid answers are cached under the
storage root by (endpoint model, prompt hash, image sha256), one JSONL file per chunk of completed answers written
atomically, so a re-run sends nothing for them and a killed run loses at most its last chunk. A request budget
(chat calls, not counting the client's transport retries) stops sending once spent; the images left are recorded
as not scored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import polars as pl

from emonet_assets.lib.shared.package_data import package_path
from emonet_assets.lib.shared.rules import INTENSITY_MAX
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.taxonomy.taxonomy import Taxonomy

PROMPT_TEMPLATE = ("data", "templates", "vlm_rating_prompt_v1.txt")
CACHE_PREFIX = "cache/vlm"
# Image-level outcomes; all but `answered` and `cached` leave the image unscored (model_prediction_rejects).
REASONS = {
    "vlm_invalid_answer": "no answer rated every emotion from 0 to 7 as JSON, after the retries",
    "vlm_request_failed": "the endpoint gave no answer (error status, timeout or connection), after the retries",
    "vlm_not_scored": "the request budget was spent before this image was sent",
}
SCORE_SCHEMA = {"image_id": pl.String, "emotion_id": pl.String, "score": pl.Float64}
OUTCOME_SCHEMA = {"image_id": pl.String, "status": pl.String, "attempts": pl.Int64, "detail": pl.String}
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


class VlmError(RuntimeError):
    """An endpoint that cannot be used at all (no API key, key refused); the message names the variable."""


@dataclass(frozen=True)
class Endpoint:
    """What a request needs from the profile's `leaderboard.vlm` entry."""

    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 3
    request_budget: int | None = None
    max_tokens: int = 1024


def rating_prompt(taxonomy: Taxonomy) -> str:
    """The prompt every image is sent with: the packaged template filled with the taxonomy's emotion names."""
    template = package_path(*PROMPT_TEMPLATE).read_text(encoding="utf-8")
    names = [e.name for e in taxonomy.emotions]
    example = json.dumps(dict.fromkeys(names[:2], 0) | {"...": "..."})
    return template.replace("{emotions}", "\n".join(f"- {n}" for n in names)).replace("{example}", example)


def prompt_hash(prompt: str) -> str:
    """sha256 of the prompt as sent: a new template or taxonomy is a new model version and a new cache."""
    return hashlib.sha256(prompt.encode()).hexdigest()


def endpoint_fingerprint(base_url: str, model: str) -> str:
    """Identifies the model behind an endpoint: its URL and the model name it serves."""
    return hashlib.sha256(f"{base_url.rstrip('/')}\n{model}".encode()).hexdigest()[:16]


def api_key(endpoint: Endpoint, environ: Mapping[str, str] = os.environ) -> str:
    """The key, from the environment variable the profile names and nowhere else; an endpoint without one (a local
    vLLM or Ollama) gets vLLM's placeholder."""
    if endpoint.api_key_env is None:
        return "EMPTY"
    key = environ.get(endpoint.api_key_env, "").strip()
    if not key:
        raise VlmError(
            f"VLM endpoint {endpoint.name}: environment variable {endpoint.api_key_env} (its api_key_env) is not set "
            "or empty; export the API key there"
        )
    return key


def parse_ratings(text: str | None, taxonomy: Taxonomy) -> tuple[dict[str, float] | None, str]:
    """(emotion id -> 0-7 rating, "") for an answer that rates every emotion, else (None, what is wrong). The JSON
    may sit in a code fence or in prose; keys are resolved through the taxonomy's names, ids and aliases; keys that
    name no emotion are ignored; an emotion rated twice with different values is not an answer."""
    if not text:
        return None, "empty answer"
    found = _JSON_OBJECT.search(text)
    try:
        data = json.loads(found.group(0)) if found else None
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), dict):
        data = next(iter(data.values()))
    if not isinstance(data, dict):
        return None, f"not a JSON object: {text[:80]!r}"
    ratings: dict[str, float] = {}
    bad: list[str] = []
    for label, value in data.items():
        emotion = taxonomy.resolve(str(label))
        if emotion is None:
            continue
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
        in_scale = math.isfinite(number) and 0 <= number <= INTENSITY_MAX
        if not in_scale or ratings.setdefault(emotion, number) != number:
            bad.append(str(label))
    missing = [e.id for e in taxonomy.emotions if e.id not in ratings]
    if bad or missing:
        problems = [f"{len(missing)} emotions missing"] if missing else []
        problems += [f"invalid ratings for {', '.join(bad[:5])}"] if bad else []
        return None, "; ".join(problems)
    return ratings, ""


def data_url(image: bytes) -> str:
    """The image inline, as the chat API's image_url takes it."""
    mime = "image/jpeg" if image.startswith(b"\xff\xd8") else "image/webp" if image[8:12] == b"WEBP" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(image).decode()}"


class ResponseCache:
    """Valid ratings of one (endpoint model, prompt hash), one JSONL file per completed chunk under the storage
    root: only complete answers are written, so the cache never keeps a bad one."""

    def __init__(self, store: Store, model: str, prompts_hash: str) -> None:
        slug = _SLUG.sub("_", model).strip("_")[:48]
        self.store = store
        self.folder = f"{CACHE_PREFIX}/{slug}-{hashlib.sha256(model.encode()).hexdigest()[:8]}/{prompts_hash[:16]}"

    def load(self) -> dict[str, dict[str, float]]:
        cached: dict[str, dict[str, float]] = {}
        for path, _, _ in self.store.list_files(self.folder):
            if not path.endswith(".jsonl"):
                continue
            for line in self.store.read_bytes(path).decode().splitlines():
                record = json.loads(line)
                cached[record["image_sha256"]] = record["ratings"]
        return cached

    def save(self, answers: dict[str, dict[str, float]]) -> None:
        if answers:
            lines = "".join(json.dumps({"image_sha256": k, "ratings": v}) + "\n" for k, v in sorted(answers.items()))
            self.store.write_bytes(f"{self.folder}/chunk-{uuid.uuid4().hex}.jsonl", lines.encode())


class _Budget:
    """Requests left to send, shared by the worker threads; None is unlimited."""

    def __init__(self, limit: int | None) -> None:
        self.left, self.sent, self._lock = limit, 0, threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.left is not None and self.left <= 0:
                return False
            self.sent += 1
            if self.left is not None:
                self.left -= 1
            return True


@dataclass(frozen=True)
class VlmScores:
    """Scores of every image answered (now or from the cache), one outcome per image, and the counts the asset
    reports: requests sent and images per outcome."""

    scores: pl.DataFrame
    outcomes: pl.DataFrame
    prompt_hash: str
    counts: dict[str, int]

    def rejects(self) -> pl.DataFrame:
        """The unscored images as model_prediction_rejects rows: one per image, with its reason and last problem."""
        from emonet_assets.lib.leaderboard.predictions import REJECT_SCHEMA

        unscored = self.outcomes.filter(pl.col("status").is_in(list(REASONS)))
        detail = pl.when(pl.col("detail") != "").then("detail").otherwise(pl.col("status").replace_strict(REASONS))
        return unscored.select(
            source_row=pl.lit(None, pl.Int64),
            image_ref="image_id",
            emotion_label=pl.lit(None, pl.String),
            value_raw=pl.lit(None, pl.String),
            reason="status",
            detail=detail,
        ).cast(REJECT_SCHEMA)


def _client(endpoint: Endpoint, key: str):
    from openai import OpenAI

    return OpenAI(base_url=endpoint.base_url, api_key=key, timeout=endpoint.timeout_s, max_retries=endpoint.max_retries)


def _ask(client, endpoint: Endpoint, prompt: str, image: bytes, taxonomy: Taxonomy, budget: _Budget):
    """(ratings, status, attempts, detail) of one image: asked again while the answer is not valid."""
    import openai

    detail = ""
    for attempt in range(1, endpoint.max_retries + 2):
        if not budget.take():
            return None, ("vlm_not_scored" if attempt == 1 else "vlm_invalid_answer"), attempt - 1, detail
        try:
            response = client.chat.completions.create(
                model=endpoint.model,
                max_tokens=endpoint.max_tokens,
                temperature=0,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": prompt},
                            {"type": "image_url", "image_url": {"url": data_url(image)}},
                        ],
                    }
                ],
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            source = f"the key from {endpoint.api_key_env}" if endpoint.api_key_env else "no API key (api_key_env)"
            raise VlmError(f"VLM endpoint {endpoint.name} ({endpoint.base_url}) refused {source}: {exc}") from exc
        except openai.OpenAIError as exc:
            return None, "vlm_request_failed", attempt, str(exc)[:200]
        choice = response.choices[0] if response.choices else None
        ratings, detail = parse_ratings(choice.message.content if choice else None, taxonomy)
        if ratings is not None:
            return ratings, "answered", attempt, ""
    return None, "vlm_invalid_answer", endpoint.max_retries + 1, detail


def score_images(
    images: list[tuple[str, bytes]],
    endpoint: Endpoint,
    taxonomy: Taxonomy,
    store: Store,
    environ: Mapping[str, str] = os.environ,
    chunk_size: int = 32,
) -> VlmScores:
    """Every image's ratings, from the cache under `store` or the endpoint, `concurrency` requests at a time. Valid
    answers are cached `chunk_size` at a time as they complete, and the rest when the run ends or fails, so a failed
    run keeps every answer it got (a killed one all but the last chunk's)."""
    prompt = rating_prompt(taxonomy)
    cache = ResponseCache(store, endpoint.model, prompt_hash(prompt))
    cached = cache.load()
    answers = {sha: cached[sha] for sha, _ in images if sha in cached}
    outcomes = [(sha, "cached", 0, "") for sha in answers]
    todo = [(sha, data) for sha, data in images if sha not in answers]
    budget = _Budget(endpoint.request_budget)
    if todo:
        with _client(endpoint, api_key(endpoint, environ)) as client, ThreadPoolExecutor(endpoint.concurrency) as pool:
            futures = {pool.submit(_ask, client, endpoint, prompt, data, taxonomy, budget): sha for sha, data in todo}
            fresh: dict[str, dict[str, float]] = {}
            try:
                for future in as_completed(futures):
                    ratings, *outcome = future.result()
                    outcomes.append((futures[future], *outcome))
                    if ratings is not None:
                        fresh[futures[future]] = ratings
                    if len(fresh) >= chunk_size:
                        cache.save(fresh)
                        answers, fresh = answers | fresh, {}
            finally:
                for future in futures:
                    future.cancel()
                cache.save(fresh)
        answers |= fresh
    scores = pl.DataFrame(
        [(sha, emotion, value) for sha, ratings in answers.items() for emotion, value in ratings.items()],
        schema=SCORE_SCHEMA,
        orient="row",
    ).sort("image_id", "emotion_id")
    frame = pl.DataFrame(outcomes, schema=OUTCOME_SCHEMA, orient="row")
    counts = {f"images_{status}": 0 for status in ("answered", "cached", *REASONS)}
    counts |= {f"images_{status}": n for status, n in frame.group_by("status").len().iter_rows()}
    return VlmScores(scores, frame, prompt_hash(prompt), {"requests_sent": budget.sent, **counts})
