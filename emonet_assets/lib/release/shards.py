"""Parquet shards that Hugging Face `datasets` loads offline: the rows with their image bytes, packed to a size
budget and staged under releases/ until the release is published."""

from __future__ import annotations

import hashlib
import io
import posixpath
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from emonet_assets.lib.release.rows import ReleaseRefused, ReleaseRows
from emonet_assets.lib.release.schema import FEATURES, RELEASES_DIR
from emonet_assets.lib.shared.iteration import read_ahead
from emonet_assets.lib.shared.rules import SPLITS
from emonet_assets.lib.shared.storage import Store

IMAGE_CHUNK = 256
ROW_GROUP_SIZE = 100


def _with_images(rows: pa.RecordBatch, images: list[bytes]) -> pa.Table:
    paths = pc.binary_join_element_wise(rows.column("image_sha256"), ".png", "")
    image = pa.StructArray.from_arrays([pa.array(images, pa.binary()), paths], names=["bytes", "path"])
    columns = {"image": image, **{name: rows.column(name) for name in rows.schema.names}}
    return pa.table([columns[name] for name in FEATURES], names=list(FEATURES)).cast(FEATURES.arrow_schema)


# Statistics only on the top-level columns, where a reader prunes row groups, and no dictionaries (zstd finds the
# repeats): in 100-row groups, both cost a third of the encoding on the nested columns, and made the files larger.
SCALAR_COLUMNS = [f.name for f in FEATURES.arrow_schema if not pa.types.is_nested(f.type)]


def encode_shard(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(
        table,
        buffer,
        compression="zstd",
        row_group_size=ROW_GROUP_SIZE,
        write_statistics=SCALAR_COLUMNS,
        use_dictionary=False,
    )
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
    pending_bytes = 0  # pending.nbytes, summed chunk by chunk: measuring the growing table each time is quadratic
    emitted = False
    for chunk in chunks:
        pending = pa.concat_tables([pending, chunk])
        pending_bytes += chunk.nbytes
        while pending.num_rows and pending_bytes >= budget:
            data, n = _fit(pending, budget)
            yield data, n
            emitted = True
            pending = pending.slice(n)
            pending_bytes = pending.nbytes
    while pending.num_rows or not emitted:
        data, n = _fit(pending, budget) if pending.num_rows else (encode_shard(pending), 0)
        yield data, n
        emitted = True
        pending = pending.slice(n)


def image_chunks(store: Store, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.Table]:
    """The rows as Arrow tables with their image bytes, reading one batch's images at a time."""
    for rows in batches:
        paths = rows.column("source_image_path").to_pylist()
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
        yield _with_images(rows, [found[p] for p in paths])


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


def write_shards(store: Store, rows: ReleaseRows, budget: int) -> ReleaseFiles:
    """Every split's shards into a staging folder under releases/, streamed from DuckDB a chunk of images at a
    time; their names (`-of-<n>`) are known once the split is packed."""
    staged = ReleaseFiles(staging=f"{RELEASES_DIR}/.staging-{uuid.uuid4().hex}")
    try:
        for split in SPLITS:
            # A quarter of a shard's bytes read ahead keeps reading going while a shard is encoded (a whole shard
            # ahead held more memory for no more speed).
            chunks = read_ahead(
                image_chunks(store, rows.split_rows(split, IMAGE_CHUNK)), budget // 4, lambda t: t.nbytes
            )
            written = [staged.stage(store, data) for data, _ in pack_shards(chunks, budget)]
            for index, entry in enumerate(written):
                staged.files[shard_name(split, index, len(written))] = entry
            staged.rows[split] = rows.images.filter(pl.col("split") == split).height
            staged.shards[split] = len(written)
    except BaseException:
        store.remove_tree(staged.staging)
        raise
    return staged
