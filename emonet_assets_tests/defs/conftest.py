import shutil

import dagster as dg
import pytest

from emonet_assets.definitions import build_definitions
from emonet_assets.profiles import load_profile
from emonet_assets.runner import materialize_all, materialize_step, plan


def tiny_profile(root, generation=None, qc=None, **design):
    """The tiny profile on `root`, with design, generation or QC settings overridden."""
    profile = load_profile("tiny", env={"EMONET_ROOT": str(root)})
    update = {}
    if design:
        update["design"] = profile.design.__class__(**{**profile.design.__dict__, **design})
    if generation:
        update["generation"] = profile.generation.model_copy(update=generation)
    if qc:
        update["qc"] = profile.qc.model_copy(update=qc)
    return profile.model_copy(update=update)


def upstream(defs, instance):
    """Everything before generation, so shard partitions exist in `instance`."""
    graph = defs.resolve_asset_graph()
    for keys in plan(defs):
        if graph.get(keys[0]).partitions_def is not None:
            break
        report = materialize_step(defs, instance, keys)
        assert report.success, report.error


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
