"""Who rated a batch: declared with the file, recorded in the batch log, carried by every rating."""

from emonet_assets.lib.annotation.annotation_batches import (
    batch_log,
    collect_annotations,
    import_landed_batch,
    rating_sources,
)
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
    ratings, _ = collect_annotations(store)
    assert ratings["raters"].to_list() == ["crowd"] * 3
    assert rating_sources(ratings).to_dicts() == [{"raters": "crowd", "batches": 1, "annotators": 2, "ratings": 3}]


def test_batches_logged_before_raters_were_recorded_read_as_expert(tmp_path):
    store = Store(str(tmp_path / "root"))
    _, sha, _ = land_file(store, PREFIX, "panel.csv", RATINGS, BatchDeclaration(collection="sample"))
    import_landed_batch(store, PREFIX, sha, load_taxonomy(), max_bytes=1 << 20)
    store.write_table(Table.ANNOTATION_BATCH_LOG, batch_log(store).drop("raters"), sha)

    assert batch_log(store)["raters"].to_list() == ["expert"]
    ratings, _ = collect_annotations(store)
    assert set(ratings["raters"]) == {"expert"}
    assert rating_sources(ratings.drop("raters"))["raters"].to_list() == ["expert"]
