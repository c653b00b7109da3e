"""Files shipped inside the package: the taxonomy, rollups, mappings, templates, profiles, SQL, the dbt project and
the dg project settings. Found through importlib.resources, so an installed wheel reads its own copy, never a
checkout's."""

from importlib.resources import files
from pathlib import Path


def package_path(*parts: str) -> Path:
    """A file or folder shipped in the package, as a path that tools outside Python (dbt, DuckDB) can open: pip
    installs a package as plain files, so the resource is one."""
    return Path(files("emonet_assets").joinpath(*parts))
