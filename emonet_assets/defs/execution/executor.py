"""How steps run on Kubernetes (deploy/helm): one Job per step, and `gpu` steps on GPU nodes.

Both are read from the code location's environment, which the Helm values set, so one image serves a laptop,
docker-compose and a cluster.
"""

import json
import os

import dagster as dg
import yaml

EXECUTOR_VAR = "EMONET_EXECUTOR"
GPU_STEP_CONFIG_VAR = "EMONET_GPU_STEP_K8S_CONFIG"
CATALOG_STEP_CONFIG_VAR = "EMONET_CATALOG_STEP_K8S_CONFIG"

# dagster-k8s's op tag for a step's Job (its USER_DEFINED_K8S_CONFIG_KEY), named here: importing dagster-k8s imports
# the Kubernetes client, 0.7 s in every process that loads the definitions, which only a cluster deployment needs.
K8S_CONFIG_TAG = "dagster-k8s/config"

# The NVIDIA device plugin's conventions: GPU nodes carry this taint and advertise this resource.
DEFAULT_GPU_STEP_CONFIG = {
    "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
    "pod_spec_config": {
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
}


def gpu_step_tags() -> dict[str, str]:
    """Op tags that put a `gpu` step's Job on a GPU node; `EMONET_GPU_STEP_K8S_CONFIG` (YAML) replaces the default."""
    return _step_tags(GPU_STEP_CONFIG_VAR, DEFAULT_GPU_STEP_CONFIG)


def catalog_step_tags() -> dict[str, str]:
    """Op tags that give the consensus step's Job (dbt on DuckDB, the step that needs the most memory and local
    spill disk) its resources from `EMONET_CATALOG_STEP_K8S_CONFIG` (YAML); unset, none: it runs as any step."""
    return _step_tags(CATALOG_STEP_CONFIG_VAR, None)


def _step_tags(variable: str, default: dict | None) -> dict[str, str]:
    """The step config from `variable`, checked by dagster-k8s, else `default` (whose check is a test)."""
    raw = os.environ.get(variable)
    try:
        config = yaml.safe_load(raw) if raw else default
    except yaml.YAMLError as error:
        raise ValueError(f"{variable} is not YAML: {error}") from error
    if config is None:
        return {}
    tags = {K8S_CONFIG_TAG: json.dumps(config, sort_keys=True)}
    if raw:
        from dagster_k8s.job import get_user_defined_k8s_config

        try:
            get_user_defined_k8s_config(tags)
        except dg.DagsterInvalidConfigError as error:
            raise ValueError(f"{variable} is not a dagster-k8s step config: {error}") from error
    return tags


# Step processes fork from a server that has already imported the code location: a spawned step process would
# import Dagster, dagster-dbt and the definitions again (about 12 s on 2 cores) before its first line.
FORKED_STEP_CONFIG = {
    "start_method": {"forkserver": {"preload_modules": ["emonet_assets.definitions"]}},
    "retries": {"enabled": {}},
}


class ForkedOrInRunExecutor(dg.Executor):
    """Dagster's multiprocess executor for a plan of several asset steps, its in-process executor for a plan of one
    and its checks (a shard's generation, a batch's import): the run's own process has loaded the code location
    already, and a forkserver would load it a second time with nothing to run beside that step."""

    def __init__(self, multiprocess: dg.Executor, in_process: dg.Executor):
        self._multiprocess, self._in_process = multiprocess, in_process

    @property
    def retries(self):
        return self._multiprocess.retries

    @property
    def step_dependency_config(self):
        return self._multiprocess.step_dependency_config

    def execute(self, plan_context, execution_plan):
        layer = plan_context.job.get_definition().asset_layer
        steps_besides_checks = [
            key
            for key in execution_plan.step_keys_to_execute
            if not _checks_only(
                layer.get_selected_entity_keys_for_node(execution_plan.get_step_by_key(key).node_handle)
            )
        ]
        executor = self._in_process if len(steps_besides_checks) <= 1 else self._multiprocess
        return executor.execute(plan_context, execution_plan)


def _checks_only(keys) -> bool:
    """A step that only evaluates asset checks: reads of what its asset's step wrote, nothing to run in parallel."""
    return bool(keys) and all(isinstance(key, dg.AssetCheckKey) for key in keys)


@dg.executor(name="forked_step_executor", requirements=dg.multiple_process_executor_requirements())
def forked_step_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Steps forked from a preloaded server, or a single step in the run's process."""

    def create(definition: dg.ExecutorDefinition, config: dict) -> dg.Executor:
        context = dg.InitExecutorContext(init_context.job, definition, config, init_context.instance)
        return definition.executor_creation_fn(context)

    return ForkedOrInRunExecutor(
        create(dg.multiprocess_executor, FORKED_STEP_CONFIG),
        create(dg.in_process_executor, {"retries": FORKED_STEP_CONFIG["retries"]}),
    )


def step_executor() -> dg.ExecutorDefinition:
    """The Kubernetes per-step executor when `EMONET_EXECUTOR=k8s`, else `forked_step_executor`."""
    choice = os.environ.get(EXECUTOR_VAR, "multiprocess")
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if choice == "multiprocess":
        return forked_step_executor
    raise ValueError(f"{EXECUTOR_VAR}={choice!r}: expected 'multiprocess' or 'k8s'")


@dg.definitions
def executor() -> dg.Definitions:
    """The code location's executor, chosen when the definitions load."""
    return dg.Definitions(executor=step_executor())
