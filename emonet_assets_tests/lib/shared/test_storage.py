"""The storage contract (emonet_assets.lib.shared.storage.Store) on a local folder and on S3 (moto server)."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from emonet_assets.lib.shared import storage as storage_module
from emonet_assets.lib.shared.catalog import connect, create_view
from emonet_assets.lib.shared.storage import StorageError, Store, observe_tables
from emonet_assets.lib.shared.tables import Table

PNG_A = b"\x89PNG\r\n\x1a\n" + b"image-a" * 50
PNG_B = b"\x89PNG\r\n\x1a\n" + b"image-b" * 50


@dataclass
class Backend:
    kind: str
    store: Store
    local_root: Path | None = None
    s3: object | None = None  # conftest.MotoS3
    prefix: str | None = None

    def files(self) -> list[str]:
        """Every file under the root, relative to it, seen independently of the Store's filesystem."""
        if self.kind == "local":
            return sorted(
                str((Path(folder) / name).relative_to(self.local_root)).replace(os.sep, "/")
                for folder, _, names in os.walk(self.local_root)
                for name in names
            )
        return [key[len(self.prefix) + 1 :] for key in self.s3.keys(self.prefix + "/")]

    def raw_bytes(self, rel: str) -> bytes:
        """The stored object, read without going through the Store."""
        if self.kind == "local":
            return (self.local_root / rel).read_bytes()
        body = self.s3.client().get_object(Bucket=self.s3.bucket, Key=f"{self.prefix}/{rel}")["Body"]
        return body.read()


def _s3_backend(moto_s3) -> Backend:
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # no listing cache carried over from another test
    prefix = f"prefix-{uuid.uuid4().hex[:12]}"
    store = Store(f"s3://{moto_s3.bucket}/{prefix}", moto_s3.storage_options)
    return Backend(kind="s3", store=store, s3=moto_s3, prefix=prefix)


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path) -> Backend:
    if request.param == "local":
        root = tmp_path / "root"
        return Backend(kind="local", store=Store(str(root)), local_root=root)
    return _s3_backend(request.getfixturevalue("moto_s3"))


@pytest.fixture
def local_store(tmp_path) -> Store:
    return Store(str(tmp_path / "root"))


def sample_frame(offset: int = 0, n: int = 3) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "image_id": [f"img-{offset + i:04d}" for i in range(n)],
            "score": [float(offset + i) / 2 for i in range(n)],
            "labels": [[f"label-{offset + i}", "shared"] if i % 2 == 0 else [] for i in range(n)],
        },
        schema={"image_id": pl.String, "score": pl.Float64, "labels": pl.List(pl.String)},
    )


# images


def test_write_image_is_content_addressed(backend):
    store = backend.store
    sha, rel, new = store.write_image(PNG_A)

    expected_sha = hashlib.sha256(PNG_A).hexdigest()
    assert sha == expected_sha
    assert rel == f"images/{sha[:2]}/{sha[2:4]}/{sha}.png"
    assert new is True
    assert store.read_bytes(rel) == PNG_A
    assert backend.raw_bytes(rel) == PNG_A
    assert backend.files() == [rel]
    assert store.count_images() == 1


def test_read_many_returns_each_files_bytes_and_each_missing_files_error(backend):
    store = backend.store
    _, first, _ = store.write_image(PNG_A)
    _, second, _ = store.write_image(PNG_A + b"other")
    missing = store.image_path("0" * 64)
    found = store.read_many([second, missing, first])
    assert list(found) == [second, missing, first]
    assert found[first] == PNG_A
    assert found[second] == PNG_A + b"other"
    assert isinstance(found[missing], FileNotFoundError)


def test_write_image_twice_does_not_rewrite(backend, monkeypatch):
    store = backend.store
    sha, rel, new = store.write_image(PNG_A)
    assert new is True
    before = os.stat(backend.local_root / rel) if backend.kind == "local" else None

    writes = []
    real_write_bytes = Store.write_bytes

    def spy(self, rel_, data):
        writes.append(rel_)
        return real_write_bytes(self, rel_, data)

    monkeypatch.setattr(Store, "write_bytes", spy)
    again = store.write_image(PNG_A)

    assert again == (sha, rel, False)
    assert writes == []
    assert store.read_bytes(rel) == PNG_A
    assert backend.files() == [rel]
    if before is not None:
        after = os.stat(backend.local_root / rel)
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_different_image_bytes_get_different_paths(backend):
    store = backend.store
    sha_a, rel_a, _ = store.write_image(PNG_A)
    sha_b, rel_b, new_b = store.write_image(PNG_B)

    assert new_b is True
    assert sha_a != sha_b
    assert rel_a != rel_b
    assert sha_b == hashlib.sha256(PNG_B).hexdigest()
    assert store.read_bytes(rel_a) == PNG_A
    assert store.read_bytes(rel_b) == PNG_B
    assert backend.files() == sorted([rel_a, rel_b])
    assert store.count_images() == 2


def test_image_extension_is_kept(backend):
    sha, rel, _ = backend.store.write_image(PNG_A, ext="webp")
    assert rel == f"images/{sha[:2]}/{sha[2:4]}/{sha}.webp"
    assert backend.store.read_bytes(rel) == PNG_A


# tables


def test_unpartitioned_table_round_trip(backend):
    store = backend.store
    frame = sample_frame()
    rel = store.write_table("scores", frame)

    assert rel == "tables/scores/all.parquet"
    assert store.table_partitions("scores") == ["all"]
    assert store.table_names() == ["scores"]
    back = store.read_table("scores")
    assert back.schema["labels"] == pl.List(pl.String)
    assert_frame_equal(back, frame)
    assert backend.files() == ["tables/scores/all.parquet"]


def test_partitioned_table_round_trip(backend):
    store = backend.store
    parts = {
        "shard-000": sample_frame(0, 3),
        "shard-001": sample_frame(10, 2),
        "shard-002": sample_frame(20, 4),
    }
    for name, frame in parts.items():
        assert store.write_table("prompts", frame, partition=name) == f"tables/prompts/{name}.parquet"

    assert store.table_partitions("prompts") == sorted(parts)
    assert_frame_equal(store.read_table("prompts"), pl.concat(list(parts.values())))
    assert_frame_equal(store.read_table("prompts", ["shard-001"]), parts["shard-001"])
    assert_frame_equal(
        store.read_table("prompts", ["shard-002", "shard-000"]),
        pl.concat([parts["shard-002"], parts["shard-000"]]),
    )
    assert backend.files() == sorted(f"tables/prompts/{p}.parquet" for p in parts)


def test_rewriting_a_partition_replaces_it(backend):
    store = backend.store
    store.write_table("prompts", sample_frame(0, 3), partition="p1")
    store.write_table("prompts", sample_frame(0, 3), partition="p2")
    store.write_table("prompts", sample_frame(100, 1), partition="p1")

    assert store.table_partitions("prompts") == ["p1", "p2"]
    assert_frame_equal(store.read_table("prompts", ["p1"]), sample_frame(100, 1))
    assert store.read_table("prompts").height == 4


def test_a_copied_partition_is_its_source_byte_for_byte_and_a_removed_one_is_gone(backend):
    store, seen = backend.store, []
    source = store.write_table("batches", sample_frame(0, 3), partition="b1")
    with observe_tables(lambda kind, table: seen.append((kind, table))):
        assert store.copy_table_file("collected", source, "2026-b1") == "tables/collected/2026-b1.parquet"
    store.write_table("collected", sample_frame(10, 2), partition="2027-b2")

    assert backend.raw_bytes("tables/collected/2026-b1.parquet") == backend.raw_bytes(source)
    assert_frame_equal(store.read_table("collected"), pl.concat([sample_frame(0, 3), sample_frame(10, 2)]))
    store.remove_table_file("collected", "2027-b2")
    assert store.table_partitions("collected") == ["2026-b1"]
    assert backend.files() == ["tables/batches/b1.parquet", "tables/collected/2026-b1.parquet"]
    assert ("write", "collected") in seen


def test_table_partitions_and_names_of_nothing_are_empty(backend):
    assert backend.store.table_partitions("never_written") == []
    assert backend.store.table_names() == []
    assert backend.store.count_images() == 0


def test_read_missing_table_names_table_and_root(backend):
    store = backend.store
    store.write_table("other", sample_frame())
    with pytest.raises(StorageError) as exc:
        store.read_table("never_written")
    assert "never_written" in str(exc.value)
    assert store.root in str(exc.value)


def test_a_registry_table_is_named_by_its_folder(backend):
    with pytest.raises(StorageError) as exc:
        backend.store.read_table(Table.MODEL_TEST_PREDICTIONS)
    assert str(exc.value).startswith("table 'model_test_predictions' has not been written under ")


def test_table_names_are_the_tables_with_a_file(backend):
    """A folder with no partition file in it (a write probe's, say) is no table yet."""
    backend.store.ensure_writable("tables/empty")
    backend.store.write_table("t", sample_frame())
    assert backend.store.table_names() == ["t"]


def test_each_table_access_reaches_the_observer(backend):
    store, seen = backend.store, []
    with observe_tables(lambda kind, table: seen.append((kind, table))):
        store.write_table(Table.TAXONOMY, sample_frame())
        store.read_table(Table.TAXONOMY)
        store.has_table(Table.SPLITS)
    store.read_table(Table.TAXONOMY)
    assert seen == [("write", "taxonomy"), ("read", "taxonomy"), ("read", "splits")]


def test_read_missing_partition_names_partition(backend):
    store = backend.store
    store.write_table("prompts", sample_frame(), partition="p1")
    with pytest.raises(StorageError) as exc:
        store.read_table("prompts", ["p1", "p9"])
    assert "p9" in str(exc.value)
    assert "prompts" in str(exc.value)
    assert store.root in str(exc.value)


def test_table_info_counts_rows_and_partitions(backend):
    store = backend.store
    store.write_table("prompts", sample_frame(0, 3), partition="p1")
    store.write_table("prompts", sample_frame(10, 5), partition="p2")
    store.write_table("single", sample_frame(0, 7))

    info = store.table_info("prompts")
    assert (info.name, info.partitions, info.rows) == ("prompts", 2, 8)
    assert info.bytes == sum(len(backend.raw_bytes(f"tables/prompts/{p}.parquet")) for p in ("p1", "p2"))
    assert info.modified is not None and info.modified.tzinfo is not None

    single = store.table_info("single")
    assert (single.partitions, single.rows) == (1, 7)

    empty = store.table_info("never_written")
    assert (empty.partitions, empty.rows, empty.bytes, empty.modified) == (0, 0, 0, None)


# paths


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "images/../../x", "tables/a/../../../x"])
def test_paths_cannot_leave_the_root(backend, rel):
    store = backend.store
    for attempt in (
        lambda: store.write_bytes(rel, b"nope"),
        lambda: store.read_bytes(rel),
        lambda: store.exists(rel),
        lambda: store.url(rel),
    ):
        with pytest.raises(StorageError) as exc:
            attempt()
        assert store.root in str(exc.value)
    assert backend.files() == []
    if backend.kind == "local":
        assert not (backend.local_root.parent / "x").exists()


def test_table_names_cannot_leave_the_root(backend):
    with pytest.raises(StorageError):
        backend.store.write_table("../escaped", sample_frame())
    with pytest.raises(StorageError):
        backend.store.write_table("ok", sample_frame(), partition="../../escaped")
    assert backend.files() == []


def test_local_url_is_a_plain_absolute_path(tmp_path):
    store = Store(str(tmp_path / "root"))
    assert store.is_local
    assert store.url("tables/t/all.parquet") == str(tmp_path / "root" / "tables" / "t" / "all.parquet")


def test_s3_url_keeps_the_scheme(moto_s3):
    store = Store(f"s3://{moto_s3.bucket}/some/prefix/", moto_s3.storage_options)
    assert not store.is_local
    assert store.root == f"s3://{moto_s3.bucket}/some/prefix"
    assert store.url("tables/t/all.parquet") == f"s3://{moto_s3.bucket}/some/prefix/tables/t/all.parquet"


# atomic local writes


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_local_write_keeps_old_content(local_store, monkeypatch, failing):
    rel = "tables/t/all.parquet"
    local_store.write_bytes(rel, b"old content")
    target = Path(local_store.url(rel))

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage_module.os, failing, boom)
    with pytest.raises(StorageError) as exc:
        local_store.write_bytes(rel, b"new content that never lands")
    monkeypatch.undo()

    assert str(target) in str(exc.value)
    assert isinstance(exc.value.__cause__, OSError)
    assert target.read_bytes() == b"old content"
    assert [p.name for p in target.parent.iterdir()] == ["all.parquet"]
    assert not [p for p in target.parent.parent.parent.rglob("*") if ".tmp-" in p.name]


def test_failed_first_local_write_leaves_nothing(local_store, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(storage_module.os, "replace", boom)
    with pytest.raises(StorageError):
        local_store.write_table("t", sample_frame())
    monkeypatch.undo()

    assert local_store.table_partitions("t") == []
    assert not [p for p in Path(local_store.root).rglob("*") if p.is_file()]


def test_local_write_goes_through_a_complete_temporary_file(local_store, monkeypatch):
    """At the moment of the rename the target still holds the old bytes and the temporary file all
    the new ones: readers never see a partly written file."""
    rel = "tables/t/all.parquet"
    local_store.write_bytes(rel, b"old")
    target = local_store.url(rel)
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((str(dst), Path(dst).read_bytes(), Path(src).read_bytes(), ".tmp-" in str(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(storage_module.os, "replace", spy)
    local_store.write_bytes(rel, b"new and complete")
    monkeypatch.undo()

    assert seen == [(target, b"old", b"new and complete", True)]
    assert Path(target).read_bytes() == b"new and complete"
    assert [p.name for p in Path(target).parent.iterdir()] == ["all.parquet"]


# ensure_writable


def test_ensure_writable_creates_the_root_and_leaves_no_probe(backend):
    backend.store.ensure_writable()
    assert backend.files() == []
    if backend.kind == "local":
        assert backend.local_root.is_dir()


def test_ensure_writable_on_read_only_folder(tmp_path):
    root = tmp_path / "readonly"
    root.mkdir()
    root.chmod(0o500)
    try:
        try:
            (root / "probe").write_bytes(b"x")
        except PermissionError:
            pass
        else:
            pytest.skip("chmod does not stop this user from writing (running as root)")
        with pytest.raises(StorageError) as exc:
            Store(str(root)).ensure_writable()
        assert str(root) in str(exc.value)
    finally:
        root.chmod(0o700)


def test_ensure_writable_on_root_that_cannot_be_created(tmp_path):
    afile = tmp_path / "afile"
    afile.write_bytes(b"a regular file")
    root = afile / "root"
    store = Store(str(root))

    with pytest.raises(StorageError) as exc:
        store.ensure_writable()
    assert str(root) in str(exc.value)
    assert afile.read_bytes() == b"a regular file"


def test_ensure_writable_on_missing_bucket(moto_s3):
    store = Store("s3://emonet-no-such-bucket/prefix", moto_s3.storage_options)
    with pytest.raises(StorageError) as exc:
        store.ensure_writable()
    assert "s3://emonet-no-such-bucket/prefix" in str(exc.value)


# S3 end to end


def test_s3_end_to_end_images_tables_and_duckdb(moto_s3, tmp_path):
    backend = _s3_backend(moto_s3)
    store = backend.store
    store.ensure_writable()

    images = [PNG_A, PNG_B, b"\x89PNG\r\n\x1a\n" + b"image-c" * 10]
    written = [store.write_image(data) for data in images]
    assert all(new for _, _, new in written)
    assert store.write_image(PNG_A)[2] is False

    store.write_table("design", pl.DataFrame({"cell": ["a", "b"], "planned": [2, 3]}))
    shard0 = pl.DataFrame({"prompt_id": [1, 2, 3], "score": [1.5, 2.5, 3.0], "tags": [["x"], [], ["y", "z"]]})
    shard1 = pl.DataFrame({"prompt_id": [4, 5], "score": [10.0, 0.25], "tags": [["x", "x"], ["w"]]})
    store.write_table("prompts", shard0, partition="shard-000")
    store.write_table("prompts", shard1, partition="shard-001")

    # read back through a fresh Store (new filesystem instance, no listing cache)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    reader = Store(store.root, moto_s3.storage_options)
    for (sha, rel, _), data in zip(written, images, strict=True):
        assert reader.read_bytes(rel) == data
        assert hashlib.sha256(reader.read_bytes(rel)).hexdigest() == sha
    assert reader.count_images() == 3
    assert reader.table_names() == ["design", "prompts"]
    assert reader.table_partitions("prompts") == ["shard-000", "shard-001"]
    assert_frame_equal(reader.read_table("prompts"), pl.concat([shard0, shard1]))
    assert_frame_equal(reader.read_table("design"), pl.DataFrame({"cell": ["a", "b"], "planned": [2, 3]}))
    info = reader.table_info("prompts")
    assert (info.partitions, info.rows) == (2, 5)

    # the catalog's views read the same Parquet files straight from S3, through a glob over each table's folder
    con = connect(database=str(tmp_path / "catalog.duckdb"), store=reader)
    try:
        create_view(con, reader, "prompts")
        create_view(con, reader, "design")
        assert con.execute('SELECT count(*), sum(score), sum(len(tags)) FROM "prompts"').fetchone() == (
            5,
            17.25,
            6,
        )
        assert con.execute('SELECT sum(planned) FROM "design"').fetchone() == (5,)
        assert con.execute("SELECT prompt_id FROM \"prompts\" WHERE list_contains(tags, 'w')").fetchall() == [(5,)]
    finally:
        con.close()

    # the objects are exactly where the Store says, and nothing temporary is left behind
    expected = sorted(
        [rel for _, rel, _ in written]
        + [
            "tables/design/all.parquet",
            "tables/prompts/shard-000.parquet",
            "tables/prompts/shard-001.parquet",
        ]
    )
    keys = moto_s3.keys(backend.prefix + "/")
    assert keys == [f"{backend.prefix}/{rel}" for rel in expected]
    assert not [k for k in keys if ".tmp-" in k or ".write-probe-" in k]
    for sha, rel, _ in written:
        assert rel == f"images/{sha[:2]}/{sha[2:4]}/{sha}.png"
