"""Who rated a batch: declared with the file, recorded in the batch log, carried by every rating."""

from dataclasses import replace

import polars as pl

from emonet_assets.lib.annotation.annotation_batches import (
    ACCEPTED_SCHEMA,
    batch_log,
    earlier_keys,
    import_landed_batch,
    rating_sources,
    write_annotations,
)
from emonet_assets.lib.annotation.annotation_formats import parse_annotation_file
from emonet_assets.lib.annotation.annotation_import import ImageIndex, import_batch
from emonet_assets.lib.annotation.landing import BatchDeclaration, land_file
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy

PREFIX = "landing/annotations"
RATINGS = b"path,annotator,value,emotion\n00001,ann,3,Elation\n00002,bea,0,Elation\n00002,ann,1,Elation\n"


def test_a_batch_records_who_rated_and_every_rating_carries_it(tmp_path):
    store = Store(str(tmp_path / "root"))
    declaration = BatchDeclaration(collection="sample", raters="crowd")
    _, sha, _ = land_file(store, PREFIX, "crowd.csv", RATINGS, declaration)

    landed = import_landed_batch(store, PREFIX, sha, load_taxonomy(), max_bytes=1 << 20)

    assert landed.error is None and batch_log(store)["raters"].to_list() == ["crowd"]
    write_annotations(store)
    ratings = store.read_table(Table.ANNOTATIONS)
    assert ratings["raters"].to_list() == ["crowd"] * 3
    assert rating_sources(ratings).to_dicts() == [{"raters": "crowd", "batches": 1, "annotators": 2, "ratings": 3}]


def test_batches_logged_before_raters_were_recorded_read_as_expert(tmp_path):
    """The log row and the batch file both from before `raters`: the annotations table writes the file again with
    the default."""
    store = Store(str(tmp_path / "root"))
    _, sha, _ = land_file(store, PREFIX, "panel.csv", RATINGS, BatchDeclaration(collection="sample", raters="crowd"))
    import_landed_batch(store, PREFIX, sha, load_taxonomy(), max_bytes=1 << 20)
    store.write_table(Table.ANNOTATION_BATCH_LOG, batch_log(store).drop("raters"), sha)
    accepted = store.read_table(Table.ANNOTATION_BATCHES).drop("raters")
    store.write_table(Table.ANNOTATION_BATCHES, accepted, sha)

    assert batch_log(store)["raters"].to_list() == ["expert"]
    write_annotations(store)
    ratings = store.read_table(Table.ANNOTATIONS)
    assert ratings.equals(accepted.with_columns(raters=pl.lit("expert"))) and ratings.height == 3
    assert rating_sources(ratings.drop("raters"))["raters"].to_list() == ["expert"]


def test_a_batch_file_from_before_raters_takes_them_from_its_log_row(tmp_path):
    store = Store(str(tmp_path / "root"))
    _, sha, _ = land_file(store, PREFIX, "crowd.csv", RATINGS, BatchDeclaration(collection="sample", raters="crowd"))
    import_landed_batch(store, PREFIX, sha, load_taxonomy(), max_bytes=1 << 20)
    accepted = store.read_table(Table.ANNOTATION_BATCHES)
    store.write_table(Table.ANNOTATION_BATCHES, accepted.drop("raters"), sha)

    write_annotations(store, {"threads": 1})
    assert store.read_table(Table.ANNOTATIONS).equals(accepted)
    assert accepted["raters"].to_list() == ["crowd"] * 3


def _imported(store: Store, name: str, data: bytes) -> dict:
    _, sha, _ = land_file(store, PREFIX, name, data, BatchDeclaration(collection="sample"))
    return import_landed_batch(store, PREFIX, sha, load_taxonomy(), max_bytes=1 << 20).log


def test_a_new_batch_adds_its_file_and_a_batch_no_longer_imported_loses_its_own(tmp_path):
    """Files already in the table are left as they are; the one-file table of earlier versions goes too."""
    store = Store(str(tmp_path / "root"))
    store.write_table(Table.ANNOTATIONS, pl.DataFrame({"batch_id": ["from an earlier version"]}))
    first = _imported(store, "a.csv", RATINGS)
    write_annotations(store)
    [kept] = store.table_partitions(Table.ANNOTATIONS)
    assert kept == f"{first['imported_at']:%Y%m%dT%H%M%S%fZ}-{first['batch_id']}"
    kept_file = tmp_path / "root" / store.table_path(Table.ANNOTATIONS, kept)
    written = kept_file.stat().st_mtime_ns

    second = _imported(store, "b.csv", RATINGS.replace(b",ann,", b",cid,").replace(b",bea,", b",dan,"))
    assert write_annotations(store).rows == 6
    assert store.table_partitions(Table.ANNOTATIONS)[0] == kept and kept_file.stat().st_mtime_ns == written
    batches = store.read_table(Table.ANNOTATIONS)["batch_id"].unique(maintain_order=True)
    assert batches.to_list() == [first["batch_id"], second["batch_id"]]

    log = store.read_table(Table.ANNOTATION_BATCH_LOG, [second["batch_id"]])
    store.write_table(Table.ANNOTATION_BATCH_LOG, log.with_columns(status=pl.lit("rejected")), second["batch_id"])
    assert write_annotations(store).rows == 3
    assert store.table_partitions(Table.ANNOTATIONS) == [kept]


def test_the_annotations_table_on_s3_copies_batch_files_and_rewrites_one_from_before_raters(moto_s3):
    store = Store(f"s3://{moto_s3.bucket}/annotations", moto_s3.storage_options)
    _imported(store, "a.csv", RATINGS)
    older = _imported(store, "b.csv", RATINGS.replace(b",ann,", b",cid,").replace(b",bea,", b",dan,"))
    accepted = store.read_table(Table.ANNOTATION_BATCHES, [older["batch_id"]])
    store.write_table(Table.ANNOTATION_BATCHES, accepted.drop("raters"), older["batch_id"])
    expected, _ = _collected_in_polars(store)

    collected = write_annotations(store, {"threads": 1})
    assert store.read_table(Table.ANNOTATIONS).equals(expected) and collected.rows == expected.height == 6
    assert expected["raters"].to_list() == ["expert"] * 6


def _collected_in_polars(store):
    """The annotations asset as it was: every imported batch read whole into polars and sorted there (stably, the
    order the DuckDB path makes total), and the external images grouped from that frame."""
    log = batch_log(store)
    imported = log.filter(pl.col("status") == "imported")["batch_id"].to_list()
    batches = [store.read_table(Table.ANNOTATION_BATCHES, [batch]).drop("raters", strict=False) for batch in imported]
    ratings = pl.concat(batches).sort("imported_at", "batch_id", "source_row", maintain_order=True)
    ratings = ratings.join(log.select("batch_id", "raters"), on="batch_id", how="left", maintain_order="left")
    external = (
        ratings.filter(pl.col("collection") != "generated")
        .group_by("collection", "image_id", maintain_order=True)
        .agg(pl.col("image_ref").first(), pl.col("batch_id").first().alias("first_batch_id"), pl.len().alias("ratings"))
    )
    return ratings, external


def test_annotations_written_by_duckdb_equal_the_polars_path(tmp_path):
    """Three batches (two collections, hq rows of several ratings each, a rejected file), landed out of order."""
    store = Store(str(tmp_path / "root"))
    hq = (
        b"image,annotator,human,annotations\n"
        b"00003,h1,True,\"{'Elation': 3, 'Amusement': 1, 'Anger': 0}\"\n"
        b"00001,h2,True,\"{'Elation': 2, 'Contentment': 0}\"\n"
    )
    files = [
        ("hq.csv", hq, "sample"),
        ("long.csv", RATINGS, "sample"),
        ("other.csv", RATINGS.replace(b",ann,", b",cid,"), "other"),
        ("broken.csv", b"not,a\nrating", "sample"),
    ]
    for name, data, collection in files:
        _, sha, _ = land_file(store, PREFIX, name, data, BatchDeclaration(collection=collection))
        import_landed_batch(store, PREFIX, sha, load_taxonomy(), max_bytes=1 << 20)
    expected, external = _collected_in_polars(store)

    collected = write_annotations(store, {"threads": 2, "memory_limit": "500MB"}, preview_rows=4)

    written = store.read_table(Table.ANNOTATIONS)
    assert written.schema == pl.Schema({**ACCEPTED_SCHEMA, "raters": pl.String})
    assert written.equals(expected) and collected.rows == expected.height == 11
    assert collected.head.rows() == expected.head(4).rows()
    assert collected.external.equals(external) and external.height == 5
    assert collected.per_collection.rows() == [("other", "intensity", 3, 2, 2), ("sample", "intensity", 8, 3, 4)]


def test_a_batch_is_written_in_source_order_whatever_order_its_units_come_in():
    """The annotations table scans the batch files in turn, so each file must be in source order already: units
    handed over backwards are written as if read forwards."""
    hq = (
        b"image,annotator,human,annotations\n"
        b"00003,h1,True,\"{'Elation': 3, 'Amusement': 1, 'Anger': 0}\"\n"
        b"00001,h2,True,\"{'Elation': 2, 'Contentment': 0}\"\n"
    )
    parsed = parse_annotation_file("hq.csv", hq)

    def accepted(units):
        return import_batch(replace(parsed, units=units), "b", load_taxonomy(), ImageIndex(refs={}), "sample").accepted

    backwards, forwards = accepted(parsed.units.reverse()), accepted(parsed.units)
    assert backwards["source_row"].to_list() == [1, 2, 3, 4, 5]
    assert backwards.equals(forwards) and backwards.height == 5


def test_duplicates_of_earlier_batches_found_by_duckdb_equal_the_whole_read(tmp_path):
    """The old lookup read every other batch's keys into polars; the first batch by id names a duplicate; a batch
    with no image in common (left out of the key join) changes nothing."""
    store = Store(str(tmp_path / "root"))
    taxonomy = load_taxonomy()
    overlapping = [
        RATINGS,
        RATINGS + b"00003,ann,2,Elation\n",
        b"path,annotator,value,emotion\n00003,ann,5,Elation\n00002,bea,1,Elation\n00004,bea,1,Anger\n",
        b"path,annotator,value,emotion\n00009,ann,3,Elation\n",  # no image in common
    ]
    for number, data in enumerate(overlapping):
        _, sha, _ = land_file(store, PREFIX, f"b{number}.csv", data, BatchDeclaration(collection="sample"))
        import_landed_batch(store, PREFIX, sha, taxonomy, max_bytes=1 << 20)
    whole = store.read_table(Table.ANNOTATION_BATCHES).select("image_id", "annotator", "emotion_id", "batch_id")
    parsed = parse_annotation_file("again.csv", overlapping[2] + b"00001,ann,3,Elation\n00005,cid,2,Anger\n")

    def imported(earlier):
        return import_batch(parsed, "again", taxonomy, ImageIndex(refs={}), "sample", earlier)

    ours, expected = imported(earlier_keys(store, "again", {"threads": 1})), imported(whole)
    assert ours.accepted.equals(expected.accepted) and ours.rejects.equals(expected.rejects)
    assert expected.counts["rejected"] == 4 and expected.counts["accepted"] == 1
    assert set(expected.rejects["reason"]) == {"duplicate_of_earlier_batch"}
    assert expected.rejects["detail"].n_unique() == 3  # three earlier batches, each named
