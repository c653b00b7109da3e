from pathlib import Path

import polars as pl
import pytest

from emonet_assets.lib.taxonomy.taxonomy import (
    Taxonomy,
    TaxonomyError,
    builtin_rollups,
    load_rollup_file,
    load_taxonomy,
    normalize_label,
    rollup_path,
    rollup_problems,
    taxonomy_problems,
)


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy()


def test_release_taxonomy_has_40_emotions_in_7_groups(tax):
    assert len(tax.emotions) == 40
    assert len(tax.groups) == 7
    assert len({e.id for e in tax.emotions}) == 40
    assert [e.index for e in tax.emotions] == list(range(40))
    assert {e.group for e in tax.emotions} == {g.id for g in tax.groups}
    assert tax.by_id["pleasure_ecstasy"].name == "Pleasure/Ecstasy"
    assert taxonomy_problems(tax.table()) == []


def test_version_is_a_content_hash(tax):
    assert tax.version == load_taxonomy().version
    changed = Taxonomy(emotions=tax.emotions[:-1], groups=tax.groups, source="x")
    assert changed.version != tax.version
    assert Taxonomy.from_table(tax.table()).version == tax.version


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Pleasure/Ecstasy", "pleasure_ecstasy"),
        ("pleasure_ecstasy", "pleasure_ecstasy"),
        ("  PLEASURE / ecstasy ", "pleasure_ecstasy"),
        ("Ecstasy", "pleasure_ecstasy"),
        ("jealousy", "jealousy_envy"),
        ("Impatience & Irritability", "impatience_and_irritability"),
        ("irritability", "impatience_and_irritability"),
        ("joy", "elation"),
        ("mirth", "amusement"),
        ("surprise", "astonishment_surprise"),
    ],
)
def test_labels_resolve_through_aliases(tax, label, expected):
    assert tax.resolve(label) == expected


def test_ambiguous_cluster_words_are_not_aliases(tax):
    # "laughter" is in both Amusement's and Elation's clusters, "bliss" in Pleasure's and Contentment's.
    assert tax.resolve("laughter") is None
    assert tax.resolve("bliss") is None
    assert tax.resolve("no such feeling") is None


def test_every_alias_points_at_one_emotion(tax):
    table = tax.table()
    flat = table.select("emotion_id", "aliases").explode("aliases")
    assert flat["aliases"].is_duplicated().sum() == 0
    assert normalize_label("Amusement") in table.filter(pl.col("emotion_id") == "amusement")["aliases"][0]


def test_taxonomy_problems_name_what_is_wrong(tax):
    table = tax.table()
    duplicated = pl.concat([table, table.head(1)])
    problems = taxonomy_problems(duplicated)
    assert any("expected 40 emotions, found 41" in p for p in problems)
    assert any("emotion_id not unique: ['amusement']" in p for p in problems)
    regrouped = pl.concat(
        [
            table.head(1).with_columns(
                group_id=pl.lit("longing_lust"), emotion_index=pl.lit(99, pl.Int32), emotion=pl.lit("x")
            ),
            table.tail(39),
        ]
    )
    regrouped = pl.concat([regrouped, table.slice(0, 1)]).unique("emotion_index")
    assert any("more than one group" in p for p in taxonomy_problems(regrouped))


def _write(tmp_path, text, name="mapping.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _levels(tax, skip=(), extra=None):
    names = [e.name for e in tax.emotions if e.name not in skip]
    lines = ["name: ops", "levels:", "  alert:"] + [f"    - {n!r}" for n in names[:10]]
    lines += ["  normal:"] + [f"    - {n!r}" for n in names[10:]] + [f"    - {x!r}" for x in (extra or [])]
    return "\n".join(lines) + "\n"


def test_complete_mapping_has_no_problems(tax, tmp_path):
    rows = load_rollup_file(_write(tmp_path, _levels(tax)), tax)
    assert rows.height == 40
    assert rollup_problems(pl.concat([builtin_rollups(tax), rows]), tax) == []


def test_mapping_missing_an_emotion_names_it(tax, tmp_path):
    rows = load_rollup_file(_write(tmp_path, _levels(tax, skip=("Awe",))), tax)
    [problem] = rollup_problems(rows, tax)
    assert "'Awe' is missing" in problem and "mapping.yaml" in problem


def test_mapping_naming_an_emotion_twice_names_it(tax, tmp_path):
    rows = load_rollup_file(_write(tmp_path, _levels(tax, extra=["fear"])), tax)
    [problem] = rollup_problems(rows, tax)
    assert "'Fear' named 2 times" in problem


def test_mapping_with_unknown_emotion_names_it(tax, tmp_path):
    rows = load_rollup_file(_write(tmp_path, _levels(tax, extra=["Zorblaxity"])), tax)
    [problem] = rollup_problems(rows, tax)
    assert "unknown emotion 'Zorblaxity'" in problem


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: ops\nlevels: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("levels:\n  a: [Fear]\n", "lacks a 'name'"),
        ("name: ops\nlevels:\n  a: [Fear]\n  a: [Anger]\n", "duplicate key 'a'"),
        ("name: ops\nlevels:\n  a: Fear\n", "must be a list of emotion names"),
        ("name: group\nlevels:\n  a: [Fear]\n", "reserved"),
        ("name: ops\n", "'levels' must map"),
    ],
)
def test_malformed_mapping_files_are_refused_with_the_file_named(tax, tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(TaxonomyError) as err:
        load_rollup_file(path, tax)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_mapping_file_is_named(tax, tmp_path):
    with pytest.raises(TaxonomyError, match="not found"):
        load_rollup_file(tmp_path / "nope.yaml", tax)


def test_shipped_operational_mapping_is_complete(tax):
    rows = load_rollup_file(rollup_path("operational"), tax)
    assert rollup_problems(rows, tax) == []
    assert set(rows["level"]) == {"alert", "watch", "normal"}


def test_a_profile_names_a_shipped_rollup_or_a_file_of_its_own(tmp_path, monkeypatch):
    """Shipped rollups live in the package (an installed wheel has no checkout); a .yaml entry is the user's file,
    relative to the project folder."""
    import emonet_assets
    from emonet_assets.lib.shared import profile_files

    package = Path(emonet_assets.__file__).parent
    assert rollup_path("operational") == package / "data" / "rollups" / "operational.yaml"
    monkeypatch.setattr(profile_files, "CHECKOUT", tmp_path)
    (tmp_path / "pyproject.toml").write_text("")
    assert rollup_path("mine/rollups.yaml") == tmp_path / "mine" / "rollups.yaml"
    assert rollup_path(str(tmp_path / "abs.yaml")) == tmp_path / "abs.yaml"
    with pytest.raises(TaxonomyError, match=r"no shipped rollup 'operationl' \(shipped: operational\)"):
        rollup_path("operationl")


def test_builtin_rollups_are_a_hierarchy(tax):
    rows = builtin_rollups(tax)
    group = dict(rows.filter(pl.col("rollup") == "group").select("emotion_id", "level").iter_rows())
    valence = dict(rows.filter(pl.col("rollup") == "valence").select("emotion_id", "level").iter_rows())
    assert len(group) == len(valence) == 40
    assert len(set(group.values())) == 7
    assert set(valence.values()) == {"positive", "negative", "neither"}
    # valence is a function of the group
    by_group = {}
    for emotion_id, g in group.items():
        by_group.setdefault(g, set()).add(valence[emotion_id])
    assert all(len(v) == 1 for v in by_group.values())
    assert valence["elation"] == "positive" and valence["fear"] == "negative"
