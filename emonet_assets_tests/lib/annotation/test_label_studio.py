"""The Label Studio loop's pure parts: labeling configs, which images get a task, the pull's cursor and export."""

import json
import xml.etree.ElementTree as ET

import polars as pl
import pytest

from emonet_assets.lib.annotation.annotation_formats import parse_annotation_file
from emonet_assets.lib.annotation.label_studio import (
    LabelStudioError,
    Project,
    ProjectSpec,
    Pull,
    binary_config,
    contrastive_emotion,
    edited_projects,
    export_since,
    image_url_maker,
    intensity_config,
    land_pulls,
    pulled_through,
    rating_candidates,
    same_config,
)
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


def test_the_intensity_layout_has_a_0_to_7_control_per_emotion_grouped_as_the_taxonomy_groups_them(taxonomy):
    view = ET.fromstring(intensity_config(taxonomy))
    groups = [v for v in view.findall("View")]
    assert [g.find("Header").get("value") for g in groups] == [g.name for g in taxonomy.groups]
    for group, block in zip(taxonomy.groups, groups, strict=True):
        numbers = block.findall("Number")
        assert [n.get("name") for n in numbers] == [e.id for e in taxonomy.emotions if e.group == group.id]
        assert {(n.get("min"), n.get("max"), n.get("toName")) for n in numbers} == {("0", "7", "image")}
    assert len(view.findall(".//Number")) == 40


def test_the_binary_layout_asks_present_or_absent_for_the_prompted_and_a_contrastive_emotion(taxonomy):
    view = ET.fromstring(binary_config())
    assert [c.get("name") for c in view.findall("Choices")] == ["prompted", "contrastive"]
    assert {tuple(x.get("value") for x in c) for c in view.findall("Choices")} == {("present", "absent")}
    prompted = taxonomy.emotions[0]
    contrast = contrastive_emotion("some-image", prompted.id, taxonomy)
    group = {e.id: e.group for e in taxonomy.emotions}
    assert group[contrast] != prompted.group
    assert contrast == contrastive_emotion("some-image", prompted.id, taxonomy)


def test_a_config_edited_by_hand_is_named_whitespace_is_not_an_edit(taxonomy):
    config = intensity_config(taxonomy)
    spec = ProjectSpec("generated", "round-1", "ratings", "intensity", config)
    reindented = config.replace("\n    <", "\n<")
    assert same_config(config, reindented)
    edited = config.replace('max="7"', 'max="9"', 1)
    projects = {spec.title: Project(7, spec.title, edited)}
    assert edited_projects(projects, {spec.title: spec}) == [f"{spec.title!r} (id 7)"]
    assert edited_projects({spec.title: Project(7, spec.title, reindented)}, {spec.title: spec}) == []


def test_images_need_a_task_until_they_have_enough_expert_raters():
    manifest = pl.DataFrame(
        {"image_sha256": ["a", "b", "c", "d"], "image_path": ["pa", "pb", "pc", "pd"], "prompt_id": list("1234")}
    )
    qc = pl.DataFrame({"image_sha256": ["a", "b", "c", "d"], "passed": [True, True, True, False]})
    ratings = pl.DataFrame(
        {
            "collection": ["generated"] * 5,
            "image_id": ["a", "a", "b", "b", "b"],
            "annotator": ["x", "y", "x", "s1", "s2"],
            "raters": ["expert", "expert", "expert", "simulated", "simulated"],
        }
    )
    needed = rating_candidates(manifest, qc, ratings, ratings_per_image=2)
    # a has two experts; b one expert (simulated raters are no experts); c none; d failed QC.
    assert needed.select("image_sha256", "needed").rows() == [("b", 1), ("c", 2)]


def _export(annotations):
    return [
        {
            "id": 1,
            "data": {"image": "/data/local-files/?d=x.png", "image_sha256": "a" * 64, "prompted": "anger"},
            "annotations": annotations,
        }
    ]


def test_a_pull_keeps_only_annotations_after_the_cursor_named_by_email_and_emotion():
    annotations = [
        {"id": 3, "completed_by": 1, "result": [{"from_name": "anger", "value": {"number": 4}}]},
        {"id": 5, "completed_by": 2, "result": [{"from_name": "prompted", "value": {"choices": ["present"]}}]},
        {"id": 6, "completed_by": 2, "result": [], "was_cancelled": True},
    ]
    tasks, ids = export_since(_export(annotations), after=3, emails={1: "a@x", 2: "b@x"})
    assert ids == [5, 6]
    assert [a["completed_by"] for a in tasks[0]["annotations"]] == [{"id": 2, "email": "b@x"}] * 2
    parsed = parse_annotation_file("pull.json", json.dumps(tasks).encode())
    assert parsed.units.select("annotator", "emotion_label", "value_raw").rows() == [("b@x", "anger", "present")]
    assert parsed.skipped["reason"].to_list() == ["cancelled"]
    assert export_since(_export(annotations), after=6, emails={}) == ([], [])


def test_the_landing_zone_is_the_pull_cursor_and_the_same_pull_lands_once(tmp_path):
    store = Store(str(tmp_path))
    pull = Pull(4, "emonet generated round-1 ratings", "generated", 2, 10, 12, b"[]")
    first = land_pulls(store, "landing", [pull])
    assert land_pulls(store, "landing", [pull]) == first
    assert pulled_through(store, "landing") == {4: 12}
    external = Pull(5, "emonet hq round-1 reannotation", "hq", 1, 13, 13, b"[1]")
    [(path, _)] = land_pulls(store, "landing", [external])
    assert json.loads(store.read_bytes(path + ".batch.json"))["collection"] == "hq"
    assert pulled_through(store, "landing") == {4: 12, 5: 13}


def test_images_reach_label_studio_through_local_files_or_a_presigned_url(tmp_path, moto_s3):
    local = Store(str(tmp_path / "root"))
    assert image_url_maker(local, None, 60)("images/ab/cd/x.png") == "/data/local-files/?d=images/ab/cd/x.png"
    assert image_url_maker(local, str(tmp_path), 60)("images/x.png") == "/data/local-files/?d=root/images/x.png"
    with pytest.raises(LabelStudioError, match="does not contain the storage root"):
        image_url_maker(local, str(tmp_path / "elsewhere"), 60)
    s3 = Store(f"s3://{moto_s3.bucket}/root", moto_s3.storage_options)
    s3.write_bytes("images/x.png", b"png")
    url = image_url_maker(s3, None, 600)("images/x.png")
    assert url.startswith(moto_s3.endpoint_url) and "Signature" in url
    import urllib.request

    with urllib.request.urlopen(url) as response:
        assert response.read() == b"png"
