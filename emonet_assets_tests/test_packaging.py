"""The package stands alone: a wheel built from the sources installs into a fresh environment and loads its
definitions there from its own package data (taxonomy, profiles, SQL, the dbt project), with no checkout in sight;
production code never imports the demo runner; the dg project settings it ships are pyproject's."""

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from emonet_assets.lib.shared.package_data import package_path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "emonet_assets"
# Folders of package data; what dbt, pip and Python write inside them is not.
DATA_FOLDERS = ("data", "profiles", "sql", "dbt_project")
WRITTEN = ("__pycache__", "target", "logs", "dbt_packages", ".user.yml", "*.egg-info")
# Where the CLI and the in-process runner live: the only modules that may import the runner.
RUNNER_USERS = ("emonet_assets/cli/", "emonet_assets/runner.py")

PROBE = """
import json
import emonet_assets
from emonet_assets.definitions import defs
from emonet_assets.defs.consensus.project import DBT_EXECUTABLE, dbt_project
from emonet_assets.lib.shared.catalog import SQL_DIR
from emonet_assets.lib.shared.profile_files import PROFILE_DIR
from emonet_assets.lib.taxonomy.taxonomy import DEFAULT_TAXONOMY_PATH

definitions = defs()
print(json.dumps({
    "package": emonet_assets.__file__,
    "dbt_project": str(dbt_project.project_dir),
    "manifest": str(dbt_project.manifest_path) if dbt_project.manifest_path.is_file() else None,
    "dbt_executable": DBT_EXECUTABLE,
    "sql": str(SQL_DIR),
    "profiles": str(PROFILE_DIR),
    "taxonomy": str(DEFAULT_TAXONOMY_PATH),
    "assets": sorted(key.to_user_string() for key in definitions.resolve_asset_graph().get_all_asset_keys()),
    "sensors": sorted(sensor.name for sensor in definitions.sensors),
}))
"""


def _files(folder: Path) -> set[str]:
    """Every file under `folder` but those written there (dbt's target and logs, bytecode)."""
    relative = [path.relative_to(folder) for path in folder.rglob("*") if path.is_file()]
    return {str(path) for path in relative if not any(fnmatch(part, p) for part in path.parts for p in WRITTEN)}


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_environment_and_loads_its_definitions_from_anywhere(tmp_path):
    """Built without network (this environment's setuptools) and installed without dependencies into a new venv
    that reaches this one's third-party packages through a .pth file, but not its editable install of the package."""
    sources = tmp_path / "sources"
    sources.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, sources / name)
    shutil.copytree(PACKAGE, sources / "emonet_assets", ignore=shutil.ignore_patterns(*WRITTEN))
    wheels = tmp_path / "wheels"
    pip_offline = ["-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run(
        [
            sys.executable,
            *pip_offline,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            wheels,
            sources,
        ]
    )
    (wheel,) = wheels.glob("emonet_face-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    site_packages = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    # A plain path line: the folder joins sys.path, but its own .pth files (the editable install's finder) do not run.
    (site_packages / "third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([python, *pip_offline, "install", "--no-deps", "--no-index", wheel])
    # The console script pip writes for dbt-core, which this venv reaches but did not install itself.
    dbt = venv / "bin" / "dbt"
    dbt.write_text(f"#!{python}\nimport sys\nfrom dbt.cli.main import cli\nsys.exit(cli())\n")
    dbt.chmod(0o755)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"DAGSTER_HOME": str(tmp_path / "home"), "EMONET_ROOT": str(tmp_path / "root")}
    env.pop("EMONET_PROFILE", None)
    loaded = json.loads(_run([python, "-c", PROBE], cwd=elsewhere, env=env).stdout.strip().splitlines()[-1])

    installed = site_packages / "emonet_assets"
    assert Path(loaded["package"]) == installed / "__init__.py"
    assert Path(loaded["dbt_project"]) == installed / "dbt_project"
    assert Path(loaded["manifest"]) == installed / "dbt_project" / "target" / "manifest.json"
    # dbt runs through the launcher the wheel installs beside the environment's Python.
    assert Path(loaded["dbt_executable"]) == venv / "bin" / "emonet-dbt"
    assert Path(loaded["dbt_executable"]).is_file()
    assert Path(loaded["sql"]) == installed / "sql"
    assert Path(loaded["profiles"]) == installed / "profiles"
    assert Path(loaded["taxonomy"]) == installed / "data" / "taxonomy.yaml"
    for folder in DATA_FOLDERS:
        assert _files(installed / folder) == _files(PACKAGE / folder), folder
    assert (installed / "dg.toml").is_file()

    from emonet_assets.definitions import build_definitions
    from emonet_assets_tests.defs.conftest import tiny_profile

    here = build_definitions(tiny_profile(tmp_path / "root"))
    assert loaded["assets"] == sorted(k.to_user_string() for k in here.resolve_asset_graph().get_all_asset_keys())
    assert loaded["sensors"] == sorted(sensor.name for sensor in here.sensors)


def test_the_package_ships_the_dg_project_settings_of_pyproject():
    """`dg` reads pyproject.toml in a checkout; load_from_defs_folder reads the package's dg.toml everywhere."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["dg"]
    shipped = tomllib.loads(package_path("dg.toml").read_text(encoding="utf-8"))
    assert shipped["directory_type"] == pyproject["directory_type"] == "project"
    assert shipped["project"] == pyproject["project"]


def _imported_modules(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_production_code_never_imports_the_demo_runner():
    offenders = [
        str(path.relative_to(REPO))
        for path in sorted(PACKAGE.rglob("*.py"))
        if not str(path.relative_to(REPO)).startswith(RUNNER_USERS)
        and "emonet_assets.runner" in _imported_modules(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert offenders == []
