"""The shard loop the generated_images asset runs: resume by prompt id, per-model rows, progress, failures."""

import io

import polars as pl
import pytest
from PIL import Image

from emonet_assets.lib.design.prompt_design import DesignSpec, build_design
from emonet_assets.lib.generation.generation import build_tiny_pipeline, load_pipeline
from emonet_assets.lib.generation.shard_generation import (
    RunSettings,
    ShardError,
    contact_sheet,
    generate_shard,
    generate_shards,
    read_manifest,
)
from emonet_assets.lib.shared.storage import StorageError, Store
from emonet_assets.lib.shared.tables import Table
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return load_pipeline(build_tiny_pipeline(tmp_path_factory.mktemp("model") / "tiny-sd"), device="cpu")


@pytest.fixture(scope="module")
def prompts():
    return build_design(DesignSpec(seed=3, total=6, shard_size=6), load_taxonomy())[0]


def settings(fingerprint="fp-a", batch_size=2):
    return RunSettings(
        model="tiny",
        fingerprint=fingerprint,
        license="MIT",
        scheduler="DDIMScheduler",
        steps=2,
        guidance=1.0,
        width=64,
        height=64,
        dtype="float32",
        device="cpu",
        batch_size=batch_size,
    )


def test_generates_every_prompt_reports_progress_and_resumes_by_prompt_id(pipe, prompts, tmp_path):
    store = Store(str(tmp_path))
    seen = []
    result = generate_shard(
        store, "shard-00000", prompts, pipe, settings(), progress=lambda d, t, r: seen.append((d, t))
    )
    assert (result.generated, result.skipped) == (6, 0)
    assert seen == [(2, 6), (4, 6), (6, 6)]
    manifest = read_manifest(store, "shard-00000")
    assert manifest["prompt_id"].to_list() == prompts.sort("position")["prompt_id"].to_list()
    assert len(result.samples) == 6 and all(store.is_intact(p) for p in manifest["image_path"])

    store.write_table(Table.GENERATED_IMAGES, manifest.filter(pl.col("position") != 3), partition="shard-00000")
    again = generate_shard(store, "shard-00000", prompts, pipe, settings())
    assert (again.generated, again.skipped) == (1, 5)
    assert read_manifest(store, "shard-00000").drop("seconds").equals(manifest.drop("seconds"))


def test_a_new_model_gets_its_own_rows_beside_the_old(pipe, prompts, tmp_path):
    store = Store(str(tmp_path))
    generate_shard(store, "shard-00000", prompts, pipe, settings("fp-a"))
    result = generate_shard(store, "shard-00000", prompts, pipe, settings("fp-b"))
    assert result.generated == 6
    manifest = read_manifest(store, "shard-00000")
    assert manifest.group_by("model_fingerprint").len().sort("model_fingerprint").rows() == [("fp-a", 6), ("fp-b", 6)]


def test_a_failed_write_stops_the_shard_and_keeps_what_was_checkpointed(pipe, prompts, tmp_path, monkeypatch):
    store = Store(str(tmp_path))
    calls = []
    original = store.write_table

    def failing_second_checkpoint(name, frame, partition):
        calls.append(frame.height)
        if len(calls) == 2:
            raise StorageError("disk full")
        return original(name, frame, partition)

    monkeypatch.setattr(store, "write_table", failing_second_checkpoint)
    with pytest.raises(StorageError, match="disk full"):
        generate_shard(store, "shard-00000", prompts, pipe, settings())
    assert read_manifest(store, "shard-00000").height == 2


def test_several_shards_in_one_run_are_summed_and_an_unknown_one_is_named(pipe, tmp_path):
    prompts = build_design(DesignSpec(seed=3, total=6, shard_size=4), load_taxonomy())[0]
    store = Store(str(tmp_path))
    seen = set()
    result = generate_shards(
        store,
        ["shard-00000", "shard-00001"],
        prompts,
        pipe,
        settings(),
        progress=lambda s, d, t, r: seen.add(s),
        sample_size=5,
    )
    assert (result.generated, len(result.samples), seen) == (6, 5, {"shard-00000", "shard-00001"})
    assert store.table_partitions(Table.GENERATED_IMAGES) == ["shard-00000", "shard-00001"]
    with pytest.raises(ShardError, match=r"shard 'shard-00007' has no prompts .* shard-00000 \.\. shard-00001"):
        generate_shards(store, ["shard-00007"], prompts, pipe, settings())


def test_a_failed_shard_does_not_stop_the_rest_of_its_run(pipe, tmp_path):
    prompts = build_design(DesignSpec(seed=3, total=6, shard_size=4), load_taxonomy())[0]
    store = Store(str(tmp_path))
    with pytest.raises(ShardError) as failure:
        generate_shards(store, ["shard-00000", "shard-00007", "shard-00001"], prompts, pipe, settings())
    message = str(failure.value)
    assert "shard 'shard-00007' has no prompts" in message
    assert message.endswith("Finished and kept: shard-00000, shard-00001. Re-run alone: shard-00007")
    assert store.table_partitions(Table.GENERATED_IMAGES) == ["shard-00000", "shard-00001"]
    assert read_manifest(store, "shard-00001").height == 2


def test_contact_sheet_is_a_grid_of_the_samples():
    tile = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(tile, format="PNG")
    sheet = Image.open(io.BytesIO(contact_sheet([tile.getvalue()] * 10, columns=4, cell=32)))
    assert sheet.size == (128, 96)
    assert sheet.getpixel((0, 0)) == (255, 0, 0) and sheet.getpixel((127, 95)) == (255, 255, 255)
    with pytest.raises(ValueError):
        contact_sheet([])
