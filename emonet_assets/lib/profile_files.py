"""Finding and reading a profile file, without the settings models that validate it (and the Dagster they import):
`emonet status` needs only the storage settings and stays quick; `load_profile` builds on the same rules."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

PROFILE_DIR = Path(__file__).resolve().parents[1] / "profiles"
DEFAULT_PROFILE = "tiny"


class ProfileError(ValueError):
    """An unknown or invalid profile; the message names the profile file or lists the valid ones."""


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def requested_profile(
    name: str | None = None, env: dict | None = None, given_by: str | None = None
) -> tuple[str, str | None]:
    """The profile asked for and who asked: `given_by` for a name, else EMONET_PROFILE, else the default. An error
    must blame the setting the user actually made, and `emonet profiles` marks the same one active."""
    env = os.environ if env is None else env
    if name:
        return name, given_by
    if env.get("EMONET_PROFILE"):
        return env["EMONET_PROFILE"], "EMONET_PROFILE"
    return DEFAULT_PROFILE, None


def read_profile(name: str | None = None, env: dict | None = None, given_by: str | None = None):
    """A shipped profile by name, or any profile file by path (a name ending in .yaml), as (name, file, settings);
    EMONET_ROOT and EMONET_CATALOG replace the storage settings, and the root defaults to data/<name>."""
    env = os.environ if env is None else env
    name, given_by = requested_profile(name, env, given_by)
    source = f" (set by {given_by})" if given_by else ""
    path = Path(name) if name.endswith((".yaml", ".yml")) else PROFILE_DIR / f"{name}.yaml"
    if path.suffix and name.endswith((".yaml", ".yml")):
        if not path.exists():
            raise ProfileError(f"profile file {path}{source} not found")
        name = path.stem
    elif not path.exists():
        raise ProfileError(f"unknown profile {name!r}{source}; valid profiles: {', '.join(available_profiles())}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile must be a YAML mapping")
    storage = data.setdefault("storage", {})
    if not isinstance(storage, dict):
        raise ProfileError(f"{path}: storage: must be a mapping")
    if env.get("EMONET_ROOT"):
        storage["root"] = env["EMONET_ROOT"]
    if env.get("EMONET_CATALOG"):
        storage["catalog"] = env["EMONET_CATALOG"]
    storage.setdefault("root", str(Path("data") / name))
    return name, path, data


def catalog_path(name: str, root: str, catalog: str | None) -> str:
    """The DuckDB catalog file: the one set, else beside a local root, else under .emonet/<profile>/."""
    if catalog:
        return catalog
    if "://" not in root:
        return str((Path(root) / "catalog.duckdb").absolute())
    return str((Path(".emonet") / name / "catalog.duckdb").absolute())
