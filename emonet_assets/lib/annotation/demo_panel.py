"""The demo's expert panel: simulated ratings of the generated images, landed in every supported format.

The panel rates what each image shows: it sees an image through the profile's own embedding backbone and rates
through a fixed perception function of that embedding (simulated_panel.PERCEPTION), so the model the demo trains
on the same embeddings has something to learn, and learning it shows the plumbing (ratings reach the right images,
splits, training, evaluation) works; it says nothing about recognising emotions in faces.

The images are split into four groups, each rated in one format and referred to the way that format's
files usually do (release-style id, declared as positional, sha256, URL, prompt id); a fifth file rates images
of an external collection, so both resolution paths run end to end. The demo holds no pixels of that collection,
so its ratings come from `ground_truth`, drawn per image id.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from emonet_assets.lib.annotation.landing import BatchDeclaration, land_file
from emonet_assets.lib.annotation.simulated_panel import (
    PanelSpec,
    ground_truth,
    perceived_truth,
    simulate_ratings,
    write_hq_csv,
    write_label_studio_json,
    write_long_csv,
)
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table
from emonet_assets.lib.taxonomy.taxonomy import Taxonomy

if TYPE_CHECKING:  # torch loads with it
    from emonet_assets.lib.model.embedding import Embedder

EXTERNAL_COLLECTION = "emonet-hq-sample"
# How the panel rated, for a reader of the storage root: next to the reports, not in the landing zone, whose every
# file is taken for ratings.
PANEL_METADATA_PATH = "reports/simulated_panel.json"


def perceived_images(
    store: Store, images: pl.DataFrame, embedder: Embedder, spec: PanelSpec, emotions: list[str]
) -> pl.DataFrame:
    """The panel's true intensities of the manifest rows `images` that the backbone can read (an image it cannot
    decode is not rated): one row per (image, emotion), keyed by image_sha256, in the order of `images`."""
    seen = embedder.embed([(row["image_sha256"], store.read_bytes(row["image_path"])) for row in images.to_dicts()])
    table = images.select("image_sha256").join(seen.table, on="image_sha256", maintain_order="left")
    features = np.asarray(table["embedding"].to_list(), dtype=np.float64)
    truth = perceived_truth(table["image_sha256"].to_list(), features, emotions, spec)
    return truth.rename({"image_ref": "image_sha256"})


def land_demo_panel(
    store: Store,
    landing: str,
    taxonomy: Taxonomy,
    embedder: Embedder,
    spec: PanelSpec | None = None,
    external_images: int = 12,
) -> dict[str, str]:
    """Write the panel's files into the landing zone, and its description to PANEL_METADATA_PATH; returns file
    name -> landed path."""
    spec = spec or PanelSpec()
    emotions = [e.name for e in taxonomy.emotions]
    images = store.read_table(Table.GENERATED_IMAGES).sort("position")
    truth = perceived_images(store, images, embedder, spec, emotions)
    images = images.filter(pl.col("image_sha256").is_in(truth["image_sha256"].unique().implode())).with_columns(
        release_id=pl.col("position").cast(pl.String).str.zfill(5)
    )
    groups = [images[i::4] for i in range(4)]
    generated = BatchDeclaration(raters="simulated")
    positional = BatchDeclaration(positional_ids=True, raters="simulated")
    plan = [
        ("panel-intensity.csv", groups[0], "release_id", "long", positional),
        ("panel-hq.csv", groups[1], "image_sha256", "hq", generated),
        ("panel-label-studio.json", groups[2], "image_path", "label-studio", generated),
        ("panel-binary.csv", groups[3], "prompt_id", "binary", generated),
    ]
    landed = {}
    with tempfile.TemporaryDirectory() as tmp:

        def land(name: str, group_truth: pl.DataFrame, group_spec: PanelSpec, kind: str, declaration) -> None:
            ratings = simulate_ratings(group_truth, group_spec)
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

        for seed_offset, (name, group, ref, kind, declaration) in enumerate(plan):
            refs = group.select("image_sha256", image_ref=ref)
            group_truth = refs.join(truth, on="image_sha256", maintain_order="left_right").drop("image_sha256")
            land(name, group_truth, dataclasses.replace(spec, seed=spec.seed + seed_offset), kind, declaration)
        external_spec = dataclasses.replace(spec, seed=spec.seed + len(plan))
        external_refs = [f"{i:05d}" for i in range(external_images)]
        land(
            f"{EXTERNAL_COLLECTION}.csv",
            ground_truth(external_refs, emotions, external_spec),
            external_spec,
            "hq",
            BatchDeclaration(collection=EXTERNAL_COLLECTION, raters="simulated"),
        )
    store.write_bytes(PANEL_METADATA_PATH, json.dumps(spec.metadata(), indent=1).encode())
    return landed
