"""The `emonet` commands through click's CliRunner: the same code as the console script, without a process each."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest
from click.testing import CliRunner

from emonet_assets.cli import main

SHARDS = ["shard-00000", "shard-00001", "shard-00002"]


def invoke(args: list[str], **env):
    return CliRunner().invoke(main, args, env={"COLUMNS": "80", **env})


@pytest.fixture()
def shard_root(tmp_path, monkeypatch):
    """A Dagster home that knows three prompt shards, and a root where every one of them has images."""
    home, root = tmp_path / "home", tmp_path / "root"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("EMONET_ROOT", str(root))
    monkeypatch.delenv("EMONET_PROFILE", raising=False)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("prompt_shards", SHARDS)
    for shard in SHARDS:
        (root / "tables" / "generated_images").mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"prompt_id": [shard]}).write_parquet(root / "tables" / "generated_images" / f"{shard}.parquet")
    return root


def test_generate_missing_with_nothing_missing_is_a_no_op(shard_root):
    """A nightly `emonet generate --missing` must not fail once every shard is done."""
    result = invoke(["generate", "--missing"])
    assert result.exit_code == 0, result.output
    assert "nothing to generate: all 3 shards have images" in result.output


def test_generate_a_reversed_range_says_so(shard_root):
    result = invoke(["generate", "shard-00002...shard-00000"])
    assert result.exit_code == 1
    assert "shard range shard-00002...shard-00000 is reversed: write it shard-00000...shard-00002" in result.output


@pytest.fixture()
def release(tmp_path):
    """A small release under a storage root, with the latest.json pointer the demo leaves."""
    from emonet_assets.lib.storage import Store
    from emonet_assets_tests.lib.test_release import build_release, make_tables

    store = Store(str(tmp_path / "root"))
    built = build_release(store, make_tables(store))
    return tmp_path / "root", built["manifest"]["release_id"]


def test_verify_release_follows_the_latest_json_pointer(release):
    root, release_id = release
    result = invoke(["verify-release", str(root / "releases" / "latest.json")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"OK release {release_id}: ")
    assert f"match {root / 'releases' / release_id}/manifest.json" in result.output


def test_verify_release_of_a_folder_that_does_not_exist_says_so(release):
    root, _ = release
    result = invoke(["verify-release", str(root / "releases" / "nope")])
    assert result.exit_code == 1
    assert f"release folder {root / 'releases' / 'nope'} does not exist" in result.output
    assert "difference" not in result.output


def test_verify_release_of_a_folder_without_a_manifest_says_it_is_not_a_release(release):
    root, _ = release
    result = invoke(["verify-release", str(root)])
    assert result.exit_code == 1
    assert f"no manifest.json in {root}: not a release folder" in result.output
    assert "difference" not in result.output
