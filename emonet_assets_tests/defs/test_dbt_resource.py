"""The dbt resource skips dagster-dbt's per-build `dbt --version` (a PyPI query) and its unused adapter."""

from importlib.metadata import version as installed_version

import dagster_dbt.core.resource
from dagster_dbt import DbtCliResource
from packaging import version

from emonet_assets.defs.consensus.project import CatalogDbtCliResource, dbt_resource


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
