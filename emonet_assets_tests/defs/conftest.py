import shutil

import dagster as dg
import pytest

from emonet_assets.definitions import build_definitions
from emonet_assets.profiles import load_profile
from emonet_assets.runner import materialize_all


def tiny_profile(root, **design):
    profile = load_profile("tiny", env={"EMONET_ROOT": str(root)})
    if design:
        profile = profile.model_copy(
            update={"design": profile.design.__class__(**{**profile.design.__dict__, **design})}
        )
    return profile


@pytest.fixture(scope="session")
def materialized_root(tmp_path_factory):
    """The tiny profile's whole graph, materialized once; copy it before changing anything."""
    root = tmp_path_factory.mktemp("tiny") / "root"
    reports = materialize_all(build_definitions(tiny_profile(root)), dg.DagsterInstance.ephemeral())
    assert all(r.success and not r.checks_failed for r in reports), [r.error for r in reports]
    return root


@pytest.fixture
def root_copy(materialized_root, tmp_path):
    target = tmp_path / "root"
    shutil.copytree(materialized_root, target)
    return target
