"""Run in a fresh process (op tags are read at import): the Kubernetes Job that dagster-k8s would build for
each step under the current environment, as JSON, for test_helm."""

import json

from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

from emonet_assets.definitions import defs


def _pod(tags) -> dict:
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image="emonet-face:test", dagster_home="/opt/dagster/dagster_home"),
        args=["dagster", "api", "execute_step"],
        job_name="step",
        user_defined_k8s_config=get_user_defined_k8s_config(tags),
    )
    spec = job.spec.template.spec
    limits = spec.containers[0].resources.limits if spec.containers[0].resources else None
    tolerations = [t.to_dict() for t in spec.tolerations] if spec.tolerations else None
    return {"node_selector": spec.node_selector, "tolerations": tolerations, "limits": limits}


def main() -> None:
    definitions = defs()
    jobs = {"__ASSET_JOB": definitions.resolve_implicit_global_asset_job_def()}
    jobs["weekly_refresh_job"] = definitions.resolve_job_def("weekly_refresh_job")
    ops = {node.name: node for node in jobs["__ASSET_JOB"].graph.node_defs}
    print(
        json.dumps(
            {
                "executors": {name: job.executor_def.name for name, job in jobs.items()},
                "gpu_steps": {name: _pod(op.tags) for name, op in ops.items() if op.pool == "gpu"},
                "cpu_step": _pod(ops["fairness_report"].tags),
            }
        )
    )


if __name__ == "__main__":
    main()
