import polars as pl

from emonet_assets.lib.generation.dataset_qc import reason_counts


def test_reason_counts_group_reasons_by_kind():
    qc = pl.DataFrame(
        {
            "reasons": [
                ["does not decode: cannot identify image file"],
                ["size 64x32, expected 64x64", "blank or near-constant (std 0.3)"],
                ["near-duplicate of abc (distance 0)"],
                ["near-duplicate of def (distance 2)"],
                [],
            ]
        }
    )
    counts = dict(reason_counts(qc).iter_rows())
    assert counts == {"near-duplicate": 2, "does not decode": 1, "wrong size": 1, "blank or near-constant": 1}
