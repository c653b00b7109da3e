"""The whole graph on an s3:// storage root, against a moto server on 127.0.0.1."""

import dagster as dg
import pytest

from emonet_assets.definitions import build_definitions
from emonet_assets.lib.annotation.demo_panel import land_demo_panel
from emonet_assets.lib.shared import catalog
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy
from emonet_assets.runner import materialize_all, run_sensor
from emonet_assets_tests.defs.conftest import tiny_profile

pytestmark = pytest.mark.slow


def test_graph_materializes_on_s3_and_the_catalog_reads_it(moto_s3, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("EMONET_S3_ENDPOINT_URL", moto_s3.endpoint_url)
    root = f"s3://{moto_s3.bucket}/graph"
    profile = tiny_profile(root, total=80)
    profile = profile.model_copy(
        update={"storage": profile.storage.model_copy(update={"catalog": str(tmp_path / "catalog.duckdb")})}
    )

    defs, instance = build_definitions(profile), dg.DagsterInstance.ephemeral()
    store = Store(root, {"endpoint_url": moto_s3.endpoint_url})

    def import_panel():
        land_demo_panel(store, profile.annotation.landing, load_taxonomy(), defs.resources["embedder"].embedder())
        return run_sensor(defs, instance, "annotation_landing_sensor")

    # No Label Studio here: its push is left out, as the demo leaves it out (test_label_studio pushes to one).
    handlers = {dg.AssetKey("annotation_batches"): import_panel, Table.LABEL_STUDIO_TASKS.key: list}
    reports = materialize_all(defs, instance, handlers=handlers)

    assert all(r.success for r in reports), [r.error for r in reports]
    tables = moto_s3.keys("graph/tables/")
    unpartitioned = (
        "design_cells",
        "emotion_rollups",
        "image_qc",
        "prompt_design",
        "prompt_shards",
        "taxonomy",
        "annotations",
        "external_images",
        "consensus_labels",
        "emotion_agreement",
        "annotator_quality",
        "reannotation_queue",
        "dawid_skene_consensus",
    )
    assert {f"graph/tables/{t}/all.parquet" for t in unpartitioned} <= set(tables)
    assert [k for k in tables if k.startswith("graph/tables/generated_images/")] == [
        f"graph/tables/generated_images/shard-0000{i}.parquet" for i in range(5)
    ]
    assert len([k for k in tables if k.startswith("graph/tables/annotation_batches/")]) == 5
    images = moto_s3.keys("graph/images/")
    assert len(images) == 80 and all(k.endswith(".png") for k in images)
    assert moto_s3.keys("graph/reports/contact_sheets/")
    con = catalog.connect(profile.catalog_path, store, read_only=True)
    try:
        assert con.execute("select count(*) from prompt_design").fetchone() == (80,)
        assert con.execute("select count(distinct emotion_id) from prompt_design").fetchone() == (40,)
        joined = "select count(*) from generated_images g join image_qc q using (prompt_id) where q.passed"
        assert con.execute(joined).fetchone() == (80,)
        rated = "select count(distinct image_id) from consensus_labels where collection = 'generated'"
        assert con.execute(rated).fetchone() == (80,)
    finally:
        con.close()
