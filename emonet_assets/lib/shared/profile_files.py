"""Finding and reading a profile file, without the settings models that validate it (and the Dagster they import):
`emonet status` needs only the storage settings and stays quick; `load_profile` builds on the same rules."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from emonet_assets.lib.shared.package_data import package_path

PROFILE_DIR = package_path("profiles")
DEFAULT_PROFILE = "tiny"
# The checkout the package runs from, if any (an editable install: `make setup`): its own settings.
CHECKOUT = package_path().parent
INSTANCE_SETTINGS = CHECKOUT / "deploy" / "dagster.local.yaml"


def project_dir() -> Path:
    """The folder a profile's relative paths (storage root, catalog, model folders) and the default Dagster home
    are read against, wherever `emonet` is run from: the checkout holding the package (the repository, where
    `make` works too), else, for a package installed without its checkout, the working directory."""
    return CHECKOUT if (CHECKOUT / "pyproject.toml").is_file() else Path.cwd()


def project_path(value: str) -> str:
    """A path from a profile file, absolute: a relative one under the project folder; URLs as they are."""
    if "://" in value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else project_dir() / path)


# A Hugging Face repository id, owner/name; a relative folder of two parts reads the same, so a folder is looked
# for first and the id only where no such folder exists.
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def cached_snapshot(repo_id: str) -> Path | None:
    """The folder of a repository's snapshot in the local Hugging Face cache (HF_HUB_CACHE), found by the hub
    library itself, never downloaded; None when it is not there."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError):
        return None


def model_source(value: str, build: bool = False) -> str:
    """Where a profile's model setting is read from, and the command that gets it when it is not there yet."""
    if build:
        return f"built on first use in {project_path(value)}"
    local = Path(project_path(value))
    if local.is_dir():
        return f"folder {local}"
    if HUB_ID.match(value):
        cached = cached_snapshot(value)
        if cached is not None:
            return f"{value}, in the Hugging Face cache ({cached})"
        return f"{value}, not downloaded yet: hf download {value}"
    return f"folder {local} does not exist: hf download <hugging-face-id> --local-dir {local}"


def model_location(value: str, build: bool = False) -> str:
    """Where to read a profile's model setting from: a folder under the project folder when it exists there (or
    is to be built there), else the value as written, which names a Hugging Face repository read from the cache.
    The setting itself, not this location, is what manifests record."""
    local = project_path(value)
    return local if build or Path(local).is_dir() else value


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
    EMONET_ROOT and EMONET_CATALOG replace the storage settings, and the root defaults to data/<name>.

    A relative root or catalog in the file is under the project folder (`project_dir`), so every command finds the
    same root from any working directory; one set by EMONET_ROOT or EMONET_CATALOG is the user's, relative to
    where they are."""
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
    for key in ("root", "catalog"):
        if isinstance(storage.get(key), str):
            storage[key] = project_path(storage[key])
    if env.get("EMONET_ROOT"):
        storage["root"] = env["EMONET_ROOT"]
    if env.get("EMONET_CATALOG"):
        storage["catalog"] = env["EMONET_CATALOG"]
    storage.setdefault("root", project_path(str(Path("data") / name)))
    return name, path, data


def catalog_path(name: str, root: str, catalog: str | None) -> str:
    """The DuckDB catalog file: the one set, else beside a local root, else under .emonet/<profile>/ of the
    project folder."""
    if catalog:
        return catalog
    if "://" not in root:
        return str((Path(root) / "catalog.duckdb").absolute())
    return str(project_dir() / ".emonet" / name / "catalog.duckdb")
