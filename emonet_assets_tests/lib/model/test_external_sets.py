import polars as pl
import pytest
from PIL import Image

from emonet_assets.lib.model.external_sets import (
    BASIC8_MAPPING_PATH,
    ExternalSetError,
    check_mapping,
    read_class_mapping,
    read_external_set,
    score_external,
)
from emonet_assets.lib.taxonomy.taxonomy import builtin_rollups, load_taxonomy


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


@pytest.fixture(scope="module")
def rollups(taxonomy):
    return builtin_rollups(taxonomy)


def image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(path, format="PNG")
    return path


def test_folder_layout_reads_one_class_per_subfolder(tmp_path):
    image(tmp_path / "happy" / "a.png")
    image(tmp_path / "happy" / "nested" / "b.JPG")
    image(tmp_path / "sad" / "c.webp")
    (tmp_path / "sad" / "notes.txt").write_text("not an image")
    image(tmp_path / ".cache" / "d.png")
    image(tmp_path / "loose.png")
    table = read_external_set(tmp_path)
    assert table.columns == ["path", "label", "source_row"]
    assert table["label"].to_list() == ["happy", "happy", "sad"]
    assert table["path"].to_list() == [
        str((tmp_path / p).resolve()) for p in ("happy/a.png", "happy/nested/b.JPG", "sad/c.webp")
    ]
    assert table["source_row"].null_count() == 3


def test_csv_paths_are_relative_to_the_csv(tmp_path):
    image(tmp_path / "img" / "1.png")
    image(tmp_path / "img" / "2.jpg")
    (tmp_path / "set.csv").write_text("path,label,extra\nimg/1.png,happy,x\nimg/2.jpg, sad ,y\n")
    table = read_external_set(tmp_path / "set.csv")
    assert table.rows() == [
        (str(tmp_path.resolve() / "img" / "1.png"), "happy", 2),
        (str(tmp_path.resolve() / "img" / "2.jpg"), "sad", 3),
    ]


def test_csv_rejects_escaping_paths_and_lists_missing_images_by_row(tmp_path):
    (tmp_path / "data").mkdir()
    image(tmp_path / "outside.png")
    image(tmp_path / "data" / "ok.png")
    rows = ["path,label", "ok.png,happy", "../outside.png,sad", "/etc/passwd,sad", "gone.png,fear", "gone2.png,fear"]
    (tmp_path / "data" / "set.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ExternalSetError) as error:
        read_external_set(tmp_path / "data" / "set.csv")
    message = str(error.value)
    assert "set.csv: 4 unusable row(s)" in message
    assert "row 3: path '../outside.png' contains '..'" in message
    assert "row 4: path '/etc/passwd' is absolute" in message
    assert "row 5: image 'gone.png' not found" in message and "row 6: image 'gone2.png' not found" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("file,label\na.png,happy\n", r"missing column\(s\) \['path'\]"),
        ("path,label\n", "has no images"),
        ("", r"missing column\(s\) \['path', 'label'\]"),
    ],
)
def test_csv_structure_errors_name_the_file(tmp_path, content, expected):
    (tmp_path / "set.csv").write_text(content)
    with pytest.raises(ExternalSetError, match=f"set.csv: .*{expected}"):
        read_external_set(tmp_path / "set.csv")


def test_empty_folder_and_missing_path_are_errors(tmp_path):
    (tmp_path / "happy").mkdir()
    with pytest.raises(ExternalSetError, match="has no images"):
        read_external_set(tmp_path)
    with pytest.raises(ExternalSetError, match="no such evaluation set"):
        read_external_set(tmp_path / "nope")


def test_basic8_maps_every_class_onto_a_taxonomy_emotion(taxonomy, rollups):
    mapping = read_class_mapping(BASIC8_MAPPING_PATH, taxonomy, rollups)
    assert set(mapping.targets) == {"happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"}
    for target in mapping.targets.values():
        assert len(target.emotion_ids) == 1 and target.emotion_ids[0] in taxonomy.by_id
    assert mapping.targets["happy"].emotion_ids == ("elation",)
    assert mapping.targets["surprise"].emotion_ids == ("astonishment_surprise",)
    assert (mapping.fallback, mapping.fallback_below) == ("neutral", 1.0)
    basic8 = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"]
    check_mapping(basic8, mapping)


def test_rollup_level_targets_resolve_to_member_emotions(taxonomy, rollups):
    mapping = read_class_mapping({"bad": "Valence:Negative", "odd": "group:No Such Group"}, taxonomy, rollups)
    negative = sorted(e.id for e in taxonomy.emotions if taxonomy.group_by_id[e.group].valence == "negative")
    assert list(mapping.targets["bad"].emotion_ids) == negative
    assert mapping.targets["odd"].emotion_ids == ()


def test_check_mapping_lists_every_unmapped_class_and_unknown_target(taxonomy, rollups):
    mapping = read_class_mapping({"happy": "Elation", "sad": "Melancholy Blues"}, taxonomy, rollups)
    with pytest.raises(ExternalSetError) as error:
        check_mapping(["happy", "angry", "sad", "calm", "angry"], mapping)
    message = str(error.value)
    assert "classes of the set with no mapping: ['angry', 'calm']" in message
    assert "class 'sad': 'Melancholy Blues' names no taxonomy emotion or rollup level" in message


def test_check_mapping_rejects_classes_sharing_a_target_only_when_both_occur(taxonomy, rollups):
    mapping = read_class_mapping({"anger": "Anger", "angry": "anger"}, taxonomy, rollups)
    check_mapping(["angry"], mapping)
    with pytest.raises(ExternalSetError, match=r"classes \['anger', 'angry'\] map to the same target"):
        check_mapping(["anger", "angry"], mapping)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"classes": {"happy": "Elation"}, "fallback": {"class": "happy"}}, "also mapped"),
        ({"classes": {"happy": "Elation"}, "fallback": {"class": "neutral", "below": "low"}}, "must be a number"),
        ({"happy": 3}, r"classes \['happy'\] must map"),
        ({}, "empty"),
    ],
)
def test_malformed_mappings_are_rejected(taxonomy, rollups, data, expected):
    with pytest.raises(ExternalSetError, match=expected):
        read_class_mapping(data, taxonomy, rollups)


def planted(taxonomy, rollups):
    """Five photos of a 3-class set plus neutral, with the model's intensities for the mapped emotions."""
    mapping = read_class_mapping(
        {"classes": {"happy": "Elation", "sad": "Sadness", "upset": "valence:negative"}, "fallback": {"class": "calm"}},
        taxonomy,
        rollups,
    )
    truth = pl.DataFrame({"path": ["p1", "p2", "p3", "p4", "p5"], "label": ["happy", "happy", "sad", "upset", "calm"]})
    scores = {
        "p1": {"elation": 5.0, "sadness": 1.0, "anger": 0.0},  # happy, right
        "p2": {"elation": 2.0, "sadness": 0.5, "anger": 3.0},  # upset (anger is negative), wrong
        "p3": {"elation": 0.0, "sadness": 4.0, "anger": 1.0},  # sad, right; upset scores 4 too but sad comes first
        "p4": {"elation": 0.0, "sadness": 0.2, "anger": 6.0},  # upset, right
        "p5": {"elation": 0.6, "sadness": 0.3, "anger": 0.0},  # nothing reaches 1: calm, right
    }
    rows = [(path, e.id, by_emotion.get(e.id, 0.0)) for path, by_emotion in scores.items() for e in taxonomy.emotions]
    predictions = pl.DataFrame(rows, schema=["path", "emotion_id", "predicted"], orient="row")
    return predictions, truth, mapping


def test_score_external_on_a_planted_set(taxonomy, rollups):
    predictions, truth, mapping = planted(taxonomy, rollups)
    score = score_external(predictions, truth, mapping)
    assert score.accuracy == pytest.approx(4 / 5)
    assert score.per_image["predicted_label"].to_list() == ["happy", "upset", "sad", "upset", "calm"]
    assert score.confusion.rows() == [
        ("happy", 1, 0, 1, 0),
        ("sad", 0, 1, 0, 0),
        ("upset", 0, 0, 1, 0),
        ("calm", 0, 0, 0, 1),
    ]
    assert score.confusion.columns == ["label", "happy", "sad", "upset", "calm"]
    per_class = {r["label"]: r for r in score.per_class.iter_rows(named=True)}
    assert (per_class["happy"]["support"], per_class["happy"]["recall"]) == (2, 0.5)
    assert per_class["upset"]["precision"] == 0.5 and per_class["calm"]["recall"] == 1.0
    f1 = [2 / 3, 1.0, 2 / 3, 1.0]
    assert score.macro_f1 == pytest.approx(sum(f1) / 4)


def test_neutral_threshold_decides_the_fallback(taxonomy, rollups):
    predictions, truth, mapping = planted(taxonomy, rollups)
    lowered = score_external(predictions, truth, mapping, fallback_below=0.5)
    assert lowered.per_image["predicted_label"][4] == "happy"
    raised = score_external(predictions, truth, mapping, fallback_below=4.5)
    assert raised.per_image["predicted_label"].to_list() == ["happy", "calm", "calm", "upset", "calm"]


def test_classes_absent_from_the_set_are_never_predicted(taxonomy, rollups):
    predictions, truth, mapping = planted(taxonomy, rollups)
    score = score_external(predictions, truth.filter(pl.col("label") != "upset"), mapping)
    assert score.confusion.columns == ["label", "happy", "sad", "calm"]
    assert score.per_image["predicted_label"].to_list() == ["happy", "happy", "sad", "calm"]


def test_missing_predictions_are_listed(taxonomy, rollups):
    predictions, truth, mapping = planted(taxonomy, rollups)
    partial = predictions.filter(~((pl.col("path") == "p2") & (pl.col("emotion_id") == "sadness")))
    with pytest.raises(ExternalSetError, match=r"lack the mapped emotions for 1 image\(s\):\n  p2"):
        score_external(partial, truth, mapping)
