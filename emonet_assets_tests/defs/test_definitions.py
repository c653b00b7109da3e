"""The asset graph as a reviewable snapshot: a change to keys, groups, deps, partitions or checks shows as a diff.

Regenerate with EMONET_UPDATE_SNAPSHOTS=1 after an intended change.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from emonet_assets.definitions import build_definitions
from emonet_assets_tests.defs.conftest import tiny_profile

SNAPSHOT = Path(__file__).resolve().parents[1] / "snapshots" / "asset_graph.json"
REPO = Path(__file__).resolve().parents[2]


def graph_snapshot(defs) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": type(node.partitions_def).__name__ if node.partitions_def else None,
            "kinds": sorted(node.kinds),
            "pool": sorted(node.pools or ()) or None,
            "checks": sorted(f"{c.name}{' (blocking)' if graph.get(c).blocking else ''}" for c in node.check_keys),
            "has_description": bool(node.description),
        }
    return assets


def test_asset_graph_matches_snapshot(tmp_path):
    current = graph_snapshot(build_definitions(tiny_profile(tmp_path)))
    if os.environ.get("EMONET_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_every_asset_is_described_and_grouped(tmp_path):
    for key, node in graph_snapshot(build_definitions(tiny_profile(tmp_path))).items():
        assert node["has_description"], key
        assert node["group"] in {
            "taxonomy",
            "design",
            "generation",
            "annotation",
            "consensus",
            "dataset",
            "model",
            "leaderboard",
            "fairness",
            "release",
            "alerts",
        }, key


def test_sensors_schedules_and_the_executor_load_with_the_defs_folder(tmp_path, monkeypatch):
    """Nothing is listed by hand in definitions.py: the glue under defs/ (alerts, automation, execution) loads with
    the assets, and the executor follows EMONET_EXECUTOR."""
    from dagster_k8s import k8s_job_executor

    from emonet_assets.defs.execution.executor import forked_step_executor

    defs = build_definitions(tiny_profile(tmp_path))
    assert sorted(sensor.name for sensor in defs.sensors) == [
        "annotation_landing_sensor",
        "check_failure_alert_sensor",
        "default_automation_condition_sensor",
        "label_studio_pull_sensor",
        "predictions_landing_sensor",
        "run_failure_alert_sensor",
    ]
    assert sorted(schedule.name for schedule in defs.schedules) == [
        "nightly_generation_schedule",
        "weekly_refresh_schedule",
    ]
    assert defs.executor is forked_step_executor
    monkeypatch.setenv("EMONET_EXECUTOR", "k8s")
    assert build_definitions(tiny_profile(tmp_path)).executor is k8s_job_executor


def test_the_defs_folder_is_what_dagster_loads_less_the_component_type_catalogue(tmp_path):
    """`defs_folder` skips only the installed libraries' component types (rebuilt from their JSON schemas on every
    load): every definition and the component tree are the ones `dg.load_from_defs_folder` gives."""
    import dagster as dg

    from emonet_assets.definitions import defs_folder
    from emonet_assets.lib.shared.package_data import package_path

    resources = dg.Definitions(resources=build_definitions(tiny_profile(tmp_path)).resources)

    def contents(defs: dg.Definitions) -> dict:
        defs = dg.Definitions.merge(defs, resources)
        return {
            "assets": sorted(key.to_user_string() for key in defs.resolve_all_asset_keys()),
            "checks": sorted(key.to_user_string() for key in defs.resolve_asset_graph().asset_check_keys),
            "sensors": sorted(sensor.name for sensor in defs.sensors),
            "schedules": sorted(schedule.name for schedule in defs.schedules),
            "jobs": sorted(job.name for job in defs.jobs),
            "executor": defs.executor,
        }

    ours, dagsters = defs_folder(), dg.load_from_defs_folder(path_within_project=package_path())
    loaded = contents(ours)
    assert loaded == contents(dagsters)
    assert len(loaded["assets"]) > 40 and loaded["checks"]
    assert set(dagsters.metadata) - set(ours.metadata) == {"plugin_component_types_json"}
    assert ours.component_tree is not None
    assert ours.component_tree.defs_module_path == dagsters.component_tree.defs_module_path


def check_defs(tmp_path, **env) -> subprocess.CompletedProcess:
    """`dg check defs` in the repository, as `make validate` runs it (the venv activated)."""
    venv = Path(sys.prefix)
    activated = {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [venv / "bin" / "dg", "check", "defs"],
        cwd=REPO,
        env={**os.environ, **activated, "DAGSTER_HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dg_checks_the_project_definitions(tmp_path):
    result = check_defs(tmp_path, EMONET_ROOT=str(tmp_path / "root"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_unknown_profile_fails_the_code_location_with_the_valid_names(tmp_path):
    result = check_defs(tmp_path, EMONET_PROFILE="nope")
    assert result.returncode != 0
    assert "unknown profile 'nope'" in result.stdout + result.stderr
    assert "sdxl-turbo" in result.stdout + result.stderr


# Seconds each: every run and step the daemon launches, and every CLI command, loads the code location.
HEAVY_LIBRARIES = ("torch", "sklearn", "fairlearn", "crowdkit", "krippendorff", "matplotlib", "cv2", "imagehash")
HEAVY_LIBRARIES += ("datasets", "huggingface_hub", "scipy", "safetensors", "great_expectations", "diffusers")
HEAVY_LIBRARIES += ("kubernetes",)


def test_loading_the_code_location_imports_no_heavy_library(tmp_path):
    probe = (
        "import sys, json\n"
        "from emonet_assets.definitions import build_definitions\n"
        "from emonet_assets.profiles import load_profile\n"
        "build_definitions(load_profile()).get_repository_def()\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY_LIBRARIES)!r} if m in sys.modules)))\n"
    )
    env = {**os.environ, "EMONET_ROOT": str(tmp_path / "root")}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_dbt_manifest_is_stale_only_when_a_project_file_is_newer(tmp_path, monkeypatch):
    """What makes a load run `dbt parse`: an edited model, not dbt's own outputs (target/ grows with every build)."""
    import os
    import types

    from emonet_assets.defs.consensus import project

    (tmp_path / "models").mkdir()
    (tmp_path / "target").mkdir()
    model, manifest = tmp_path / "models" / "m.sql", tmp_path / "target" / "manifest.json"
    monkeypatch.setattr(project, "DBT_PROJECT_DIR", tmp_path)
    monkeypatch.setattr(project, "dbt_project", types.SimpleNamespace(manifest_path=manifest))
    model.write_text("select 1")
    assert project.manifest_is_stale()  # no manifest yet
    manifest.write_text("{}")
    os.utime(model, (1_000, 1_000))
    assert not project.manifest_is_stale()
    (tmp_path / "target" / "run.sql").write_text("compiled")
    assert not project.manifest_is_stale()
    os.utime(model, None)
    os.utime(manifest, (2_000, 2_000))
    assert project.manifest_is_stale()
