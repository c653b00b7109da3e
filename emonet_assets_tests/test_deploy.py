"""deploy/dagster.yaml for real: the tiny pipeline against a PostgreSQL cluster on 127.0.0.1, its storage root and
step logs on S3 (moto), and a clear error when Postgres cannot be reached."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml

from emonet_assets.lib.shared import catalog
from emonet_assets.lib.shared.storage import Store
from emonet_assets_tests.conftest import S3_TEST_KEY, S3_TEST_REGION, S3_TEST_SECRET, small_profile_file
from emonet_assets_tests.local_servers import free_port, postgres_bin, postgres_server

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EMONET = Path(sys.executable).parent / "emonet"


@pytest.fixture(scope="module")
def postgres():
    bin_dir = postgres_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: `make test` installs Debian's postgresql package")
        pytest.skip("PostgreSQL is not installed (`make test-tools` installs it)")
    with postgres_server(bin_dir) as server:
        yield server


def _deployment(tmp_path: Path, moto_s3, postgres_env: dict) -> dict:
    home = tmp_path / "home"
    home.mkdir()
    settings = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    # Step logs are staged in a folder per run before they reach S3: under /tmp unless told, kept after the test.
    settings["compute_logs"]["config"]["local_dir"] = str(tmp_path / "compute-log-staging")
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMONET_", "DAGSTER_", "AWS_"))}
    return (
        env
        | postgres_env
        | {
            "DAGSTER_HOME": str(home),
            "DAGSTER_COMPUTE_LOG_BUCKET": moto_s3.bucket,
            "DAGSTER_S3_ENDPOINT_URL": moto_s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": S3_TEST_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_TEST_SECRET,
            "AWS_DEFAULT_REGION": S3_TEST_REGION,
            "EMONET_ROOT": str(tmp_path / "root"),
            "no_proxy": "*",
        }
    )


def test_the_pipeline_on_an_s3_root_records_its_runs_in_postgres_and_step_logs_in_s3(
    postgres, moto_s3, tmp_path, monkeypatch
):
    """`emonet demo` as a deployment runs it: runs, events and schedules in PostgreSQL, step logs and the whole
    storage root on S3 (80 images of the tiny design, so it stays quick), and the local catalog reading that root."""
    env = _deployment(tmp_path, moto_s3, postgres.env())
    root = f"s3://{moto_s3.bucket}/graph"
    env |= {
        "EMONET_ROOT": root,
        "EMONET_CATALOG": str(tmp_path / "catalog.duckdb"),
        "EMONET_S3_ENDPOINT_URL": moto_s3.endpoint_url,
        "EMONET_PROFILE": str(small_profile_file(tmp_path, total=80)),
    }
    demo = subprocess.run([EMONET, "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    steps = [line for line in demo.stdout.splitlines() if line.startswith("  ok ")]

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        runs = instance.get_runs()
        assert len(runs) == len(steps) and all(run.is_success for run in runs)
        fairness = instance.get_latest_materialization_event(dg.AssetKey("fairness_report"))
        assert fairness is not None and fairness.run_id in {run.run_id for run in runs}
    logs = moto_s3.keys("dagster-compute-logs/")
    assert any(key.endswith(".out") or key.endswith(".err") for key in logs), logs[:5]

    import psycopg2

    with psycopg2.connect(host=postgres.host, port=postgres.port, user=postgres.user, dbname=postgres.database) as con:
        cursor = con.cursor()
        cursor.execute("select count(*) from runs")
        assert cursor.fetchone()[0] == len(steps)

    _assert_the_graph_is_on_s3(moto_s3, root, tmp_path / "catalog.duckdb")


def _assert_the_graph_is_on_s3(moto_s3, root: str, catalog_path: Path) -> None:
    tables = moto_s3.keys("graph/tables/")
    unpartitioned = (
        "design_cells",
        "emotion_rollups",
        "image_qc",
        "prompt_design",
        "prompt_shards",
        "taxonomy",
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
    batches = sorted(k.rsplit("/", 1)[1] for k in tables if k.startswith("graph/tables/annotation_batches/"))
    annotations = [k.rsplit("/", 1)[1] for k in tables if k.startswith("graph/tables/annotations/")]
    assert len(batches) == 5
    assert sorted(name.split("-", 1)[1] for name in annotations) == batches, "one file per imported batch"
    images = moto_s3.keys("graph/images/")
    assert len(images) == 80 and all(k.endswith(".png") for k in images)
    assert moto_s3.keys("graph/reports/contact_sheets/")
    assert moto_s3.keys("graph/releases/")
    con = catalog.connect(str(catalog_path), Store(root, moto_s3.storage_options), read_only=True)
    try:
        assert con.execute("select count(*) from prompt_design").fetchone() == (80,)
        assert con.execute("select count(distinct emotion_id) from prompt_design").fetchone() == (40,)
        joined = "select count(*) from generated_images g join image_qc q using (prompt_id) where q.passed"
        assert con.execute(joined).fetchone() == (80,)
        rated = "select count(distinct image_id) from consensus_labels where collection = 'generated'"
        assert con.execute(rated).fetchone() == (80,)
    finally:
        con.close()


def test_postgres_that_cannot_be_reached_is_a_clear_error_naming_the_settings(moto_s3, tmp_path):
    unreachable = {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(free_port()),
        "DAGSTER_PG_USERNAME": "dagster",
        "DAGSTER_PG_PASSWORD": "unused",
        "DAGSTER_PG_DB": "dagster",
    }
    env = _deployment(tmp_path, moto_s3, unreachable)
    # `status` reads the storage root alone; `generate` opens the instance first.
    command = [EMONET, "generate", "--missing"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"Error: cannot reach the Postgres storage that {env['DAGSTER_HOME']}/dagster.yaml")
    assert f"storage.postgres.postgres_db.port: DAGSTER_PG_PORT={unreachable['DAGSTER_PG_PORT']}" in error
    assert "Traceback" not in result.stderr


def test_compose_file_is_valid_and_every_service_gets_the_instance_settings():
    compose = shutil.which("docker-compose")
    if compose is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed: `make test` installs Debian's docker-compose package")
        pytest.skip("docker-compose is not installed (`make test-tools` installs it)")
    checked = subprocess.run(
        [compose, "-f", "deploy/docker-compose.yml", "config"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    services = yaml.safe_load(checked.stdout)["services"]
    assert {"postgres", "minio", "buckets", "code", "webserver", "daemon"} <= set(services)
    assert services["webserver"]["ports"] == ["127.0.0.1:3000:3000/tcp"], "the UI is not published beyond loopback"

    needed = set(re.findall(r"env: (\w+)", (REPO / "deploy" / "dagster.yaml").read_text()))
    assert {"DAGSTER_PG_HOST", "DAGSTER_COMPUTE_LOG_BUCKET"} <= needed
    for name in ("code", "webserver", "daemon"):
        assert needed <= set(services[name]["environment"]), name


def test_dockerfile_copies_what_exists_and_serves_the_projects_code_location():
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source
    torch, locked = dockerfile.index("pip install torch==2.13.0"), dockerfile.index("pip install -c constraints.txt")
    assert torch < locked and "torch==2.13.0" in (REPO / "constraints.txt").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]["project"]
    assert f'"-m", "{project["root_module"]}.definitions"' in dockerfile
    served = yaml.safe_load((REPO / "deploy" / "workspace.compose.yaml").read_text())["load_from"][0]["grpc_server"]
    assert served["location_name"] == project["code_location_name"] and f'"-p", "{served["port"]}"' in dockerfile
