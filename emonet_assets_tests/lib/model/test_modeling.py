import numpy as np
import polars as pl

from emonet_assets.lib.model.modeling import consensus_matrix, predictions_frame
from emonet_assets.lib.shared.lineage import frame_hash


def consensus(rows):
    return pl.DataFrame(
        rows, schema=["collection", "scale", "image_id", "emotion_id", "median_rating"], orient="row"
    ).with_columns(pl.col("median_rating").cast(pl.Float64))


def test_consensus_matrix_follows_the_given_orders_and_leaves_gaps_as_nan():
    table = consensus(
        [
            ("generated", "intensity", "b", "joy", 3.0),
            ("generated", "intensity", "a", "fear", 1.5),
            ("generated", "binary", "a", "joy", 1.0),
            ("emonet-hq", "intensity", "a", "joy", 7.0),
        ]
    )
    matrix = consensus_matrix(table, ["a", "b", "c"], ["joy", "fear", "awe"])
    expected = np.array([[np.nan, 1.5, np.nan], [3.0, np.nan, np.nan], [np.nan, np.nan, np.nan]], dtype=np.float32)
    np.testing.assert_array_equal(matrix, expected)


def test_frame_hash_ignores_row_order_and_sees_content():
    frame = pl.DataFrame({"image_sha256": ["a", "b", "c"], "split": ["train", "test", "train"]})
    assert frame_hash(frame) == frame_hash(frame.reverse())
    assert frame_hash(frame) != frame_hash(frame.with_columns(split=pl.lit("train")))


def test_predictions_frame_is_long_with_one_row_per_image_and_emotion():
    frame = predictions_frame(["a", "b"], np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32), ["joy", "fear"])
    assert frame.rows() == [("a", "joy", 1.0), ("a", "fear", 2.0), ("b", "joy", 3.0), ("b", "fear", 4.0)]
