"""The demo's expert panel: simulated ratings of the generated images, landed in every supported format.

The images are split into four groups, each rated in one format and referred to the way that format's
files usually do (release-style id, declared as positional, sha256, URL, prompt id); a fifth file rates images
of an external collection, so both resolution paths run end to end.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import polars as pl

from emonet_assets.lib.landing import BatchDeclaration, land_file
from emonet_assets.lib.shard_generation import MANIFEST_TABLE
from emonet_assets.lib.simulated_panel import (
    PanelSpec,
    ground_truth,
    simulate_ratings,
    write_hq_csv,
    write_label_studio_json,
    write_long_csv,
)
from emonet_assets.lib.storage import Store
from emonet_assets.lib.taxonomy import Taxonomy

EXTERNAL_COLLECTION = "emonet-hq-sample"


def land_demo_panel(
    store: Store, landing: str, taxonomy: Taxonomy, spec: PanelSpec | None = None, external_images: int = 12
) -> dict[str, str]:
    """Write the panel's files into the landing zone; returns file name -> landed path."""
    spec = spec or PanelSpec()
    images = store.read_table(MANIFEST_TABLE).sort("position")
    images = images.with_columns(release_id=pl.col("position").cast(pl.String).str.zfill(5))
    groups = [images[i::4] for i in range(4)]
    emotions = [e.name for e in taxonomy.emotions]
    generated = BatchDeclaration()
    plan = [
        ("panel-intensity.csv", groups[0]["release_id"].to_list(), "long", BatchDeclaration(positional_ids=True)),
        ("panel-hq.csv", groups[1]["image_sha256"].to_list(), "hq", generated),
        ("panel-label-studio.json", groups[2]["image_path"].to_list(), "label-studio", generated),
        ("panel-binary.csv", groups[3]["prompt_id"].to_list(), "binary", generated),
        (
            f"{EXTERNAL_COLLECTION}.csv",
            [f"{i:05d}" for i in range(external_images)],
            "hq",
            BatchDeclaration(collection=EXTERNAL_COLLECTION),
        ),
    ]
    landed = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed_offset, (name, refs, kind, declaration) in enumerate(plan):
            group_spec = dataclasses.replace(spec, seed=spec.seed + seed_offset)
            ratings = simulate_ratings(ground_truth(refs, emotions, group_spec), group_spec)
            path = Path(tmp) / name
            if kind == "long":
                write_long_csv(ratings, path)
            elif kind == "binary":
                write_long_csv(ratings, path, binary=True)
            elif kind == "hq":
                write_hq_csv(ratings, path)
            else:
                write_label_studio_json(ratings, path, image_url=lambda ref: f"/data/local-files/?d={ref}")
            landed[name] = land_file(store, landing, name, path.read_bytes(), declaration)[0]
    return landed
