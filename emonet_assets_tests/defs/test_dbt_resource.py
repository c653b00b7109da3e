"""The dbt resource skips dagster-dbt's per-build `dbt --version` (a PyPI query) and its unused adapter, and runs dbt
through `emonet-dbt`."""

import subprocess
from importlib.metadata import entry_points
from importlib.metadata import version as installed_version
from pathlib import Path

import dagster_dbt.core.resource
from dagster_dbt import DbtCliResource
from packaging import version

from emonet_assets.defs.consensus.project import DBT_EXECUTABLE, CatalogDbtCliResource, dbt_resource


def test_the_dbt_version_comes_from_the_installed_package_without_running_dbt(monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(dagster_dbt.core.resource, "check_output", no_subprocess)
    resource = dbt_resource()
    assert isinstance(resource, CatalogDbtCliResource)
    assert resource._cli_version == version.parse(installed_version("dbt-core"))
    assert resource._initialize_dbt_core_adapter(["build"]) is None


def test_the_overridden_members_are_the_ones_dagster_dbt_calls():
    """A dagster-dbt upgrade that renames them would leave the overrides unused: this names it."""
    for name in ("_cli_version", "_initialize_dbt_core_adapter"):
        assert name in vars(DbtCliResource), name


def test_dbt_runs_through_the_installed_launcher_which_passes_its_exit_status_and_errors(tmp_path):
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "emonet-dbt"]
    assert script.value == "emonet_assets.lib.consensus.dbt_command:main"
    assert dbt_resource().dbt_executable == DBT_EXECUTABLE
    assert Path(DBT_EXECUTABLE).name == "emonet-dbt"
    empty = tmp_path / "empty"
    empty.mkdir()
    run = subprocess.run(
        [DBT_EXECUTABLE, "parse", "--project-dir", str(empty), "--profiles-dir", str(empty)]
        + ["--log-path", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "No dbt_project.yml found" in run.stdout + run.stderr
