"""deploy/helm/values.yaml: Helm parses it, the instance settings it gives the official chart are valid Dagster
config, and with its environment the code runs each step as a Kubernetes Job with `gpu` steps on GPU nodes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config_schema
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import USER_DEFINED_K8S_CONFIG_KEY, get_user_defined_k8s_config

from emonet_assets.defs.execution.executor import (
    EXECUTOR_VAR,
    GPU_STEP_CONFIG_VAR,
    K8S_CONFIG_TAG,
    forked_step_executor,
    gpu_step_tags,
    step_executor,
)

REPO = Path(__file__).resolve().parents[1]
VALUES = REPO / "deploy" / "helm" / "values.yaml"
HELM = Path(sys.executable).parent / "helm"

# Prints the values Helm resolved, so a test sees exactly what any chart's templates would receive.
ECHO_CHART = {
    "Chart.yaml": "apiVersion: v2\nname: values-echo\nversion: 0.1.0\n",
    "templates/values.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: values\ndata:\n"
    "  values.json: {{ toJson .Values | quote }}\n",
}


def _values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def _helm_template(values_file: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    helm = shutil.which("helm") or str(HELM)
    chart = tmp_path / "values-echo"
    for name, text in ECHO_CHART.items():
        (chart / name).parent.mkdir(parents=True, exist_ok=True)
        (chart / name).write_text(text)
    env = os.environ | {"HELM_CACHE_HOME": str(tmp_path / "cache"), "HELM_CONFIG_HOME": str(tmp_path / "config")}
    return subprocess.run(
        [helm, "template", "emonet", str(chart), "-f", str(values_file)], capture_output=True, text=True, env=env
    )


def _deployment_env() -> dict[str, str]:
    (deployment,) = _values()["dagster-user-deployments"]["deployments"]
    return {item["name"]: item["value"] for item in deployment["env"]}


def test_helm_parses_the_values_file_to_what_yaml_reads(tmp_path):
    rendered = _helm_template(VALUES, tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    values = json.loads(yaml.safe_load(rendered.stdout)["data"]["values.json"])
    assert values == _values()

    broken = tmp_path / "broken.yaml"
    broken.write_text(VALUES.read_text().replace("  type: K8sRunLauncher", "  type: K8sRunLauncher\n\t bad: tab"))
    refused = _helm_template(broken, tmp_path)
    assert refused.returncode != 0
    assert "broken.yaml" in refused.stderr


def test_the_chart_gets_a_k8s_run_launcher_queued_runs_pools_and_s3_step_logs_dagster_accepts():
    values = _values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    # As the chart's instance ConfigMap renders them (camelCase values to the launcher's snake_case config).
    launcher_config = {
        "instance_config_map": "emonet-dagster-instance",
        "dagster_home": values["global"]["dagsterHome"],
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        "image_pull_policy": launcher["imagePullPolicy"],
        "load_incluster_config": launcher["loadInclusterConfig"],
        "env_secrets": [secret["name"] for secret in launcher["envSecrets"]],
        "run_k8s_config": {"container_config": launcher["runK8sConfig"]["containerConfig"]},
    }
    assert validate_config(K8sRunLauncher.config_type(), launcher_config).success

    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    coordinator_config = {
        "max_concurrent_runs": queued["maxConcurrentRuns"],
        "tag_concurrency_limits": queued["tagConcurrencyLimits"],
    }
    assert validate_config(QueuedRunCoordinator.config_type(), coordinator_config).success
    assert {"key": "dagster/backfill", "limit": 4} in queued["tagConcurrencyLimits"]

    assert values["computeLogManager"]["type"] == "S3ComputeLogManager"
    s3_logs = values["computeLogManager"]["config"]["s3ComputeLogManager"]
    logs_config = {
        "bucket": s3_logs["bucket"],
        "prefix": s3_logs["prefix"],
        "upload_interval": s3_logs["uploadInterval"],
    }
    assert validate_config(S3ComputeLogManager.config_type(), logs_config).success

    extra = values["additionalInstanceConfig"]
    assert validate_config(dagster_instance_config_schema(), extra).success
    assert extra["concurrency"]["pools"] == {"granularity": "op", "default_limit": 1}

    postgres = values["postgresql"]
    assert postgres["enabled"] is False and postgres["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["dagster-user-deployments"]["deployments"][0]["includeConfigInLaunchedRuns"]["enabled"]


def test_each_step_is_a_kubernetes_job_and_gpu_steps_go_to_gpu_nodes():
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMONET_")}
    env |= {name: _deployment_env()[name] for name in (EXECUTOR_VAR, GPU_STEP_CONFIG_VAR)}
    probe = subprocess.run(
        [sys.executable, "-m", "emonet_assets_tests.k8s_step_jobs"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout)

    assert report["executors"] == {"__ASSET_JOB": "k8s", "weekly_refresh_job": "k8s"}
    assert sorted(report["gpu_steps"]) == ["emotion_model", "generated_images", "image_embeddings"]
    expected = yaml.safe_load(_deployment_env()[GPU_STEP_CONFIG_VAR])
    for step, pod in report["gpu_steps"].items():
        assert pod["node_selector"] == expected["pod_spec_config"]["node_selector"], step
        toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        assert pod["tolerations"] == [toleration | {"toleration_seconds": None, "value": None}], step
        assert pod["limits"]["nvidia.com/gpu"] == "1", step
    assert report["cpu_step"] == {"node_selector": None, "tolerations": None, "limits": None}


def test_without_the_variables_steps_keep_the_multiprocess_executor_and_gpu_steps_ask_for_one_gpu(monkeypatch):
    monkeypatch.delenv(EXECUTOR_VAR, raising=False)
    monkeypatch.delenv(GPU_STEP_CONFIG_VAR, raising=False)
    assert step_executor() is forked_step_executor
    config = json.loads(gpu_step_tags()["dagster-k8s/config"])
    assert config["container_config"]["resources"]["limits"] == {"nvidia.com/gpu": "1"}


def test_the_default_gpu_step_config_is_a_dagster_k8s_step_config_under_its_tag(monkeypatch):
    """The default is not checked as the definitions load (that would import the Kubernetes client): here it is."""
    monkeypatch.delenv(GPU_STEP_CONFIG_VAR, raising=False)
    assert K8S_CONFIG_TAG == USER_DEFINED_K8S_CONFIG_KEY
    checked = get_user_defined_k8s_config(gpu_step_tags())
    assert checked.container_config["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert checked.pod_spec_config["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_a_wrong_executor_or_step_config_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv(EXECUTOR_VAR, "celery")
    with pytest.raises(ValueError, match="EMONET_EXECUTOR='celery'"):
        step_executor()
    monkeypatch.setenv(GPU_STEP_CONFIG_VAR, "pod_spec:\n  node_selector: {gpu: a100}\n")
    with pytest.raises(ValueError, match="EMONET_GPU_STEP_K8S_CONFIG is not a dagster-k8s step config"):
        gpu_step_tags()
    monkeypatch.setenv(GPU_STEP_CONFIG_VAR, "pod_spec_config: [unclosed")
    with pytest.raises(ValueError, match="EMONET_GPU_STEP_K8S_CONFIG is not YAML"):
        gpu_step_tags()


@dg.op
def step_process(after=None) -> dict:
    return {"process": os.getpid(), "definitions_preloaded": "emonet_assets.definitions" in sys.modules}


@dg.job(executor_def=forked_step_executor)
def two_forked_steps():
    step_process.alias("second")(step_process.alias("first")())


@dg.job(executor_def=forked_step_executor)
def one_step():
    step_process()


def test_steps_are_forked_from_a_server_that_preloaded_the_definitions(tmp_path):
    """Not spawned by the run's process (which would import everything again for each step): each step in a process
    of its own, forked from one server that imported the definitions before any step."""
    with (
        dg.instance_for_test(temp_dir=str(tmp_path)) as instance,
        dg.execute_job(dg.reconstructable(two_forked_steps), instance=instance) as result,
    ):
        assert result.success
        first, second = result.output_for_node("first"), result.output_for_node("second")
        engine = [event.message for event in result.all_events if event.event_type_value == "ENGINE_EVENT"]
    assert len({first["process"], second["process"], os.getpid()}) == 3
    assert first["definitions_preloaded"] and second["definitions_preloaded"]
    assert any("Executing steps using multiprocess executor" in (message or "") for message in engine), engine


def test_a_run_of_one_step_runs_it_in_the_runs_own_process(tmp_path):
    """A step process would load the code location a second time with nothing to run beside it."""
    with (
        dg.instance_for_test(temp_dir=str(tmp_path)) as instance,
        dg.execute_job(dg.reconstructable(one_step), instance=instance) as result,
    ):
        assert result.success
        assert result.output_for_node("step_process")["process"] == os.getpid()


@dg.asset
def checked_asset() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"process": os.getpid()})


def _process_check(name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=checked_asset, name=name)
    def check() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True, metadata={"process": os.getpid()})

    return check


def asset_with_two_checks() -> dg.JobDefinition:
    """Built by a function, so that `reconstructable` can load it again where the executor needs it."""
    checks = [_process_check("first_check"), _process_check("second_check")]
    job = dg.define_asset_job("asset_with_two_checks", executor_def=forked_step_executor)
    return dg.Definitions(assets=[checked_asset], asset_checks=checks, jobs=[job]).resolve_job_def(job.name)


def test_an_asset_and_its_checks_run_in_the_runs_own_process(tmp_path):
    """Checks run after their asset's step and only read what it wrote: a forkserver would load the code location
    again for nothing the run's process could not do itself."""
    with (
        dg.instance_for_test(temp_dir=str(tmp_path)) as instance,
        dg.execute_job(dg.reconstructable(asset_with_two_checks), instance=instance) as result,
    ):
        assert result.success
        checks = result.get_asset_check_evaluations()
        [materialization] = result.asset_materializations_for_node("checked_asset")
    assert materialization.metadata["process"].value == os.getpid()
    assert sorted(c.check_name for c in checks) == ["first_check", "second_check"]
    assert {c.metadata["process"].value for c in checks} == {os.getpid()}


def test_the_consensus_step_gets_the_helm_values_resources_and_none_without_them(monkeypatch):
    from emonet_assets.defs.execution.executor import CATALOG_STEP_CONFIG_VAR, catalog_step_tags

    monkeypatch.setenv(CATALOG_STEP_CONFIG_VAR, _deployment_env()[CATALOG_STEP_CONFIG_VAR])
    resources = json.loads(catalog_step_tags()["dagster-k8s/config"])["container_config"]["resources"]
    assert resources["requests"] == {"cpu": "4", "memory": "10Gi", "ephemeral-storage": "50Gi"}
    assert resources["limits"]["memory"] == "12Gi"
    monkeypatch.delenv(CATALOG_STEP_CONFIG_VAR)
    assert catalog_step_tags() == {}
    monkeypatch.setenv(CATALOG_STEP_CONFIG_VAR, "pod_spec:\n  node_selector: {disk: ssd}\n")
    with pytest.raises(ValueError, match="EMONET_CATALOG_STEP_K8S_CONFIG is not a dagster-k8s step config"):
        catalog_step_tags()
