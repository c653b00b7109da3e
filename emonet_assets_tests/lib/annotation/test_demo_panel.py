"""The demo's panel rates what an image shows: its ratings follow the pixels, through the profile's backbone."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from PIL import Image

from emonet_assets.lib.annotation.demo_panel import PANEL_METADATA_PATH, land_demo_panel, perceived_images
from emonet_assets.lib.annotation.landing import read_declaration
from emonet_assets.lib.annotation.simulated_panel import PERCEPTION, PanelSpec
from emonet_assets.lib.generation.generation import encode_png
from emonet_assets.lib.model.embedding import BackboneSpec, Embedder, build_tiny_backbone
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy

pytestmark = pytest.mark.usefixtures("offline_single_thread")

EMOTIONS = ["Amusement", "Anger", "Fear", "Sadness", "Pride"]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    folder = build_tiny_backbone(tmp_path_factory.mktemp("models") / "tiny")
    return Embedder.load(BackboneSpec("tiny", str(folder), device="cpu"))


def pixels(seed: int) -> np.ndarray:
    """Made here, not generated, so they are the same on every machine."""
    return np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def stored(store: Store, images: list[np.ndarray]) -> pl.DataFrame:
    """The images written to `store`, as manifest rows in prompt order."""
    rows = []
    for position, image in enumerate(images):
        sha, path, _ = store.write_image(encode_png(Image.fromarray(image)))
        rows.append({"position": position, "prompt_id": f"p{position:03d}", "image_sha256": sha, "image_path": path})
    return pl.DataFrame(rows)


def expected(store: Store, images: pl.DataFrame, embedder: Embedder) -> np.ndarray:
    truth = perceived_images(store, images, embedder, PanelSpec(), EMOTIONS)
    return truth["intensity"].to_numpy().reshape(images.height, len(EMOTIONS))


def test_expected_ratings_follow_the_pixels_and_repeat_for_the_same_pixels(tmp_path, embedder):
    faces = [pixels(seed) for seed in range(24)]
    store, copy = Store(str(tmp_path / "a")), Store(str(tmp_path / "b"))
    first = expected(store, stored(store, faces), embedder)
    np.testing.assert_array_equal(expected(copy, stored(copy, faces), embedder), first)

    other = Store(str(tmp_path / "c"))
    changed = expected(other, stored(other, [255 - faces[0], *faces[1:]]), embedder)
    assert np.abs(changed[0] - first[0]).max() > 0.1, "an image with other pixels is rated otherwise"
    assert not np.allclose(first[1:], first[1]), "images with different pixels are rated differently"


def test_the_demo_panel_lands_every_format_and_says_how_it_rated(tmp_path, embedder):
    store = Store(str(tmp_path / "root"))
    store.write_table(
        Table.GENERATED_IMAGES, stored(store, [pixels(seed) for seed in range(16)]), partition="shard-00000"
    )
    landed = land_demo_panel(store, "landing/annotations", load_taxonomy(), embedder)
    assert sorted(landed) == [
        "emonet-hq-sample.csv",
        "panel-binary.csv",
        "panel-hq.csv",
        "panel-intensity.csv",
        "panel-label-studio.json",
    ]
    metadata = json.loads(store.read_bytes(PANEL_METADATA_PATH))
    assert metadata["perception"] == PERCEPTION and metadata["raters"].startswith("simulated")
    hq = pl.read_csv(store.read_bytes(landed["panel-hq.csv"]))
    assert hq["image"].n_unique() == 4 and hq["annotator"].n_unique() == 4
    declared = {name: read_declaration(store, path).raters for name, path in landed.items()}
    assert declared == dict.fromkeys(landed, "simulated"), "the cards must not call the demo's ratings expert"
