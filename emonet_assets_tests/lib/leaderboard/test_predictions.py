import io
import json

import polars as pl
import pytest

from emonet_assets.lib.annotation.annotation_import import ImageIndex
from emonet_assets.lib.leaderboard.predictions import PredictionsFileError, load_predictions
from emonet_assets.lib.leaderboard.registry import (
    PredictionsDeclaration,
    RegistryError,
    land_predictions,
    model_key,
    predictions_entries,
)
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy

TAXONOMY = load_taxonomy()
IMAGES = ImageIndex(refs={"p1": "sha1", "sha1": "sha1", "p2": "sha2", "sha2": "sha2"})


def test_a_wide_csv_resolves_prompt_ids_and_aliases_and_rejects_with_reasons():
    body = b"prompt_id,Amusement,Elation,Nonsense\np1,3,7,1\np2,,9,2\nunknown,1,1,1\np1,4,4,4\n"
    result = load_predictions("m.csv", body, TAXONOMY, IMAGES, None, "0-7")
    assert result.layout == "wide" and result.rows_read == 12
    assert result.accepted.height + result.rejects.height == result.rows_read
    first = result.accepted.filter(pl.col("source_row") == 1).sort("emotion_id")
    assert first.select("image_id", "emotion_id", "score").rows() == [
        ("sha1", "amusement", 3.0),
        ("sha1", "elation", 7.0),
    ]
    reasons = dict(result.reason_counts().iter_rows())
    assert reasons == {"unknown_emotion": 3, "unknown_image": 3, "duplicate": 2, "missing_value": 1, "out_of_scale": 1}


def test_a_long_jsonl_on_the_logit_scale_gets_intensities_and_nan_is_missing():
    lines = [
        {"image": "sha1", "emotion": "amusement", "score": 0.0},
        {"image": "sha2", "emotion": "amusement", "score": float("nan")},
        {"image": "sha2", "emotion": "amusement", "score": "high"},
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    result = load_predictions("m.jsonl", body, TAXONOMY, IMAGES, None, "logit")
    assert result.layout == "long"
    assert result.accepted["intensity"].to_list() == [pytest.approx(3.5)]
    assert result.rejects["reason"].to_list() == ["missing_value", "not_a_number"]


def test_parquet_with_release_ids_of_a_collection_and_ranks_without_intensity():
    buffer = io.BytesIO()
    pl.DataFrame({"image": ["00017", "00018"], "amusement": [2, 1]}).write_parquet(buffer)
    result = load_predictions("m.parquet", buffer.getvalue(), TAXONOMY, IMAGES, "hq", "rank")
    assert result.accepted["image_id"].to_list() == ["hq/00017", "hq/00018"]
    assert result.accepted["intensity"].null_count() == 2


def test_an_unreadable_file_is_rejected_whole_with_its_name():
    with pytest.raises(PredictionsFileError, match="m.xlsx"):
        load_predictions("m.xlsx", b"", TAXONOMY, IMAGES, None, "0-7")
    with pytest.raises(PredictionsFileError, match="no image column"):
        load_predictions("m.csv", b"a,b\n1,2\n", TAXONOMY, IMAGES, None, "0-7")


def test_two_files_under_one_name_are_two_versions_and_a_bad_declaration_is_listed_rejected(tmp_path):
    store = Store(str(tmp_path))
    declared = PredictionsDeclaration(name="mine", scale="0-1")
    first = land_predictions(store, "landing/predictions", "a.csv", b"image,joy\np1,1\n", declared)
    second = land_predictions(store, "landing/predictions", "a.csv", b"image,joy\np1,0\n", declared)
    land_predictions(store, "landing/predictions", "a.csv", b"image,joy\np1,1\n", declared)
    store.write_bytes("landing/predictions/stray.csv", b"image,joy\n")
    entries = predictions_entries(store, "landing/predictions")
    registered = entries.filter(pl.col("status") == "registered")
    assert sorted(registered["model_key"]) == sorted([model_key("mine", first), model_key("mine", second)])
    assert "no stray.csv.model.json" in entries.filter(pl.col("status") == "rejected")["message"][0]
    with pytest.raises(RegistryError, match="scale"):
        PredictionsDeclaration(name="mine", scale="0-100")
