"""The dbt project shipped in the package, and the manifest dagster-dbt reads before the assets are built."""

import os
import sys
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject
from dbt.version import __version__ as dbt_core_version
from packaging import version

from emonet_assets.defs.automation.conditions import refresh_on_new_annotations, weekly_freshness
from emonet_assets.lib.consensus.dbt_command import DBT_EXECUTABLE, DBT_PROJECT_DIR

# Source tables dbt reads, mapped onto the Dagster assets that write them.
SOURCE_ASSETS = {"annotations": "annotations", "taxonomy": "taxonomy"}
# dbt marts copied to Parquet after each build: Parquet stays the system of record downstream reads.
MARTS = ("consensus_labels", "emotion_agreement", "annotator_quality", "reannotation_queue", "dawid_skene_consensus")
# Also copied: the per-item agreement statistics, which the fairness report pools per demographic group, so that
# Python reads dbt's numbers instead of computing them again from the ratings.
EXPORTED = (*MARTS, "int_agreement_item_stats")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR)


class CatalogDbtCliResource(DbtCliResource):
    """dagster-dbt's resource, minus two costs paid on every build (5 s of a 20 s tiny build): it asks
    `dbt --version`, which queries PyPI for the latest release, to learn the version of the `dbt` it runs, which
    here is this environment's own dbt-core; and it opens a dbt adapter on the catalog only to fetch row counts and
    column metadata, which this project records itself when it exports the marts."""

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(dbt_core_version)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        return None


def dbt_resource() -> DbtCliResource:
    return CatalogDbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)


def manifest_is_stale() -> bool:
    """Whether the manifest is missing or older than a file of the dbt project (its own outputs aside)."""
    manifest = dbt_project.manifest_path
    if not manifest.exists():
        return True
    written = {"target", "logs", "dbt_packages"}  # dbt's own outputs, growing with every build: never walked
    tops = [p for p in DBT_PROJECT_DIR.iterdir() if p.name not in written]
    sources = [f for top in tops for f in ([top] if top.is_file() else top.rglob("*")) if f.is_file()]
    return max(f.stat().st_mtime for f in sources) > manifest.stat().st_mtime


def prepare_manifest() -> Path:
    """dagster-dbt's own preparation (`dbt parse`) whenever the manifest is missing or older than the dbt project: an
    edited model is picked up on the next load under `dg dev`, while the run and step processes that load the same
    code do not parse again (dagster-dbt's `prepare_if_dev` would, about 10 s each). `make setup` and the image
    build prepare it ahead with `dagster-dbt project prepare-and-package`. dagster-dbt runs the `dbt` on PATH: this
    environment's goes first, activated or not."""
    here, path = str(Path(sys.executable).parent), os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join([here, *(p for p in path if p != here)])
    if manifest_is_stale():
        dbt_project.preparer.prepare(dbt_project)
    return dbt_project.manifest_path


class EmonetDbtTranslator(DagsterDbtTranslator):
    """dbt sources are the Parquet tables Dagster assets write; every dbt model belongs to `consensus`."""

    def get_asset_spec(self, manifest, unique_id, project):
        spec = super().get_asset_spec(manifest, unique_id, project)
        node = manifest["sources"].get(unique_id) if unique_id.startswith("source.") else None
        if node is not None:
            return spec.replace_attributes(key=dg.AssetKey(SOURCE_ASSETS.get(node["name"], node["name"])))
        spec = spec.replace_attributes(group_name="consensus", automation_condition=refresh_on_new_annotations)
        return spec.replace_attributes(freshness_policy=weekly_freshness) if spec.key.path[-1] in MARTS else spec


translator = EmonetDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))
