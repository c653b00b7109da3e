"""Prompt design throughput at production budgets, against the cost of only formatting the same prompts.

The baseline formats the release template for every position with no balancing, hashing or
seeding: the ratio says what the design's guarantees cost on top of string work.
"""

import polars as pl

from bench.common import best_of, peak_rss_mb
from emonet_assets.lib.design.prompt_design import RELEASE_TEMPLATE, DesignSpec, build_design
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy


def baseline(total: int, tax) -> pl.DataFrame:
    emotions = tax.emotions
    rows = [
        RELEASE_TEMPLATE.format(ethnicity="White", gender="man", age=30, cluster=emotions[i % 40].cluster[0])
        for i in range(total)
    ]
    return pl.DataFrame({"prompt": rows})


def main() -> None:
    tax = load_taxonomy()
    for label, spec in (
        ("2 per cell (23,520 prompts)", DesignSpec(seed=1, n_per_cell=2, shard_size=256)),
        (
            "100,000 prompts, robustness axes on",
            DesignSpec(
                seed=1,
                total=100_000,
                shard_size=256,
                occlusion=("none", "face_mask", "sunglasses", "hand", "helmet"),
                lighting=("studio", "dim", "harsh_side", "backlit"),
                pose=("frontal", "three_quarter"),
            ),
        ),
    ):
        total = spec.total or spec.n_per_cell * 11_760
        design_s = best_of(lambda spec=spec: build_design(spec, tax), repeat=2)
        base_s = best_of(lambda total=total: baseline(total, tax), repeat=2)
        print(
            f"{label}: design {design_s:.2f} s ({total / design_s:,.0f} prompts/s), "
            f"format-only baseline {base_s:.2f} s, ratio design/baseline {design_s / base_s:.1f}x"
        )
    print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
