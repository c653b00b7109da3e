"""The published benchmark: one row per split image with its bytes, labels and lineage, packed into Parquet
shards that Hugging Face `datasets` loads offline, and a manifest that makes the release verifiable.

Layout of a release folder (under <root>/releases/<release_id>/):
    data/<split>-<i>-of-<n>.parquet   the rows, `datasets`' sharded naming, so splits map by name
    README.md                          the dataset card (Hugging Face YAML header, datasheet)
    croissant.json                     Croissant 1.0 JSON-LD with its Responsible-AI fields
    manifest.json                      every other file with sha256 and size, the provenance, the release id

The release id hashes the files' paths and sha256 and the provenance, nothing else (no timestamps): the same
data under the same profile and libraries gives the same id.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import datasets
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from emonet_assets.lib.release.licenses import permits
from emonet_assets.lib.shared.rules import GENERATED, GENERATED_INTENSITY, SPLITS
from emonet_assets.lib.shared.storage import Store

RELEASES_DIR = "releases"
LATEST = f"{RELEASES_DIR}/latest.json"
MANIFEST = "manifest.json"
CARD = "README.md"
CROISSANT = "croissant.json"
ID_LENGTH = 16
IMAGE_CHUNK = 256
ROW_GROUP_SIZE = 100
LIBRARIES = (
    "emonet-face",
    "dagster",
    "datasets",
    "pyarrow",
    "polars",
    "duckdb",
    "dbt-core",
    "torch",
    "diffusers",
    "transformers",
    "pillow",
    "numpy",
    "krippendorff",
    "fairlearn",
)

_RATING = {
    "annotator": datasets.Value("string"),
    "emotion_id": datasets.Value("string"),
    "scale": datasets.Value("string"),
    "value": datasets.Value("int32"),
    "batch_id": datasets.Value("string"),
    "source_row": datasets.Value("int64"),
}
_CONSENSUS = {
    "emotion_id": datasets.Value("string"),
    "median_rating": datasets.Value("float64"),
    "mean_rating": datasets.Value("float64"),
    "std_rating": datasets.Value("float64"),
    "n_ratings": datasets.Value("int64"),
    "is_confident": datasets.Value("bool"),
}
FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "image_sha256": datasets.Value("string"),
        "split": datasets.Value("string"),
        "prompt_id": datasets.Value("string"),
        "prompt": datasets.Value("string"),
        "emotion_id": datasets.Value("string"),
        "emotion": datasets.Value("string"),
        "emotion_group": datasets.Value("string"),
        "age": datasets.Value("int32"),
        "gender": datasets.Value("string"),
        "ethnicity": datasets.Value("string"),
        "ethnicity_group": datasets.Value("string"),
        "occlusion": datasets.Value("string"),
        "lighting": datasets.Value("string"),
        "pose": datasets.Value("string"),
        "template_id": datasets.Value("string"),
        "intensity_median": datasets.List(datasets.Value("float64")),
        "consensus": datasets.List(_CONSENSUS),
        "ratings": datasets.List(_RATING),
        "annotation_batch_ids": datasets.List(datasets.Value("string")),
        "qc_passed": datasets.Value("bool"),
        "qc_reasons": datasets.List(datasets.Value("string")),
        "phash": datasets.Value("string"),
        "generation_model": datasets.Value("string"),
        "model_fingerprint": datasets.Value("string"),
        "license": datasets.Value("string"),
        "seed": datasets.Value("int64"),
        "scheduler": datasets.Value("string"),
        "steps": datasets.Value("int32"),
        "guidance": datasets.Value("float64"),
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
        "shard": datasets.Value("string"),
        "cell_id": datasets.Value("string"),
        "design_seed": datasets.Value("int64"),
        "design_version": datasets.Value("string"),
        "taxonomy_version": datasets.Value("string"),
        "source_image_path": datasets.Value("string"),
    }
)
# What each column means, for the card and the Croissant file.
FIELD_DESCRIPTIONS = {
    "image": "The generated face, PNG bytes (decodes to a PIL image).",
    "image_sha256": "sha256 of the PNG bytes; the image's id everywhere in the platform.",
    "split": "train, validation or test; a prompt and its near-duplicates stay in one split.",
    "prompt_id": "Id of the design row the image was generated from.",
    "prompt": "The text prompt given to the generation model.",
    "emotion_id": "The emotion the prompt asked for.",
    "emotion": "Display name of the prompted emotion.",
    "emotion_group": "The annotation guide's group of the prompted emotion.",
    "age": "Age in the prompt (years).",
    "gender": "Gender in the prompt.",
    "ethnicity": "Ethnicity string in the prompt.",
    "ethnicity_group": "FairFace-style analysis group of the ethnicity.",
    "occlusion": "Occlusion requested by the prompt (robustness axis).",
    "lighting": "Lighting requested by the prompt (robustness axis).",
    "pose": "Pose requested by the prompt (robustness axis).",
    "template_id": "Prompt template.",
    "intensity_median": "Median rated intensity (0-7) per emotion, in the order of the card's emotion list.",
    "consensus": "Per emotion: median, mean and std of the rated intensities, their count, and confidence.",
    "ratings": "Every rating of the image: annotator, emotion, scale, value and its source batch and row.",
    "annotation_batch_ids": "The annotation batches (sha256 of the imported files) the ratings come from.",
    "qc_passed": "Passed image quality control (decodes, size, not blank, face found where checked).",
    "qc_reasons": "Why quality control failed, if it did.",
    "phash": "Perceptual hash used to keep near-duplicates in one split.",
    "generation_model": "The generation model (folder or Hugging Face id).",
    "model_fingerprint": "Fingerprint of the generation model's weights and configs.",
    "license": "License of the generation model's weights.",
    "seed": "Generation seed (derived from the prompt id).",
    "scheduler": "Diffusion scheduler.",
    "steps": "Diffusion steps.",
    "guidance": "Classifier-free guidance scale.",
    "width": "Image width in pixels.",
    "height": "Image height in pixels.",
    "shard": "Prompt shard the image was generated in.",
    "cell_id": "Demographic design cell of the prompt.",
    "design_seed": "Seed of the prompt design.",
    "design_version": "Version (hash) of the prompt design.",
    "taxonomy_version": "Version (hash) of the emotion taxonomy.",
    "source_image_path": "Where the image lives under the platform's storage root.",
}


class ReleaseRefused(ValueError):
    """The data is not complete enough to publish; the message names counts and examples."""


@dataclass(frozen=True)
class ReleaseTables:
    """The platform tables a release is assembled from."""

    splits: pl.DataFrame
    generated: pl.DataFrame
    prompts: pl.DataFrame
    qc: pl.DataFrame
    consensus: pl.DataFrame
    annotations: pl.DataFrame


def _examples(frame: pl.DataFrame, describe: Callable[[dict], str], limit: int = 3) -> str:
    return "; ".join(describe(row) for row in frame.head(limit).iter_rows(named=True))


def release_rows(tables: ReleaseTables, emotion_ids: list[str], max_failed_qc_share: float) -> pl.DataFrame:
    """One row per split image with everything but the image bytes, in split then sha256 order.

    Refuses a dataset that is not complete: too many generated images failing QC, split images without
    a generation record, a prompt, a QC pass or intensity consensus for every emotion.
    """
    qc = tables.qc.select("image_sha256", "passed", "reasons", "phash")
    failed = qc.filter(~pl.col("passed"))
    share = failed.height / qc.height if qc.height else 0.0
    if share > max_failed_qc_share:
        raise ReleaseRefused(
            f"{failed.height} of {qc.height} generated images ({share:.1%}) failed QC, above the profile's "
            f"release.max_failed_qc_share {max_failed_qc_share:.1%}; e.g. "
            + _examples(failed, lambda r: f"{r['image_sha256'][:12]} ({', '.join(r['reasons'] or []) or 'failed'})")
        )
    split_images = tables.splits.select("image_sha256", "split").unique("image_sha256").sort("split", "image_sha256")
    if split_images.is_empty():
        raise ReleaseRefused("the splits table has no images: nothing to release")
    generated = tables.generated.unique("image_sha256", keep="last").select(
        "image_sha256",
        "prompt_id",
        "image_path",
        "seed",
        pl.col("model").alias("generation_model"),
        "model_fingerprint",
        "license",
        "scheduler",
        "steps",
        "guidance",
        "width",
        "height",
        "shard",
    )
    prompts = tables.prompts.select(
        "prompt_id",
        "prompt",
        "emotion_id",
        "emotion",
        "emotion_group",
        "age",
        "gender",
        "ethnicity",
        "ethnicity_group",
        "occlusion",
        "lighting",
        "pose",
        "template_id",
        "cell_id",
        "design_seed",
        "design_version",
        "taxonomy_version",
    )
    rows = split_images.join(generated, on="image_sha256", how="left").join(prompts, on="prompt_id", how="left")
    rows = rows.join(qc, on="image_sha256", how="left")
    _refuse_missing(rows.filter(pl.col("prompt_id").is_null()), "have no row in the generation manifest")
    _refuse_missing(rows.filter(pl.col("prompt").is_null()), "have no prompt in prompt_design")
    _refuse_missing(rows.filter(~pl.col("passed").fill_null(False)), "did not pass QC")

    consensus = tables.consensus.filter(
        GENERATED_INTENSITY
        & pl.col("image_id").is_in(split_images["image_sha256"].implode())
        & pl.col("emotion_id").is_in(emotion_ids)
    )
    order = pl.DataFrame({"emotion_id": emotion_ids, "order": range(len(emotion_ids))})
    labels = (
        consensus.join(order, on="emotion_id")
        .sort("image_id", "order")
        .group_by("image_id", maintain_order=True)
        .agg(
            pl.col("emotion_id").alias("labelled"),
            pl.col("median_rating").alias("intensity_median"),
            pl.struct(*_CONSENSUS).alias("consensus"),
        )
        .rename({"image_id": "image_sha256"})
    )
    rows = rows.join(labels, on="image_sha256", how="left")
    incomplete = rows.filter(pl.col("labelled").list.len().fill_null(0) < len(emotion_ids)).with_columns(
        missing=pl.col("labelled")
        .fill_null([])
        .map_elements(lambda got: [e for e in emotion_ids if e not in set(got)], return_dtype=pl.List(pl.String))
    )
    if incomplete.height:
        raise ReleaseRefused(
            f"{incomplete.height} of {rows.height} split images lack intensity consensus for some of the "
            f"{len(emotion_ids)} emotions; e.g. "
            + _examples(
                incomplete,
                lambda r: (
                    f"{r['image_sha256'][:12]} ({r['split']}): {len(r['missing'])} missing "
                    f"({', '.join(r['missing'][:3])}{', ...' if len(r['missing']) > 3 else ''})"
                ),
            )
        )
    ratings = (
        tables.annotations.filter(
            (pl.col("collection") == GENERATED) & pl.col("image_id").is_in(split_images["image_sha256"].implode())
        )
        .sort("image_id", "emotion_id", "annotator", "scale", "batch_id", "source_row")
        .group_by("image_id", maintain_order=True)
        .agg(
            pl.struct(*_RATING).alias("ratings"),
            pl.col("batch_id").unique().sort().alias("annotation_batch_ids"),
        )
        .rename({"image_id": "image_sha256"})
    )
    rows = rows.join(ratings, on="image_sha256", how="left").with_columns(
        pl.col("ratings").fill_null([]),
        pl.col("annotation_batch_ids").fill_null([]),
        qc_passed=pl.col("passed"),
        qc_reasons=pl.col("reasons").fill_null([]),
        source_image_path=pl.col("image_path"),
    )
    return rows.select([name for name in FEATURES if name != "image"]).sort("split", "image_sha256")


def _refuse_missing(bad: pl.DataFrame, reason: str) -> None:
    if bad.height:
        raise ReleaseRefused(
            f"{bad.height} split images {reason}; e.g. "
            + _examples(bad, lambda r: f"{r['image_sha256'][:12]} ({r['split']})")
        )


def license_conflicts(rows: pl.DataFrame, release_license: str) -> pl.DataFrame:
    """Generation models whose license forbids the release license, with how many rows each has."""
    models = rows.group_by("generation_model", "model_fingerprint", "license").agg(images=pl.len())
    allowed = [permits(license_id, release_license) for license_id in models["license"].to_list()]
    return models.filter(~pl.Series(allowed, dtype=pl.Boolean)).sort("generation_model", "model_fingerprint")


# Shards


def _to_arrow(rows: pl.DataFrame, images: list[bytes]) -> pa.Table:
    with_images = rows.with_columns(
        image=pl.struct(pl.Series("bytes", images, dtype=pl.Binary), (pl.col("image_sha256") + ".png").alias("path"))
    )
    table = with_images.select(list(FEATURES)).to_arrow()
    return table.cast(FEATURES.arrow_schema)


def encode_shard(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", row_group_size=ROW_GROUP_SIZE, write_statistics=True)
    return buffer.getvalue()


def _fit(table: pa.Table, budget: int) -> tuple[bytes, int]:
    """The longest prefix whose encoded shard fits the budget (at least one row), encoded."""
    image_bytes = pc.binary_length(table.column("image").combine_chunks().field("bytes")).fill_null(0)
    other = max(table.nbytes - pc.sum(image_bytes).as_py(), 0) / max(table.num_rows, 1)
    sizes = pc.cumulative_sum(pc.add(pc.cast(image_bytes, pa.float64()), other)).to_pylist()
    n = max(1, sum(1 for s in sizes if s <= budget))
    data = encode_shard(table.slice(0, n))
    while len(data) > budget and n > 1:
        n = max(1, min(n - 1, int(n * budget / len(data))))
        data = encode_shard(table.slice(0, n))
    return data, n


def pack_shards(chunks: Iterable[pa.Table], budget: int) -> Iterator[tuple[bytes, int]]:
    """Encoded Parquet shards of at most `budget` bytes each (a single row larger than that is a shard alone),
    with their row counts; rows keep their order. Always at least one shard, so an empty split keeps its schema."""
    pending = FEATURES.arrow_schema.empty_table()
    emitted = False
    for chunk in chunks:
        pending = pa.concat_tables([pending, chunk])
        while pending.num_rows and pending.nbytes >= budget:
            data, n = _fit(pending, budget)
            yield data, n
            emitted = True
            pending = pending.slice(n)
    while pending.num_rows or not emitted:
        data, n = _fit(pending, budget) if pending.num_rows else (encode_shard(pending), 0)
        yield data, n
        emitted = True
        pending = pending.slice(n)


def image_chunks(store: Store, rows: pl.DataFrame, size: int = IMAGE_CHUNK) -> Iterator[pa.Table]:
    """The rows as Arrow tables with their image bytes, reading a chunk of images at a time."""
    for start in range(0, rows.height, size):
        part = rows.slice(start, size)
        paths = part["source_image_path"].to_list()
        found = store.read_many(paths)
        missing = [p for p in paths if not isinstance(found.get(p), bytes)]
        if missing:
            raise ReleaseRefused(
                f"{len(missing)} split images cannot be read from {store.root}; e.g. {', '.join(missing[:3])}"
            )
        corrupt = [p for p in paths if hashlib.sha256(found[p]).hexdigest() != posixpath.basename(p).split(".")[0]]
        if corrupt:
            raise ReleaseRefused(
                f"{len(corrupt)} split images no longer match their sha256 (emonet generate --repair); "
                f"e.g. {', '.join(corrupt[:3])}"
            )
        yield _to_arrow(part, [found[p] for p in paths])


# Provenance, id and manifest


def provenance(
    profile: dict, rows: pl.DataFrame, generated: pl.DataFrame, fingerprints: dict[str, str], libraries: dict
) -> dict:
    """What the release was made from and with: the profile (without where it is stored or who is alerted),
    library versions here and at generation time, and every model fingerprint."""
    used = generated.filter(pl.col("image_sha256").is_in(rows["image_sha256"].implode()))
    generation = (
        used.group_by("model", "model_fingerprint", "license", "torch_version", "diffusers_version")
        .agg(pl.col("transformers_version").first(), images=pl.len())
        .sort("model", "model_fingerprint", "torch_version", "diffusers_version")
    )
    return {
        "profile": {k: v for k, v in profile.items() if k not in ("storage", "alerts", "schedules", "source")},
        "library_versions": libraries,
        "generation_models": generation.to_dicts(),
        "model_fingerprints": dict(sorted(fingerprints.items())),
        "design_versions": sorted(rows["design_version"].unique().to_list()),
        "taxonomy_versions": sorted(rows["taxonomy_version"].unique().to_list()),
    }


def release_id(files: dict[str, str], provenance_: dict) -> str:
    """Hash of every file's path and sha256 plus the provenance: same content, same id."""
    canonical = json.dumps({"files": sorted(files.items()), "provenance": provenance_}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:ID_LENGTH]


def shard_name(split: str, index: int, count: int) -> str:
    return f"data/{split}-{index:05d}-of-{count:05d}.parquet"


@dataclass
class ReleaseFiles:
    """Files written to a staging folder, with the names they will have in the release."""

    staging: str
    files: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # final name -> (staged, sha256, bytes)
    rows: dict[str, int] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)

    def stage(self, store: Store, data: bytes) -> tuple[str, str, int]:
        staged = f"{self.staging}/{uuid.uuid4().hex}"
        store.write_bytes(staged, data)
        return staged, hashlib.sha256(data).hexdigest(), len(data)

    def add(self, store: Store, name: str, data: bytes) -> None:
        self.files[name] = self.stage(store, data)

    def digests(self) -> dict[str, str]:
        return {name: sha for name, (_, sha, _) in self.files.items()}

    def data_bytes(self, split: str | None = None) -> int:
        prefix = f"data/{split}-" if split else "data/"
        return sum(size for name, (_, _, size) in self.files.items() if name.startswith(prefix))


def write_shards(store: Store, rows: pl.DataFrame, budget: int) -> ReleaseFiles:
    """Every split's shards into a staging folder under releases/; their names (`-of-<n>`) are known once the
    split is packed."""
    staged = ReleaseFiles(staging=f"{RELEASES_DIR}/.staging-{uuid.uuid4().hex}")
    try:
        for split in SPLITS:
            part = rows.filter(pl.col("split") == split)
            written = [staged.stage(store, data) for data, _ in pack_shards(image_chunks(store, part), budget)]
            for index, entry in enumerate(written):
                staged.files[shard_name(split, index, len(written))] = entry
            staged.rows[split] = part.height
            staged.shards[split] = len(written)
    except BaseException:
        store.remove_tree(staged.staging)
        raise
    return staged


def manifest(files: ReleaseFiles, provenance_: dict, created_at: str) -> dict:
    """`created_at` is the one field outside the hashed content."""
    listed = [{"path": n, "sha256": sha, "bytes": size} for n, (_, sha, size) in sorted(files.files.items())]
    return {
        "release_id": release_id(files.digests(), provenance_),
        "hashed": "sha256 of the files' paths and sha256 plus the provenance (created_at is not hashed)",
        "created_at": created_at,
        "rows": files.rows,
        "shards": files.shards,
        "files": listed,
        "provenance": provenance_,
    }


def publish(store: Store, files: ReleaseFiles, manifest_: dict) -> str:
    """Moves the staged files into releases/<id>/ and writes the manifest last, so a folder with a manifest is
    complete; a release that already exists with that id has the same content and is left as it is."""
    folder = f"{RELEASES_DIR}/{manifest_['release_id']}"
    if not store.exists(f"{folder}/{MANIFEST}"):
        for name, (staged, _, _) in sorted(files.files.items()):
            store.move(staged, f"{folder}/{name}")
        store.write_bytes(f"{folder}/{MANIFEST}", json.dumps(manifest_, indent=2, sort_keys=True).encode())
    store.remove_tree(files.staging)
    return folder


def mark_latest(store: Store, folder: str) -> None:
    """Only a release that passed its checks becomes the one `latest.json` points readers at."""
    store.write_bytes(LATEST, json.dumps({"release_id": folder.rsplit("/", 1)[-1], "path": folder}).encode())


def latest_release(store: Store) -> str:
    """The folder (relative to the root) of the newest release that passed its checks."""
    if not store.exists(LATEST):
        raise FileNotFoundError(f"no release under {store.url(RELEASES_DIR)} yet")
    return json.loads(store.read_bytes(LATEST))["path"]


# Verification


@dataclass(frozen=True)
class Verification:
    release_id: str | None
    files: int
    bytes: int
    missing: list[str]
    changed: list[str]
    unexpected: list[str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.unexpected or self.problems)

    def differences(self) -> list[str]:
        return [
            *self.problems,
            *(f"missing {p}" for p in self.missing),
            *(f"changed {p}" for p in self.changed),
            *(f"unexpected {p}" for p in self.unexpected),
        ]


def verify(store: Store) -> Verification:
    """A release folder (the store's root) against its manifest: every listed file present with its sha256 and
    size, nothing else beside them, and the manifest's release id matching its own content."""
    try:
        listed = json.loads(store.read_bytes(MANIFEST))
        entries = {f["path"]: f for f in listed["files"]}
        stated_id = listed["release_id"]
        expected_id = release_id({p: f["sha256"] for p, f in entries.items()}, listed["provenance"])
    except FileNotFoundError:
        return Verification(None, 0, 0, [], [], [], [f"no {MANIFEST} in {store.root}: not a release folder"])
    except (ValueError, KeyError, TypeError) as exc:
        return Verification(None, 0, 0, [], [MANIFEST], [], [f"{MANIFEST} is not a release manifest: {exc}"])
    present = {path: size for path, size, _ in store.list_files("") if path != MANIFEST}
    missing = sorted(set(entries) - set(present))
    unexpected = sorted(set(present) - set(entries))
    changed = []
    for path in sorted(set(entries) & set(present)):
        entry = entries[path]
        if present[path] != entry["bytes"] or hashlib.sha256(store.read_bytes(path)).hexdigest() != entry["sha256"]:
            changed.append(path)
    problems = []
    if stated_id != expected_id:
        problems.append(f"{MANIFEST} states release id {stated_id}, its content hashes to {expected_id}")
    total = sum(f["bytes"] for f in entries.values())
    return Verification(stated_id, len(entries), total, missing, changed, unexpected, problems)
