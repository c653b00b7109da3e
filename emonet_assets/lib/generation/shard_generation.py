"""Generating one prompt shard: resume from the shard's manifest and checkpoint it after every batch.

A run killed mid-shard leaves complete images (atomic, content-addressed) and a manifest listing
exactly the finished ones; the next run generates only the rest, so it ends where a clean run would.
"""

from __future__ import annotations

import contextvars
import io
import math
import posixpath
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl
from PIL import Image

from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table

MANIFEST_SCHEMA = {
    "prompt_id": pl.String,
    "shard": pl.String,
    "position": pl.Int64,
    "image_sha256": pl.String,
    "image_path": pl.String,
    "seed": pl.Int64,
    "model": pl.String,
    "model_fingerprint": pl.String,
    "license": pl.String,
    "scheduler": pl.String,
    "steps": pl.Int32,
    "guidance": pl.Float64,
    "width": pl.Int32,
    "height": pl.Int32,
    "dtype": pl.String,
    "device": pl.String,
    "tokens_dropped": pl.Int32,
    "torch_version": pl.String,
    "diffusers_version": pl.String,
    "transformers_version": pl.String,
    "seconds": pl.Float64,
}


@dataclass(frozen=True)
class RunSettings:
    model: str
    fingerprint: str
    license: str
    scheduler: str
    steps: int
    guidance: float
    width: int
    height: int
    dtype: str
    device: str
    batch_size: int
    negative_prompt: str | None = None
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class ShardResult:
    generated: int
    skipped: int
    repaired: int
    seconds: float
    batch_size: int
    truncated: int
    samples: list[bytes]


class ShardError(ValueError):
    """A shard that cannot be generated; the message names it."""


def empty_manifest() -> pl.DataFrame:
    return pl.DataFrame(schema=MANIFEST_SCHEMA)


def read_manifest(store: Store, shard: str) -> pl.DataFrame:
    if shard not in store.table_partitions(Table.GENERATED_IMAGES):
        return empty_manifest()
    return store.read_table(Table.GENERATED_IMAGES, [shard])


def missing_images(store: Store, manifest: pl.DataFrame) -> pl.DataFrame:
    """Manifest rows (shard, image_path) whose image file is not stored: one listing of the images folder."""
    stored = store.image_paths()
    rows = manifest.select("shard", "image_path").unique()
    return rows.filter(~pl.col("image_path").is_in(list(stored))).sort("shard", "image_path")


# What fixes each problem of sql/checks/generation_manifest.sql (and a missing file), as the command to run.
_FIXES = {
    "image file missing": "`emonet generate --repair {shards}` regenerates them",
    "prompt without an image": "`emonet generate {shards}` generates the rest (a run stopped part-way)",
}


def describe_manifest_problems(problems: list[dict], examples: int = 3) -> str:
    """One clause per kind of problem: how many, in which shards, a few of the files or prompts, and the command
    that fixes it where there is one, so that neither the UI nor `emonet generate` leaves a reader guessing."""
    by_kind: dict[str, list[dict]] = {}
    for problem in problems:
        by_kind.setdefault(problem["problem"], []).append(problem)
    clauses = []
    for kind, rows in by_kind.items():
        shards = sorted({str(r["shard"]) for r in rows if r.get("shard")})
        named = [str(r.get("image_path") or r.get("prompt_id")) for r in rows[:examples]]
        more = f" and {len(rows) - examples} more" if len(rows) > examples else ""
        clause = f"{len(rows)} × {kind} in {', '.join(shards)} ({', '.join(named)}{more})"
        if kind in _FIXES and shards:
            clause += ": " + _FIXES[kind].format(shards=" ".join(shards))
        clauses.append(clause)
    return "; ".join(clauses)


def drop_damaged(store: Store, manifest: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Rows whose image is missing or no longer matches its hash, removed so they are regenerated."""
    intact = [store.is_intact(path) for path in manifest["image_path"].to_list()]
    kept = manifest.filter(pl.Series(intact, dtype=pl.Boolean))
    return kept, manifest.height - kept.height


def generate_shard(
    store: Store,
    shard: str,
    prompts: pl.DataFrame,
    pipe,
    run: RunSettings,
    *,
    repair: bool = False,
    progress: Callable[[int, int, float], None] = lambda done, total, rate: None,
    on_oom: Callable[[int, BaseException], None] | None = None,
    sample_size: int = 16,
) -> ShardResult:
    from emonet_assets.lib.generation.generation import (  # torch
        encode_png,
        generate,
        generate_with_backoff,
        token_overflow,
    )

    # The manifest is the shard's checkpoint: without it, images would be written that nothing records.
    store.ensure_writable(posixpath.dirname(store.table_path(Table.GENERATED_IMAGES, shard)))
    manifest = read_manifest(store, shard)
    repaired = 0
    if repair:
        manifest, repaired = drop_damaged(store, manifest)
    done_ids = set(manifest.filter(pl.col("model_fingerprint") == run.fingerprint)["prompt_id"].to_list())
    todo = prompts.filter(~pl.col("prompt_id").is_in(list(done_ids))).sort("position")
    rows: list[dict] = manifest.to_dicts()
    samples: list[bytes] = []
    started = time.perf_counter()
    generated = truncated = 0

    def persist(batch: list[dict], images: list, dropped_tokens: list[int], per_image: float) -> None:
        """Encode, store and checkpoint one batch; runs beside the next batch's generation."""
        nonlocal generated, truncated
        for prompt, image, dropped in zip(batch, images, dropped_tokens, strict=True):
            png = encode_png(image)
            sha, path, _ = store.write_image(png, repair=repair)
            truncated += dropped > 0
            rows.append(_manifest_row(prompt, shard, sha, path, run, dropped, per_image))
            if len(samples) < sample_size:
                samples.append(png)
        store.write_table(Table.GENERATED_IMAGES, _frame(rows), partition=shard)
        generated += len(batch)

    pending: list[Future] = []

    def settle() -> None:
        """Wait for the batch being persisted (errors surface here), then report progress."""
        if not pending:
            return
        pending.pop().result()
        elapsed = time.perf_counter() - started
        progress(generated, todo.height, generated / elapsed if elapsed else math.inf)

    current_size = run.batch_size

    def halved(size: int, error: BaseException) -> None:
        nonlocal current_size
        current_size = size
        if on_oom is not None:
            on_oom(size, error)

    def run_batch(batch: list[dict]) -> list[dict]:
        batch_started = time.perf_counter()
        # Kernels round differently per batch size, so every image is made in a full batch (short ones padded
        # with copies of their last prompt): pixels then never depend on where a resumed run starts.
        padded = batch + [batch[-1]] * (current_size - len(batch))
        images = generate(
            pipe,
            [p["prompt"] for p in padded],
            [p["seed"] for p in padded],
            steps=run.steps,
            guidance=run.guidance,
            width=run.width,
            height=run.height,
            negative_prompt=run.negative_prompt,
        )[: len(batch)]
        per_image = (time.perf_counter() - batch_started) / len(batch)
        # The tokenizer is not thread-safe, so truncation is measured here rather than in the writer.
        dropped_tokens = [token_overflow(pipe, p["prompt"]) for p in batch]
        settle()
        # In a copy of this context, so the write still belongs to the step that asked for it (its observers see it).
        pending.append(writer.submit(contextvars.copy_context().run, persist, batch, images, dropped_tokens, per_image))
        return batch

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="persist") as writer:
        try:
            _, final_batch = generate_with_backoff(run_batch, todo.to_dicts(), run.batch_size, on_oom=halved)
        finally:
            settle()
    if todo.is_empty() and repaired:
        store.write_table(Table.GENERATED_IMAGES, _frame(rows), partition=shard)
    return ShardResult(
        generated=generated,
        skipped=prompts.height - todo.height,
        repaired=repaired,
        seconds=time.perf_counter() - started,
        batch_size=final_batch,
        truncated=truncated,
        samples=samples,
    )


def generate_shards(
    store: Store,
    shards: list[str],
    prompts: pl.DataFrame,
    pipe,
    run: RunSettings,
    *,
    repair: bool = False,
    progress: Callable[[str, int, int, float], None] = lambda shard, done, total, rate: None,
    on_oom: Callable[[str, int, BaseException], None] = lambda shard, size, error: None,
    sample_size: int = 16,
) -> ShardResult:
    """The shards of one run (a backfill packs several), in order, with their results summed.

    A shard that fails does not stop the others: each keeps its own manifest, so the run ends with every shard
    it could finish complete, then raises naming the failed ones, which can be re-run alone."""
    known = prompts["shard"].unique().sort().to_list()
    total = ShardResult(0, 0, 0, 0.0, run.batch_size, 0, [])
    failed: dict[str, str] = {}
    for shard in shards:
        shard_prompts = prompts.filter(pl.col("shard") == shard)
        if shard_prompts.is_empty():
            failed[shard] = (
                f"shard {shard!r} has no prompts in prompt_design ({len(known)} shards exist"
                + (f": {known[0]} .. {known[-1]}" if known else "")
                + "); re-materialize prompt_shards to sync the partitions"
            )
            continue
        try:
            result = generate_shard(
                store,
                shard,
                shard_prompts,
                pipe,
                run,
                repair=repair,
                progress=lambda done, todo, rate, shard=shard: progress(shard, done, todo, rate),
                on_oom=lambda size, error, shard=shard: on_oom(shard, size, error),
                sample_size=sample_size - len(total.samples),
            )
        except Exception as exc:
            failed[shard] = f"shard {shard!r}: {type(exc).__name__}: {exc}"
            continue
        total.generated += result.generated
        total.skipped += result.skipped
        total.repaired += result.repaired
        total.seconds += result.seconds
        total.truncated += result.truncated
        total.batch_size = min(total.batch_size, result.batch_size)
        total.samples += result.samples
    if failed:
        finished = [shard for shard in shards if shard not in failed]
        raise ShardError(
            "; ".join(failed.values())
            + (f". Finished and kept: {', '.join(finished)}" if finished else "")
            + f". Re-run alone: {' '.join(failed)}"
        )
    return total


def _manifest_row(prompt: dict, shard: str, sha: str, path: str, run: RunSettings, dropped: int, seconds: float):
    return {
        "prompt_id": prompt["prompt_id"],
        "shard": shard,
        "position": prompt["position"],
        "image_sha256": sha,
        "image_path": path,
        "seed": prompt["seed"],
        "model": run.model,
        "model_fingerprint": run.fingerprint,
        "license": run.license,
        "scheduler": run.scheduler,
        "steps": run.steps,
        "guidance": run.guidance,
        "width": run.width,
        "height": run.height,
        "dtype": run.dtype,
        "device": run.device,
        "tokens_dropped": dropped,
        "torch_version": run.versions.get("torch"),
        "diffusers_version": run.versions.get("diffusers"),
        "transformers_version": run.versions.get("transformers"),
        "seconds": seconds,
    }


def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=MANIFEST_SCHEMA).sort("position", "model_fingerprint")


def contact_sheet(pngs: list[bytes], columns: int = 8, cell: int = 96) -> bytes:
    """A grid of sample faces for the materialization page."""
    if not pngs:
        raise ValueError("no images for a contact sheet")
    rows = math.ceil(len(pngs) / columns)
    sheet = Image.new("RGB", (min(len(pngs), columns) * cell, rows * cell), "white")
    for i, data in enumerate(pngs):
        image = Image.open(io.BytesIO(data)).convert("RGB").resize((cell, cell))
        sheet.paste(image, ((i % columns) * cell, (i // columns) * cell))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()
