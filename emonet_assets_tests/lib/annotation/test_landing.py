import hashlib

import pytest

from emonet_assets.lib.annotation.landing import (
    BatchDeclaration,
    LandingError,
    describe_rating_sources,
    file_sha256,
    find_batch_file,
    land_file,
    list_landing,
    read_declaration,
)
from emonet_assets.lib.shared.storage import Store

PREFIX = "landing/annotations"


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "root"))


def test_landing_the_same_content_twice_is_one_file_and_its_declaration_travels_with_it(store):
    data = b"path,annotator,value,emotion\n00001,a,True,Elation\n"
    first = land_file(store, PREFIX, "ratings.csv", data, BatchDeclaration("long", "release"))
    again = land_file(store, PREFIX, "ratings.csv", data, BatchDeclaration("long", "release"))

    assert first == again and first[1] == hashlib.sha256(data).hexdigest()
    files = list_landing(store, PREFIX)
    assert [f.path for f in files] == [first[0]]
    assert read_declaration(store, first[0]) == BatchDeclaration("long", "release")
    assert file_sha256(store, first[0]) == first[1]


def test_files_dropped_by_hand_are_found_by_content(store):
    store.write_bytes(f"{PREFIX}/team-a/export.json", b"[]")
    store.write_bytes(f"{PREFIX}/.hidden", b"x")
    sha = hashlib.sha256(b"[]").hexdigest()

    found = find_batch_file(store, PREFIX, sha)

    assert found.path == f"{PREFIX}/team-a/export.json"
    assert read_declaration(store, found.path) == BatchDeclaration()
    with pytest.raises(LandingError, match="no file with sha256"):
        find_batch_file(store, PREFIX, "0" * 64)


def test_a_broken_declaration_names_its_file(store):
    store.write_bytes(f"{PREFIX}/a.csv", b"x")
    store.write_bytes(f"{PREFIX}/a.csv.batch.json", b'{"colection": "typo"}')

    with pytest.raises(LandingError, match=r"a\.csv\.batch\.json"):
        read_declaration(store, f"{PREFIX}/a.csv")


def test_a_new_declaration_replaces_the_old_one_and_says_it_changed(store):
    data = b"path,annotator,value,emotion\n00001,a,True,Elation\n"
    rel, _, changed = land_file(store, PREFIX, "ratings.csv", data, BatchDeclaration())
    assert not changed and not store.exists(rel + ".batch.json")

    positional = BatchDeclaration(positional_ids=True)
    assert land_file(store, PREFIX, "ratings.csv", data, positional)[2]
    assert read_declaration(store, rel) == positional
    assert not land_file(store, PREFIX, "ratings.csv", data, positional)[2]
    assert land_file(store, PREFIX, "ratings.csv", data, BatchDeclaration())[2]
    assert read_declaration(store, rel) == BatchDeclaration()


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        (b'{"collection": "release", "positional_ids": true}', "a collection or positional ids, not both"),
        (b'{"positional_ids": "yes"}', "`positional_ids` is true or false"),
        (b'{"raters": "students"}', "`raters` is one of expert, crowd, simulated, not 'students'"),
    ],
)
def test_a_declaration_that_contradicts_itself_is_refused(store, sidecar, message):
    store.write_bytes(f"{PREFIX}/a.csv", b"x")
    store.write_bytes(f"{PREFIX}/a.csv.batch.json", sidecar)

    with pytest.raises(LandingError, match=message):
        read_declaration(store, f"{PREFIX}/a.csv")


def test_who_rated_travels_with_the_file_and_defaults_to_experts(store):
    data = b"path,annotator,value,emotion\n00001,a,True,Elation\n"
    rel, _, _ = land_file(store, PREFIX, "panel.csv", data, BatchDeclaration(raters="simulated"))
    assert read_declaration(store, rel).raters == "simulated"
    store.write_bytes(f"{PREFIX}/by-hand.csv", data)
    store.write_bytes(f"{PREFIX}/by-hand.csv.batch.json", b'{"raters": "crowd"}')
    assert read_declaration(store, f"{PREFIX}/by-hand.csv") == BatchDeclaration(raters="crowd")
    assert BatchDeclaration().raters == "expert"


def test_rating_sources_are_said_in_one_sentence():
    sources = [
        {"raters": "expert", "batches": 1, "annotators": 4, "ratings": 1200},
        {"raters": "simulated", "batches": 3, "annotators": 4, "ratings": 9000},
    ]
    assert describe_rating_sources(sources) == (
        "4 expert raters gave 1,200 ratings in 1 batch; 4 simulated raters (a program imitating expert raters, not "
        "people) gave 9,000 ratings in 3 batches"
    )
