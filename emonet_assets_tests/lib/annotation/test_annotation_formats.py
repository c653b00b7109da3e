"""The malformed-file corpus: each file gets a clear whole-file message or precise rejects, never a traceback."""

import codecs
import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from emonet_assets.lib.annotation.annotation_formats import AnnotationFileError, parse_annotation_file
from emonet_assets.lib.annotation.annotation_import import REJECT_REASONS, SKIP_REASONS, ImageIndex, import_batch
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy

CORPUS = Path(__file__).parents[2] / "data" / "malformed_annotations"
LS_SHA = "a" * 64

# file -> the words the whole-file message must contain
FILE_ERRORS = {
    "empty.csv": "the file is empty",
    "whitespace_only.csv": "the file is empty",
    "header_only.csv": "header but no data rows",
    "header_and_blank_lines.csv": "header but no data rows",
    "pipe_delimited.csv": "delimited by something other than",
    "unknown_columns.csv": "cannot tell the annotation format",
    "missing_annotator_column.csv": "missing required column(s) ['annotator']",
    "latin1_bytes.csv": "not UTF-8 text: byte 0xfc at offset 60 (line 3)",
    "unbalanced_quotes.csv": "line 3: a quoted field starting on this line is never closed",
    "json_not_a_list.json": "a JSON list of tasks, but the file holds a JSON object with keys 'tasks', 'total'",
    "json_empty_list.json": "empty list: no tasks",
    "json_syntax_error.json": "not valid JSON: Expecting value at line 3",
    "json_task_not_object.json": "tasks[1] is a string 'oops', not a task object",
}

# file -> (accepted, {reason: count} over rejects and skips)
ROW_OUTCOMES = {
    "binary_not_binary.csv": (2, {"not_binary": 1}),
    "duplicated_rows.csv": (2, {"duplicate_in_batch": 2}),
    "empty_annotator.csv": (1, {"empty_annotator": 1}),
    "extra_columns.csv": (2, {}),
    "float_intensity.csv": (1, {"not_an_integer": 1}),
    "hq_broken_dict.csv": (2, {"unparseable_annotations": 1}),
    "hq_not_a_dict.csv": (0, {"unparseable_annotations": 1, "empty_annotation": 1}),
    "intensity_above_scale.csv": (1, {"out_of_scale": 1}),
    "label_studio_cancelled_and_empty.json": (1, {"cancelled": 1, "empty_annotation": 1, "out_of_scale": 1}),
    "missing_image_ref.csv": (1, {"missing_image_ref": 1}),
    "nan_values.csv": (1, {"missing_value": 3}),
    "negative_intensity.csv": (1, {"out_of_scale": 1}),
    "path_traversal.csv": (1, {"unsafe_image_path": 2}),
    "semicolon_delimited.csv": (2, {}),
    "tab_delimited.tsv": (1, {}),
    "text_in_numeric_field.csv": (2, {"not_a_number": 1}),
    "too_many_fields.csv": (1, {"malformed_row": 1}),
    "truncated_last_line.csv": (2, {"unknown_emotion": 1}),
    "unknown_emotion.csv": (1, {"unknown_emotion": 1}),
    "unknown_image.csv": (1, {"unknown_image": 1}),
    "utf8_bom.csv": (1, {}),
    "duplicate_of_earlier_batch.csv": (2, {}),
}


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


@pytest.fixture(scope="module")
def images():
    refs = {LS_SHA: LS_SHA, f"images/aa/aa/{LS_SHA}.png": LS_SHA, "p-0123": LS_SHA}
    return ImageIndex(refs, positions={f"{i:05d}": f"{i:064x}" for i in range(3)})


def _import(name: str, taxonomy, images, **kwargs):
    """The corpus names images by release-style id, declared as prompt positions."""
    parsed = parse_annotation_file(name, (CORPUS / name).read_bytes())
    return parsed, import_batch(parsed, "batch-1", taxonomy, images, **{"positional_ids": True, **kwargs})


def _reasons(result) -> dict[str, int]:
    counts = result.reason_counts()
    assert counts["meaning"].null_count() == 0, "every reason is documented"
    return dict(counts.select("reason", "rows").iter_rows())


def test_corpus_covers_every_file_and_at_least_twenty():
    files = {p.name for p in CORPUS.iterdir()}
    assert files == set(FILE_ERRORS) | set(ROW_OUTCOMES)
    assert len(files) >= 20


@pytest.mark.parametrize("name", sorted(FILE_ERRORS))
def test_unreadable_files_are_rejected_whole_with_the_file_named(name):
    with pytest.raises(AnnotationFileError) as caught:
        parse_annotation_file(name, (CORPUS / name).read_bytes())
    message = str(caught.value)
    assert message.startswith(f"{name}: ")
    assert FILE_ERRORS[name] in message


@pytest.mark.parametrize("name", sorted(ROW_OUTCOMES))
def test_row_problems_become_precise_rejects_and_good_rows_land(name, taxonomy, images):
    accepted, reasons = ROW_OUTCOMES[name]
    _, result = _import(name, taxonomy, images)
    counts = result.counts
    assert counts["accepted"] == accepted
    assert _reasons(result) == reasons
    assert counts["rows_read"] == counts["accepted"] + counts["rejected"] + counts["skipped"]
    assert set(result.rejects["reason"]) <= set(REJECT_REASONS)
    assert set(result.skipped["reason"]) <= set(SKIP_REASONS)
    assert result.rejects["source_row"].null_count() == 0
    assert result.rejects["detail"].null_count() == 0


def test_rejects_name_the_line_and_the_reason(taxonomy, images):
    _, result = _import("intensity_above_scale.csv", taxonomy, images)
    reject = result.rejects.row(0, named=True)
    assert reject["source_file"] == "intensity_above_scale.csv"
    assert reject["source_ref"] == "line 2"
    assert reject["value_raw"] == "8"
    assert reject["detail"] == "8 is outside 0–7"
    _, result = _import("too_many_fields.csv", taxonomy, images)
    assert result.rejects.row(0, named=True)["source_ref"] == "line 3"
    assert "more fields than the header's 4" in result.rejects.row(0, named=True)["detail"]


def test_delimiters_other_than_comma_are_detected_and_noted(taxonomy, images):
    parsed, result = _import("semicolon_delimited.csv", taxonomy, images)
    assert parsed.notes == ("delimiter ';' detected",)
    assert result.accepted["emotion_id"].to_list() == ["elation", "amusement"]


def test_bom_does_not_hide_the_first_column(taxonomy, images):
    _, result = _import("utf8_bom.csv", taxonomy, images)
    assert result.accepted.row(0, named=True)["image_id"] == f"{0:064x}"


def test_extra_columns_are_reported_as_ignored(taxonomy, images):
    parsed, result = _import("extra_columns.csv", taxonomy, images)
    assert parsed.ignored_columns == ("rated_at", "comment")
    assert result.counts["accepted"] == 2


def test_duplicates_against_earlier_batches_are_rejected(taxonomy, images):
    _, first = _import("duplicate_of_earlier_batch.csv", taxonomy, images)
    _, again = _import("duplicate_of_earlier_batch.csv", taxonomy, images, earlier_keys=first.accepted)
    assert again.counts["accepted"] == 0
    assert _reasons(again) == {"duplicate_of_earlier_batch": 2}
    assert set(again.rejects["detail"]) == {"already imported by batch batch-1"}


def test_very_large_file_is_refused_before_parsing(tmp_path):
    big = tmp_path / "huge.csv"
    row = b"00000,human-1,3,Elation\n"
    big.write_bytes(b"path,annotator,value,emotion\n" + row * 200_000)
    with pytest.raises(AnnotationFileError, match=r"huge.csv: 4,800,029 bytes is over the 1,000,000-byte limit"):
        parse_annotation_file("huge.csv", big.read_bytes(), max_bytes=1_000_000)


def test_explicit_format_that_does_not_fit_is_refused():
    data = (CORPUS / "utf8_bom.csv").read_bytes()
    with pytest.raises(AnnotationFileError, match="hq"):
        parse_annotation_file("utf8_bom.csv", data, fmt="hq")
    with pytest.raises(AnnotationFileError, match="unknown format 'xml'"):
        parse_annotation_file("utf8_bom.csv", data, fmt="xml")


def test_release_binary_long_csv(taxonomy, images):
    data = b"path,annotator,value,emotion\n00000,human-1,True,Elation\n00001,human-1,False,Anger\n"
    parsed = parse_annotation_file("binary.csv", data)
    result = import_batch(parsed, "b", taxonomy, images, positional_ids=True)
    assert (parsed.format, parsed.scale) == ("long", "binary")
    assert result.accepted.select("emotion_id", "value").rows() == [("elation", 1), ("anger", 0)]
    assert result.accepted["value"].dtype == pl.Int32


def test_hq_rows_read_json_and_python_literals_and_keep_extra_dimensions(taxonomy, images):
    data = (
        b"image,annotator,human,annotations\n"
        b'00000,human-1,True,"{""Elation"": 3, ""Extra Dimensions|Authenticity"": 5}"\n'
        b"00001,human-2,True,\"{'Amusement': 2, 'Contentment': 0}\"\n"
    )
    parsed = parse_annotation_file("hq.csv", data)
    result = import_batch(parsed, "b", taxonomy, images, positional_ids=True)
    assert parsed.format == "hq"
    assert sorted(result.accepted.select("image_ref", "emotion_id", "value").rows()) == [
        ("00000", "elation", 3),
        ("00001", "amusement", 2),
        ("00001", "contentment", 0),
    ]
    extra = result.extras.row(0, named=True)
    assert (extra["dimension"], extra["value"], extra["image_id"]) == ("Authenticity", 5.0, f"{0:064x}")


def test_label_studio_reads_rating_number_and_choices(taxonomy, images):
    tasks = [
        {
            "id": 1,
            "data": {"image": f"/data/local-files/?d=images/aa/aa/{LS_SHA}.png"},
            "annotations": [
                {
                    "completed_by": {"id": 4, "email": "r@lab.org"},
                    "result": [
                        {"from_name": "elation", "type": "rating", "value": {"rating": 4}},
                        {"from_name": "anger", "type": "number", "value": {"number": 0}},
                        {"from_name": "Amusement", "type": "choices", "value": {"choices": ["2"]}},
                    ],
                },
                {"completed_by": 5, "was_cancelled": True, "result": []},
            ],
        }
    ]
    parsed = parse_annotation_file("export.json", json.dumps(tasks).encode())
    result = import_batch(parsed, "b", taxonomy, images)
    assert parsed.format == "label-studio"
    assert sorted(result.accepted.select("annotator", "emotion_id", "value").rows()) == [
        ("r@lab.org", "amusement", 2),
        ("r@lab.org", "anger", 0),
        ("r@lab.org", "elation", 4),
    ]
    assert set(result.accepted["image_id"]) == {LS_SHA}
    assert _reasons(result) == {"cancelled": 1}


def test_labels_resolve_through_aliases(taxonomy, images):
    data = b"path,annotator,value,emotion\n00000,h,3,schadenfreude\n00001,h,3, ELATION \n"
    result = import_batch(parse_annotation_file("a.csv", data), "b", taxonomy, images, positional_ids=True)
    assert result.accepted["emotion_id"].to_list() == ["malevolence_malice", "elation"]


def test_labels_read_through_an_alias_or_cluster_word_are_reported_with_their_rows(taxonomy, images):
    rows = [f"{LS_SHA},h{i},3,Happiness" for i in range(3)]
    rows += [f"{LS_SHA},h,3,schadenfreude", f"{LS_SHA},h,3, ELATION ", f"{LS_SHA},h,3,Anger", f"{LS_SHA},h,3,nope"]
    data = ("path,annotator,value,emotion\n" + "\n".join(rows) + "\n").encode()
    result = import_batch(parse_annotation_file("a.csv", data), "b", taxonomy, images)
    assert result.counts["accepted"] == 6
    assert result.label_mappings.rows() == [("Happiness", "elation", 3), ("schadenfreude", "malevolence_malice", 1)]
    assert result.label_notes() == [
        "label 'Happiness' read as elation (3 rows)",
        "label 'schadenfreude' read as malevolence_malice (1 row)",
    ]


def test_numbers_name_generated_images_only_when_declared_as_prompt_positions(taxonomy, images):
    """The release numbers its own images 00000, 00001, ...; read as positions they would rate generated ones."""
    refs = ["00000", "1", "release/00002.png", "00002.jpg", LS_SHA, f"images/aa/aa/{LS_SHA}.png", "p-0123", "img_7"]
    data = ("path,annotator,value,emotion\n" + "".join(f"{r},h{i},True,Elation\n" for i, r in enumerate(refs))).encode()
    parsed = parse_annotation_file("binary_annotations.csv", data)

    refused = import_batch(parsed, "b", taxonomy, images)
    assert refused.accepted["image_ref"].to_list() == refs[4:7]
    assert _reasons(refused) == {"positional_id": 4, "unknown_image": 1}
    positional = refused.rejects.filter(pl.col("reason") == "positional_id")
    assert positional["image_ref"].to_list() == refs[:4]
    assert all("--collection" in d and "--positional-ids" in d for d in positional["detail"])
    assert "--collection" in REJECT_REASONS["positional_id"] and "positional_ids" in REJECT_REASONS["positional_id"]
    assert refused.counts["rows_read"] == refused.counts["accepted"] + refused.counts["rejected"] == len(refs)

    declared = import_batch(parsed, "b", taxonomy, images, positional_ids=True)
    assert declared.accepted["image_id"].to_list() == [f"{i:064x}" for i in (0, 1, 2, 2)] + [LS_SHA] * 3
    assert _reasons(declared) == {"unknown_image": 1}

    external = import_batch(parsed, "b", taxonomy, images, collection="emonet-binary")
    stems = ["00000", "00001", "00002", "00002", LS_SHA, LS_SHA, "p-0123", "img_7"]
    assert external.accepted["image_id"].to_list() == [f"emonet-binary/{stem}" for stem in stems]


def test_image_index_reads_positions_apart_from_ids():
    manifest = pl.DataFrame(
        {"prompt_id": ["p-a", "p-b"], "image_sha256": ["a" * 64, "b" * 64], "image_path": ["i/a.png", "i/b.png"]}
    )
    index = ImageIndex.from_tables(manifest, pl.DataFrame({"prompt_id": ["p-a", "p-b"], "position": [0, 12]}))
    assert index.positions == {"00000": "a" * 64, "00012": "b" * 64}
    assert sorted(index.refs) == sorted(["p-a", "p-b", "a" * 64, "b" * 64, "i/a.png", "i/b.png"])


EXCEL_UNICODE_TEXT = "image\tannotator\tvalue\temotion\r\n" + f"{LS_SHA}\tJosé\t3\tElation\r\n"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("ratings.csv.gz", gzip.compress(EXCEL_UNICODE_TEXT.encode(), mtime=0)),
        ("ratings.csv", gzip.compress(EXCEL_UNICODE_TEXT.encode(), mtime=0)),
        ("ratings.txt", codecs.BOM_UTF16_LE + EXCEL_UNICODE_TEXT.encode("utf-16-le")),
        ("ratings.txt", codecs.BOM_UTF16_BE + EXCEL_UNICODE_TEXT.encode("utf-16-be")),
        ("ratings.txt.gz", gzip.compress(codecs.BOM_UTF16_LE + EXCEL_UNICODE_TEXT.encode("utf-16-le"), mtime=0)),
    ],
    ids=["gzip", "gzip-without-suffix", "utf16-le-bom", "utf16-be-bom", "gzip-utf16"],
)
def test_gzip_and_utf16_with_a_byte_order_mark_are_read(name, data, taxonomy, images):
    parsed = parse_annotation_file(name, data)
    result = import_batch(parsed, "b", taxonomy, images)
    assert parsed.notes == ("delimiter tab detected",)
    assert result.accepted.select("image_id", "annotator", "emotion_id", "value").rows() == [
        (LS_SHA, "José", "elation", 3)
    ]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("r.csv.gz", b"path,annotator\n", "compress it again with gzip, or import it uncompressed"),
        ("r.csv.gz", gzip.compress(b"path,annotator,value,emotion\n", mtime=0)[:-4], "not a readable gzip file"),
        ("r.xlsx", b"PK\x03\x04\x14\x00", "a ZIP archive (an Excel .xlsx workbook is one), not text: save it as CSV"),
        ("r.txt", "path,annotator".encode("utf-16-le"), "NUL bytes (UTF-16 without a byte-order mark?); save it as"),
        ("r.txt", codecs.BOM_UTF16_LE + b"p\x00\x00\xdc", "UTF-16 text that cannot be decoded at byte 4; save it"),
        ("r.csv", b"path,annotator\n\xfc", "cannot be decoded; save it as CSV UTF-8"),
    ],
    ids=["gz-suffix-not-gzip", "truncated-gzip", "xlsx", "utf16-no-bom", "utf16-undecodable", "not-utf8"],
)
def test_files_still_refused_say_what_to_do(name, data, message):
    with pytest.raises(AnnotationFileError) as caught:
        parse_annotation_file(name, data)
    assert str(caught.value).startswith(f"{name}: ") and message in str(caught.value)


def test_the_size_limit_holds_for_what_a_gzip_file_unpacks_to():
    data = gzip.compress(b"path,annotator,value,emotion\n" + b"00000,h,3,Elation\n" * 100_000)
    assert len(data) < 100_000
    with pytest.raises(AnnotationFileError, match="over the 100,000-byte limit once decompressed; split it"):
        parse_annotation_file("big.csv.gz", data, max_bytes=100_000)


def test_external_collection_registers_images_without_pixels(taxonomy, images):
    data = b"path,annotator,value,emotion\nrelease/img_123.png,h,3,Elation\nrelease/img_123.png,h,1,Anger\n"
    result = import_batch(parse_annotation_file("r.csv", data), "b", taxonomy, images, collection="emonet-hq")
    assert set(result.accepted["image_id"]) == {"emonet-hq/img_123"}
    assert set(result.accepted["collection"]) == {"emonet-hq"}
    assert result.external_images.rows() == [("emonet-hq", "emonet-hq/img_123", "release/img_123.png", "b")]
    refused = import_batch(parse_annotation_file("r.csv", data), "b", taxonomy, images)
    assert _reasons(refused) == {"unknown_image": 2}
    with pytest.raises(ValueError, match="reserved"):
        import_batch(parse_annotation_file("r.csv", data), "b", taxonomy, images, collection="generated")
