"""The dbt project and its manifest, parsed before the assets are built (dagster-dbt needs it at import)."""

import os
import sys
import tempfile
from pathlib import Path

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject

from emonet_assets.automation import refresh_on_new_annotations, weekly_freshness

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")
# Source tables dbt reads, mapped onto the Dagster assets that write them.
SOURCE_ASSETS = {"annotations": "annotations", "taxonomy": "taxonomy"}
# dbt marts copied to Parquet after each build: Parquet stays the system of record downstream reads.
MARTS = ("consensus_labels", "emotion_agreement", "annotator_quality", "reannotation_queue", "dawid_skene_consensus")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)


def _sources_newer_than(path: Path) -> bool:
    if not path.exists():
        return True
    stamp = path.stat().st_mtime
    watched = [DBT_PROJECT_DIR / "dbt_project.yml", DBT_PROJECT_DIR / "profiles.yml"]
    for folder in ("models", "tests", "macros"):
        watched += (DBT_PROJECT_DIR / folder).rglob("*")
    return any(p.is_file() and p.stat().st_mtime > stamp for p in watched)


def ensure_manifest() -> Path:
    """Parse when the manifest is missing or older than the project; written atomically for concurrent loaders."""
    manifest = dbt_project.manifest_path
    if _sources_newer_than(manifest):
        manifest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=manifest.parent.parent, prefix=".parse-") as tmp:
            dbt_resource().cli(["parse", "--quiet"], target_path=Path(tmp)).wait()
            os.replace(Path(tmp) / "manifest.json", manifest)
    return manifest


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
