"""The dbt profile's DuckDB settings as dbt-duckdb applies them: a build that spills keeps working."""

import re

import yaml
from dbt.adapters.duckdb.credentials import DuckDBCredentials
from dbt.adapters.duckdb.environments.local import LocalEnvironment

from emonet_assets.defs.consensus.project import DBT_PROJECT_DIR


def _local_output(values: dict) -> dict:
    """profiles.yml's `local` output with its `var(...)` calls replaced by `values`."""
    text = (DBT_PROJECT_DIR / "profiles.yml").read_text()
    rendered = re.sub(r"\{\{\s*var\('(\w+)'[^}]*\}\}", lambda m: str(values.get(m.group(1), "unused")), text)
    return yaml.safe_load(rendered)["emonet_face"]["outputs"]["local"]


def test_a_cursor_opened_after_the_catalog_spilled_gets_the_profiles_settings(tmp_path):
    """dbt-duckdb applies `settings` to every cursor it opens; DuckDB refuses to set temp_directory again once it
    has spilled there, which failed a whole `dbt build` at a 1.5 GB limit on 100,000 images."""
    spill = tmp_path / "spill"
    output = _local_output(
        {
            "catalog_path": tmp_path / "catalog.duckdb",
            "duckdb_threads": 1,
            "duckdb_memory_limit": "32MB",
            "duckdb_temp_directory": spill,
        }
    )
    creds = DuckDBCredentials(
        path=output["path"], settings=output.get("settings"), config_options=output.get("config_options")
    )
    environment = LocalEnvironment(creds)
    first = environment.handle().cursor()
    first.execute("CREATE TABLE sorted AS SELECT i FROM range(4000000) t(i) ORDER BY hash(i)")
    assert spill.is_dir() and first.execute("SELECT current_setting('temp_directory')").fetchone()[0] == str(spill)
    second = environment.handle().cursor()
    assert second.execute("SELECT count(*) FROM sorted").fetchone()[0] == 4_000_000
    assert second.execute("SELECT current_setting('memory_limit')").fetchone()[0] in ("30.5 MiB", "32.0 MB")
