"""The whole graph on an s3:// storage root, against a moto server on 127.0.0.1."""

import dagster as dg

from emonet_assets.definitions import build_definitions
from emonet_assets.lib import catalog
from emonet_assets.lib.storage import Store
from emonet_assets.runner import materialize_all
from emonet_assets_tests.defs.conftest import tiny_profile


def test_graph_materializes_on_s3_and_the_catalog_reads_it(moto_s3, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("EMONET_S3_ENDPOINT_URL", moto_s3.endpoint_url)
    root = f"s3://{moto_s3.bucket}/graph"
    profile = tiny_profile(root)
    profile = profile.model_copy(
        update={"storage": profile.storage.model_copy(update={"catalog": str(tmp_path / "catalog.duckdb")})}
    )

    reports = materialize_all(build_definitions(profile), dg.DagsterInstance.ephemeral())

    assert all(r.success for r in reports), [r.error for r in reports]
    tables = moto_s3.keys("graph/tables/")
    assert tables == sorted(
        [
            f"graph/tables/{t}/all.parquet"
            for t in ("design_cells", "emotion_rollups", "image_qc", "prompt_design", "prompt_shards", "taxonomy")
        ]
        + [f"graph/tables/generated_images/shard-0000{i}.parquet" for i in range(5)]
    )
    images = moto_s3.keys("graph/images/")
    assert len(images) == 80 and all(k.endswith(".png") for k in images)
    assert moto_s3.keys("graph/reports/contact_sheets/")
    store = Store(root, {"endpoint_url": moto_s3.endpoint_url})
    con = catalog.connect(profile.catalog_path, store, read_only=True)
    try:
        assert con.execute("select count(*) from prompt_design").fetchone() == (80,)
        assert con.execute("select count(distinct emotion_id) from prompt_design").fetchone() == (40,)
        joined = "select count(*) from generated_images g join image_qc q using (prompt_id) where q.passed"
        assert con.execute(joined).fetchone() == (80,)
    finally:
        con.close()
