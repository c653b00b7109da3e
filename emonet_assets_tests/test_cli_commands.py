"""The `emonet` commands through click's CliRunner: the same code as the console script, without a process each."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from emonet_assets.cli import main
from emonet_assets_tests.conftest import REPO

pytestmark = pytest.mark.slow

SHARDS = ["shard-00000", "shard-00001", "shard-00002"]


def invoke(args: list[str], **env):
    """`emonet ARGS` in an 80-column terminal, with EMONET_PROFILE unset unless given."""
    return CliRunner().invoke(main, args, env={"COLUMNS": "80", "EMONET_PROFILE": None, **env})


@pytest.fixture()
def shard_root(tmp_path, monkeypatch):
    """A Dagster home that knows three prompt shards, and a root where every one of them has images."""
    home, root = tmp_path / "home", tmp_path / "root"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("EMONET_ROOT", str(root))
    monkeypatch.delenv("EMONET_PROFILE", raising=False)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("prompt_shards", SHARDS)
    for shard in SHARDS:
        (root / "tables" / "generated_images").mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"prompt_id": [shard]}).write_parquet(root / "tables" / "generated_images" / f"{shard}.parquet")
    return root


def test_generate_missing_with_nothing_missing_is_a_no_op(shard_root):
    """A nightly `emonet generate --missing` must not fail once every shard is done."""
    result = invoke(["generate", "--missing"])
    assert result.exit_code == 0, result.output
    assert "nothing to generate: all 3 shards have images" in result.output


def test_generate_a_reversed_range_says_so(shard_root):
    result = invoke(["generate", "shard-00002...shard-00000"])
    assert result.exit_code == 1, result.output
    assert "shard range shard-00002...shard-00000 is reversed: write it shard-00000...shard-00002" in result.output


@pytest.fixture()
def release(tmp_path):
    """A small release under a storage root, with the latest.json pointer the demo leaves."""
    from emonet_assets.lib.shared.storage import Store
    from emonet_assets_tests.lib.release.test_release import build_release, make_tables

    store = Store(str(tmp_path / "root"))
    built = build_release(store, make_tables(store))
    return tmp_path / "root", built["manifest"]["release_id"]


def test_verify_release_follows_the_latest_json_pointer(release):
    root, release_id = release
    result = invoke(["verify-release", str(root / "releases" / "latest.json")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"OK release {release_id}: ")
    assert f"match {root / 'releases' / release_id}/manifest.json" in result.output


def test_verify_release_of_a_folder_that_does_not_exist_says_so(release):
    root, _ = release
    result = invoke(["verify-release", str(root / "releases" / "nope")])
    assert result.exit_code == 1, result.output
    assert f"release folder {root / 'releases' / 'nope'} does not exist" in result.output
    assert "difference" not in result.output


def test_verify_release_of_a_folder_without_a_manifest_says_it_is_not_a_release(release):
    root, _ = release
    result = invoke(["verify-release", str(root)])
    assert result.exit_code == 1, result.output
    assert f"no manifest.json in {root}: not a release folder" in result.output
    assert "difference" not in result.output


@pytest.fixture()
def scored(tmp_path, monkeypatch):
    """Two image files and a stand-in model that scores the second one higher on every emotion."""
    from emonet_assets.lib.model import modeling
    from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy

    ids = [e.id for e in load_taxonomy().emotions]
    images = [tmp_path / "low.png", tmp_path / "high.png"]
    for image in images:
        image.write_bytes(b"png")

    def predict_files(paths, folder, version):
        rows = [
            (str(p), e, (1.0 if p.name == "high.png" else 0.0) + i / 100)
            for p in paths[::-1]
            for i, e in enumerate(ids)
        ]
        frame = pl.DataFrame(rows, schema=["path", "emotion_id", "predicted"], orient="row")
        return frame, pl.DataFrame(schema={"path": pl.String, "reason": pl.String})

    monkeypatch.setattr(modeling, "predict_files", predict_files)
    monkeypatch.setattr(modeling, "latest_model_dir", lambda store: tmp_path)
    return images, ids


@pytest.mark.parametrize("suffix", ["csv", "json"])
def test_predict_output_writes_the_file_its_suffix_names_in_input_order(scored, tmp_path, suffix):
    images, ids = scored
    output = tmp_path / f"scores.{suffix}"
    result = invoke(["predict", "--output", str(output), *map(str, images)])
    assert result.exit_code == 0, result.output
    if suffix == "csv":
        written = pl.read_csv(output)
        assert written["path"].to_list() == [str(p) for p in images] and written.columns == ["path", *ids]
    else:
        written = json.loads(output.read_text())
        assert [row["path"] for row in written] == [str(p) for p in images] and list(written[0]) == ["path", *ids]
    assert f"wrote 2 images x 40 emotions to {output}" in result.output


def test_predict_prints_images_in_input_order_with_their_top_emotions(scored):
    images, ids = scored
    result = invoke(["predict", "--top", "2", *map(str, images)])
    assert result.exit_code == 0, result.output
    assert result.output.index("low.png") < result.output.index("high.png")
    assert result.output.count("0.39") == 1 and result.output.count("1.39") == 1 and "0.37" not in result.output


@pytest.mark.parametrize("top", ["0", "-3", "41"])
def test_predict_top_must_be_between_1_and_40(scored, top):
    images, _ = scored
    result = invoke(["predict", "--top", top, str(images[0])])
    assert result.exit_code == 2 and "--top" in result.output and "1<=x<=40" in result.output


def test_predict_output_of_another_kind_is_refused(scored, tmp_path):
    images, _ = scored
    result = invoke(["predict", "--output", str(tmp_path / "scores.txt"), str(images[0])])
    assert result.exit_code == 2 and "name a .csv or .json file, or pass --format" in result.output


def test_a_folder_that_holds_a_model_folder_names_it(tmp_path):
    from emonet_assets.lib.model.emotion_model import ModelFileError
    from emonet_assets.lib.model.modeling import check_model_dir

    (tmp_path / "emotion_model" / "fp-1").mkdir(parents=True)
    (tmp_path / "emotion_model" / "fp-1" / "config.json").write_text("{}")
    with pytest.raises(ModelFileError) as raised:
        check_model_dir(tmp_path / "emotion_model")
    assert str(raised.value) == (
        f"{tmp_path / 'emotion_model'} is not a saved model folder: it has no config.json (a model folder holds "
        f"config.json, model.safetensors and MODEL_CARD.md); the model folder inside it is "
        f"{tmp_path / 'emotion_model' / 'fp-1'}"
    )
    check_model_dir(tmp_path / "emotion_model" / "fp-1")


def assert_tables_fit(output: str) -> None:
    """Every table line fits 80 columns and no cell is cut short with an ellipsis."""
    lines = [line for line in output.splitlines() if line[:1] in "┏┃┡│└╭╰"]
    assert lines and max(map(len, lines)) <= 80 and "…" not in output, output


def _active(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines() if line.endswith("(active)")]


@pytest.mark.parametrize(
    ("args", "env", "active"),
    [
        (["profiles"], {}, ["tiny"]),
        (["profiles"], {"EMONET_PROFILE": "sdxl-turbo"}, ["sdxl-turbo"]),
        (["--profile", "flux-schnell", "profiles"], {"EMONET_PROFILE": "sdxl-turbo"}, ["flux-schnell"]),
        (["profiles", "--profile", "flux-schnell"], {}, ["flux-schnell"]),
        (["--profile", "tiny", "profiles", "--profile", "sdxl-turbo"], {}, ["sdxl-turbo"]),
    ],
)
def test_profiles_marks_the_profile_that_is_active(args, env, active):
    result = invoke(args, **env)
    assert result.exit_code == 0, result.output
    assert _active(result.output) == active


@pytest.mark.parametrize(
    "command", ["demo", "generate", "import-annotations", "agreement", "leaderboard", "predict", "status"]
)
def test_every_command_takes_profile_after_its_name(command):
    """An unknown profile is refused by name, so reaching the profile check proves the option was accepted."""
    paths = [__file__] if command in ("import-annotations", "predict") else []
    result = invoke([command, "--profile", "nope", *paths])
    assert result.exit_code == 1, result.output
    assert "unknown profile 'nope' (set by --profile); valid profiles: flux-schnell, sdxl-turbo, tiny" in result.output


def test_an_unknown_profile_names_the_variable_that_set_it():
    result = invoke(["status"], EMONET_PROFILE="sdxl")
    assert result.exit_code == 1, result.output
    assert "unknown profile 'sdxl' (set by EMONET_PROFILE)" in result.output


def test_status_lists_tables_and_file_assets_readably_in_80_columns(tmp_path):
    from emonet_assets.lib.shared.storage import FILE_ASSETS, Store

    store = Store(str(tmp_path / "root"))
    store.write_table("fairness_emotion_by_group", pl.DataFrame({"x": range(1234)}))
    store.write_table("generated_images", pl.DataFrame({"x": [1]}), "shard-00000")
    for folder in FILE_ASSETS.values():
        store.write_bytes(f"{folder}/a.json", b"{}")
        store.write_bytes(f"{folder}/b/c.json", b"{}")
    result = invoke(["status"], EMONET_ROOT=store.root)
    assert result.exit_code == 0, result.output
    assert_tables_fit(result.output)
    rows = {cells[1].strip(): cells[2:] for line in result.output.splitlines() if len(cells := line.split("│")) > 5}
    assert [c.strip() for c in rows["fairness_emotion_by_group"][:2]] == ["1", "1,234"]
    for name in FILE_ASSETS:
        assert [c.strip() for c in rows[name][:2]] == ["2", "-"]
    assert "written       when the newest of those files was written under the root" in result.output
    assert f"folder        {store.url('releases')}/ (benchmark_release)" in result.output


def test_file_assets_are_assets_of_the_graph_and_name_the_folders_they_write():
    from emonet_assets.definitions import build_definitions
    from emonet_assets.defs.fairness.assets import REPORT_PATH
    from emonet_assets.lib.release.schema import LATEST
    from emonet_assets.lib.shared.storage import FILE_ASSETS
    from emonet_assets.profiles import load_profile

    graph = build_definitions(load_profile(env={})).resolve_asset_graph()
    assert set(FILE_ASSETS) <= {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert REPORT_PATH.startswith(FILE_ASSETS["fairness_report"] + "/")
    assert LATEST.startswith(FILE_ASSETS["benchmark_release"] + "/")


def test_agreement_tables_are_readable_in_80_columns(tmp_path):
    from emonet_assets.lib.shared.storage import Store

    store = Store(str(tmp_path / "root"))
    row = {
        "collection": "emonet-hq-sample",
        "scale": "intensity",
        "emotion_id": "thankfulness_gratitude",
        "emotion": "Thankfulness/Gratitude",
        "n_images": 12_345,
        "n_ratings": 123_456,
        "alpha_interval": -0.123,
        "alpha_interval_ci_low": -0.95,
        "alpha_interval_ci_high": -0.05,
        "alpha_ordinal": 0.5,
        "alpha_ordinal_ci_low": -0.25,
        "alpha_ordinal_ci_high": 0.75,
        "kappa_quadratic_mean": -0.25,
        "human_ceiling_spearman": 0.5,
    }
    store.write_table("emotion_agreement", pl.DataFrame([row, {**row, "emotion": "Emotional Numbness"}]))
    result = invoke(["agreement"], EMONET_ROOT=store.root)
    assert result.exit_code == 0, result.output
    assert_tables_fit(result.output)
    assert "-0.95–-0.05" in result.output and "12,345 /" in result.output and "123,456" in result.output


def test_the_annotation_batches_table_is_readable_in_80_columns():
    from rich.console import Console

    from emonet_assets.cli.render import batches_table

    console = Console(width=80, record=True)
    console.print(
        batches_table(
            [
                ["project-12-at-2026-11-20-10-31-4f2a.json", "already imported: no change", *["1,234,567"] * 4],
                ["panel.csv", "re-imported", "7", "6", "1", "0"],
            ]
        )
    )
    output = console.export_text()
    assert_tables_fit(output)
    assert output.count("1,234,567") == 4 and "re-imported" in output


def test_help_and_status_import_no_heavy_library(tmp_path):
    """Each command imports what it needs when it runs: `emonet --help` and `emonet status` stay quick."""
    code = (
        "import sys\n"
        "from emonet_assets.cli import main\n"
        "heavy = ('dagster', 'torch', 'polars', 'duckdb', 'sklearn')\n"
        "for args in (['--help'], ['status']):\n"
        "    main(args, standalone_mode=False)\n"
        "    print('imported', *args, [m for m in heavy if m in sys.modules])\n"
    )
    env = {**os.environ, "EMONET_ROOT": str(tmp_path / "root")}
    env.pop("EMONET_PROFILE", None)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "imported --help []" in result.stdout and "imported status []" in result.stdout, result.stdout


def test_an_import_that_accepts_nothing_new_does_not_rebuild_consensus(demo_run, tmp_path, monkeypatch):
    root = tmp_path / "root"
    shutil.copytree(demo_run.root, root)
    monkeypatch.setenv("DAGSTER_HOME", str(shutil.copytree(demo_run.folder / "home", tmp_path / "home")))
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("image,annotator,emotion,value\nnot-an-image,expert-1,Elation,3\n", encoding="utf-8")
    before = sorted((root / "tables" / "consensus_labels").glob("*.parquet"))[0].stat().st_mtime_ns
    result = invoke(["import-annotations", str(unknown)], EMONET_ROOT=str(root))
    assert result.exit_code == 0, result.output
    assert "no new ratings accepted: consensus is unchanged and was not rebuilt" in result.output
    assert "consensus_labels" not in result.output
    assert sorted((root / "tables" / "consensus_labels").glob("*.parquet"))[0].stat().st_mtime_ns == before


def test_an_import_into_a_dagster_home_without_the_graphs_history_says_consensus_was_not_refreshed(
    demo_run, tmp_path, monkeypatch
):
    """The automation conditions read the instance's history; a home that never built the graph gets no refresh.
    A file someone dropped into the landing zone by hand is imported by the same sensor tick, and said so."""
    from emonet_assets.lib.annotation.landing import BatchDeclaration, land_file
    from emonet_assets.lib.shared.storage import Store
    from emonet_assets.profiles import load_profile

    root = shutil.copytree(demo_run.root, tmp_path / "root")
    shutil.rmtree(root / "landing" / "annotations")  # only the files of this test wait in the landing zone
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    landing = load_profile("tiny", env={"EMONET_ROOT": str(root)}).annotation.landing
    dropped = b"image,annotator,emotion,value\n00002,expert-98,Elation,4\n"
    land_file(Store(str(root)), landing, "dropped.csv", dropped, BatchDeclaration(positional_ids=True))
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("image,annotator,emotion,value\n00001,expert-99,Elation,3\n", encoding="utf-8")
    before = pl.read_parquet(root / "tables" / "annotations").height
    result = invoke(["import-annotations", "--positional-ids", str(ratings)], EMONET_ROOT=str(root))
    assert result.exit_code == 1, result.output
    assert "1 batch(es) were waiting in the landing zone: 1 imported" in result.output
    assert "did not request consensus" in result.output and str(tmp_path / "home") in result.output
    assert "never materialized " in result.output and "stg_taxonomy, taxonomy." in result.output
    assert pl.read_parquet(root / "tables" / "annotations").height == before + 2, "the accepted ratings are kept"


def test_register_predictions_scores_a_file_and_the_leaderboard_ranks_it(demo_run, tmp_path, monkeypatch):
    """A long CSV of the consensus median on the 0-1 scale, with one row naming no image: it is registered, its bad
    row rejected with the reason, and it ranks first; `emonet leaderboard` prints the same table as JSON."""
    root = tmp_path / "root"
    shutil.copytree(demo_run.root, root)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    medians = pl.read_parquet(root / "tables" / "consensus_labels").filter(
        (pl.col("collection") == "generated") & (pl.col("scale") == "intensity")
    )
    rows = medians.select(image="image_id", emotion="emotion", score=pl.col("median_rating") / 7)
    scores = tmp_path / "scores.csv"
    scores.write_text(rows.write_csv() + "not-an-image,Elation,0.5\n", encoding="utf-8")
    result = invoke(["register-predictions", str(scores), "--name", "median", "--scale", "0-1"], EMONET_ROOT=str(root))
    assert result.exit_code == 0, result.output
    assert f"{rows.height + 1:,} scores read, {rows.height:,} accepted, 1 rejected" in result.output
    assert "1 unknown_image, e.g. row" in result.output and "human ceiling" in result.output
    shown = invoke(["leaderboard", "--collection", "generated", "--format", "json"], EMONET_ROOT=str(root))
    assert shown.exit_code == 0, shown.output
    board = json.loads(shown.output)
    best = next(row for row in board if row["rank"] == 1)
    assert best["name"] == "median" and best["mean_spearman"] == pytest.approx(1.0)
    assert {row["kind"] for row in board} >= {"heads", "predictions", "human", "baseline", "zero_shot"}
    evaluated = invoke(
        ["evaluate", "--predictions", str(scores), "--name", "again", "--scale", "0-1", "--format", "json"],
        EMONET_ROOT=str(root),
    )
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert report["model"].startswith("again@") and report["collection"] == "generated"
    assert report["metrics"]["mean_spearman"] == pytest.approx(1.0) and report["n_images"] > 0


def test_evaluate_scores_a_predictions_file_against_an_external_binary_collection(demo_run, tmp_path, monkeypatch):
    """A binary collection built by construction (three raters who agree on which of 3 emotions each of 12
    release-style images shows) is imported; `emonet evaluate` scores a file of fixed scores against it, and its
    pooled ROC AUC is sklearn's on the same items."""
    from sklearn.metrics import roc_auc_score

    root = tmp_path / "root"
    shutil.copytree(demo_run.root, root)
    shutil.rmtree(root / "landing" / "annotations")  # only this test's file waits in the landing zone
    # the demo's Dagster home, so the import's automation knows the graph it rebuilds consensus on
    shutil.copytree(demo_run.folder / "home", tmp_path / "home")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    emotions = ["Elation", "Anger", "Fear"]
    rng = np.random.default_rng(3)
    present = {(f"{i:05d}", e): bool((i + k) % 3 == 0) for i in range(12) for k, e in enumerate(emotions)}
    ratings = tmp_path / "binary.csv"
    rows = [f"{image},rater-{r},{emotion},{value}" for (image, emotion), value in present.items() for r in range(3)]
    ratings.write_text("image,annotator,emotion,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
    imported = invoke(["import-annotations", "--collection", "binary-set", str(ratings)], EMONET_ROOT=str(root))
    assert imported.exit_code == 0, imported.output
    scores = {item: float(rng.uniform(0.3, 1.0) if shown else rng.uniform(0.0, 0.7)) for item, shown in present.items()}
    predictions = tmp_path / "binary-scores.csv"
    lines = [f"{image},{emotion},{score}" for (image, emotion), score in scores.items()]
    predictions.write_text("image,emotion,score\n" + "\n".join(lines) + "\n", encoding="utf-8")
    args = ["evaluate", "--predictions", str(predictions), "--name", "bin", "--collection", "binary-set"]
    evaluated = invoke([*args, "--scale", "0-1", "--format", "json"], EMONET_ROOT=str(root))
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert report["model"].startswith("bin@") and report["collection"] == "binary-set"
    assert report["n_images"] == 12 and report["n_items"] == len(present)
    expected = roc_auc_score(list(present.values()), [scores[item] for item in present])
    assert report["metrics"]["roc_auc"] == pytest.approx(expected, abs=1e-12)


def _rejected_only(tmp_path):
    """A ratings file whose one row names no emotion of the taxonomy: reading it needs the taxonomy, and nothing is
    accepted, so no consensus is rebuilt and the test stays quick."""
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("image,annotator,emotion,value\nimg_1,expert-1,Not-an-emotion,3\n", encoding="utf-8")
    return ratings


def test_import_annotations_into_an_empty_root_materializes_the_taxonomy_first(tmp_path):
    root, home = tmp_path / "root", tmp_path / "home"
    result = invoke(
        ["import-annotations", "--collection", "outside", str(_rejected_only(tmp_path))],
        EMONET_ROOT=str(root),
        DAGSTER_HOME=str(home),
    )
    assert result.exit_code == 0, result.output
    assert "has not been written" not in result.output
    assert "taxonomy" in result.output and "needed, not yet under the root" in result.output
    assert "imported" in result.output and "no new ratings accepted" in result.output
    assert list((root / "tables" / "taxonomy").glob("*.parquet"))
    with dg.DagsterInstance.from_config(str(home)) as instance:  # made by a run, so its lineage is recorded
        assert instance.get_latest_materialization_event(dg.AssetKey("taxonomy")) is not None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["predict", __file__], "no trained emotion model under {root} yet: run `emonet demo`"),
        (["agreement"], "no agreement under {root} yet: import ratings with `emonet import-annotations FILE`"),
        (["leaderboard"], "no leaderboard under {root} yet: run `emonet demo`"),
        (["register-predictions", __file__, "--name", "m", "--scale", "0-7"], "nothing to score against under {root}"),
    ],
)
def test_commands_that_cannot_make_what_they_need_say_what_to_run_on_an_empty_root(tmp_path, args, expected):
    root = tmp_path / "root"
    result = invoke(args, EMONET_ROOT=str(root))
    assert result.exit_code == 1, result.output
    assert expected.format(root=root) in result.output, result.output


def test_a_deleted_image_names_the_file_and_the_repair_that_brings_it_back(tmp_path, monkeypatch):
    from emonet_assets.lib.shared.storage import Store
    from emonet_assets_tests.conftest import small_profile_file

    root = tmp_path / "root"
    env = {
        "EMONET_PROFILE": str(small_profile_file(tmp_path, total=8, shard_size=4)),
        "EMONET_ROOT": str(root),
        "DAGSTER_HOME": str(tmp_path / "home"),
    }
    first = invoke(["generate", "shard-00000"], **env)
    assert first.exit_code == 0, first.output
    lost = Store(str(root)).read_table("generated_images")["image_path"][0]
    (root / lost).unlink()

    result = invoke(["generate", "shard-00001"], **env)
    assert result.exit_code == 1, result.output
    repair = "emonet generate --repair shard-00000"
    assert f"1 image file of shard-00000 listed in the manifest is missing from {root / 'images'}: {lost}" in (
        result.output
    )
    assert result.output.rstrip().endswith(f"Regenerate it with: {repair}"), result.output
    assert "Traceback" not in result.output and "Stack Trace" not in result.output
    assert "re-run the shards they name alone" not in result.output
    assert result.output.count("Error:") == 1

    repaired = invoke(repair.split()[1:], **env)
    assert repaired.exit_code == 0, repaired.output
    assert (root / lost).is_file()
    again = invoke(["generate", "shard-00001"], **env)
    assert again.exit_code == 0, again.output


def _hub_snapshot(cache, repo_id: str):
    """A model in a Hugging Face cache folder, laid out as `hf download` leaves it: refs/main names a snapshot."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    return snapshot


def test_gpu_profiles_hint_a_download_that_works_and_find_the_model_in_the_hugging_face_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from emonet_assets.lib.generation.generation import GenerationError, resolve_model
    from emonet_assets.profiles import load_profile
    from emonet_assets.resources import ImageGeneratorResource

    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert (Path(sys.executable).parent / "hf").exists(), "the hint's command is the venv's hf"
    models = {"sdxl-turbo": "stabilityai/sdxl-turbo", "flux-schnell": "black-forest-labs/FLUX.1-schnell"}

    listed = invoke(["profiles"])
    assert listed.exit_code == 0, listed.output
    assert "huggingface-cli" not in listed.output
    for name, repo_id in models.items():
        assert f"weights       {repo_id}, not downloaded yet: hf download {repo_id}\n" in listed.output
        generation = load_profile(name, env={}).generation
        with pytest.raises(GenerationError) as missing:
            resolve_model(ImageGeneratorResource(settings=generation).location())
        assert f"download it with `hf download {repo_id}`" in str(missing.value)
        assert "models/" not in str(missing.value)

    snapshot = _hub_snapshot(cache, models["sdxl-turbo"])
    listed = invoke(["profiles"])
    assert f"weights       stabilityai/sdxl-turbo, in the Hugging Face cache ({snapshot})\n" in listed.output
    generator = ImageGeneratorResource(settings=load_profile("sdxl-turbo", env={}).generation)
    assert resolve_model(generator.location()) == snapshot


def test_every_command_finds_the_same_root_and_dagster_instance_from_any_folder(tmp_path, monkeypatch):
    """Run from another folder with nothing set, the CLI uses the project folder's data/<profile> and .dagster_home
    (the ones `make` uses), and sets up a new instance with the project's settings (deploy/dagster.local.yaml)."""
    from emonet_assets.lib.shared import profile_files

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    monkeypatch.setattr(profile_files, "CHECKOUT", project)
    (project / "pyproject.toml").write_text("")
    monkeypatch.chdir(elsewhere)
    unset = {"EMONET_ROOT": None, "DAGSTER_HOME": None, "EMONET_CATALOG": None}

    status = invoke(["status"], **unset)
    assert status.exit_code == 0, status.output
    assert f"Nothing materialized under {project / 'data' / 'tiny'} yet" in status.output

    ratings = _rejected_only(tmp_path)
    result = invoke(["import-annotations", "--collection", "outside", str(ratings)], **unset)
    assert result.exit_code == 0, result.output
    home = project / ".dagster_home"
    assert f"new Dagster instance in {home}, with the settings of {profile_files.INSTANCE_SETTINGS}" in result.output
    assert (home / "dagster.yaml").read_text() == (REPO / "deploy" / "dagster.local.yaml").read_text()
    assert "No dagster instance configuration file" not in result.output and "Telemetry" not in result.output
    assert list((project / "data" / "tiny" / "tables" / "taxonomy").glob("*.parquet"))
    assert list(elsewhere.iterdir()) == []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_latest_materialization_event(dg.AssetKey("taxonomy")) is not None

    again = invoke(["status"], **unset)
    assert f"Storage root {project / 'data' / 'tiny'}" in again.output


@pytest.fixture()
def wide_console(monkeypatch):
    """140 columns, so no table cell wraps. The commands' console keeps the COLUMNS it found when the CLI was imported
    (80 in a pytest-xdist worker), so the COLUMNS of a CliRunner call is not seen. Its width field is patched, not
    the `width` property, so the test leaves it exactly as it was."""
    from emonet_assets.cli.render import console

    monkeypatch.setattr(console, "_width", 140)


@pytest.fixture()
def demo_copy(demo_run, tmp_path, wide_console):
    """A private copy of the demo's root and Dagster home, so commands here leave the shared demo as it was and the
    automation conditions see the demo's history."""
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    shutil.copytree(demo_run.folder / "home", tmp_path / "home")
    shutil.copytree(demo_run.root, tmp_path / "root")
    return tmp_path, tmp_path / "root"


def invoke_on(tmp_path: Path, root: Path, args: list[str]):
    """`emonet ARGS` on `root` with the Dagster home beside it."""
    return invoke(args, DAGSTER_HOME=str(tmp_path / "home"), EMONET_ROOT=str(root))


def _annotation_rows(root: Path) -> int:
    return pl.read_parquet(root / "tables" / "annotations").height


def _cells(stdout: str, name: str) -> list[str]:
    line = next(line for line in stdout.splitlines() if name in line)
    return [c.strip() for c in line.split("│")]


def _dbt_models_fed_by_ratings(root) -> set[dg.AssetKey]:
    """The dbt models an import refreshes: those downstream of the ratings (stg_taxonomy reads only the taxonomy and
    stg_scales no table: neither is rebuilt)."""
    from emonet_assets.definitions import build_definitions
    from emonet_assets.profiles import load_profile

    graph = build_definitions(load_profile(env={"EMONET_ROOT": str(root)})).resolve_asset_graph()
    fed = dg.AssetSelection.assets("annotations").downstream(include_self=False).resolve(graph)
    return fed & graph.get(dg.AssetKey("consensus_labels")).assets_def.keys


def test_import_annotations_reports_counts_and_reimporting_changes_nothing(demo_copy):
    """Numbers name generated images only when declared; declaring them re-imports the same file."""
    tmp, root = demo_copy
    ratings = tmp / "new-expert.csv"
    rows = [f"{i:05d},expert-9,{i % 8},Elation" for i in range(5)] + ["00005,expert-9,2,Happiness"]
    ratings.write_text("path,annotator,value,emotion\n" + "\n".join(rows + ["00006,expert-9,9,Elation"]) + "\n")
    before = _annotation_rows(root)
    refused = invoke_on(tmp, root, ["import-annotations", str(ratings)])
    assert refused.exit_code == 0, refused.output
    assert _cells(refused.stdout, "new-expert.csv")[2:7] == ["imported", "7", "0", "7", "0"]
    assert re.search(r"^batch [0-9a-f]{12}  new-expert.csv: 7 positional_id$", refused.stdout, re.MULTILINE)
    assert "new-expert.csv: 7 rows name their image only by a number" in refused.stdout
    assert "--collection NAME" in refused.stdout and "--positional-ids" in refused.stdout
    assert _annotation_rows(root) == before
    first = invoke_on(tmp, root, ["import-annotations", "--positional-ids", str(ratings)])
    assert first.exit_code == 0, first.output
    assert _cells(first.stdout, "new-expert.csv")[2:7] == ["re-imported", "7", "6", "1", "0"]
    assert re.search(r"^batch [0-9a-f]{12}  new-expert.csv: 1 out_of_scale$", first.stdout, re.MULTILINE)
    assert "new-expert.csv: label 'Happiness' read as elation (1 row)" in first.stdout
    assert f"dbt build: {len(_dbt_models_fed_by_ratings(root))} models" in first.stdout
    assert _annotation_rows(root) == before + 6
    again = invoke_on(tmp, root, ["import-annotations", "--positional-ids", str(ratings)])
    assert again.exit_code == 0, again.output
    assert "already imported: no change" in again.stdout
    assert "dbt" not in again.stdout
    assert _annotation_rows(root) == before + 6


def test_import_annotations_refuses_a_broken_file_by_name_and_keeps_what_was_accepted(demo_copy):
    tmp, root = demo_copy
    broken = tmp / "broken.csv"
    broken.write_text("path|annotator|value|emotion\n00000|expert-9|3|Elation\n")
    before = _annotation_rows(root)
    result = invoke_on(tmp, root, ["import-annotations", str(broken)])
    assert result.exit_code != 0
    assert "broken.csv" in result.stdout and "delimited by something other than" in result.stdout
    assert "1 file(s) not imported" in result.stderr
    assert isinstance(result.exception, SystemExit), result.exception  # a clear error, no traceback
    assert _annotation_rows(root) == before


def test_import_annotations_into_an_external_collection(demo_copy):
    tmp, root = demo_copy
    release = tmp / "release-hq.csv"
    release.write_text(
        "image,annotator,annotations\n"
        + "".join(
            f"img_{i},rater-{a},\"{{'Elation': {(i + a) % 4}, 'Anger': 0}}\"\n" for i in range(8) for a in range(3)
        )
    )
    result = invoke_on(tmp, root, ["import-annotations", "--collection", "release-check", str(release)])
    assert result.exit_code == 0, result.output
    table = invoke_on(tmp, root, ["agreement", "--collection", "release-check"])
    assert table.exit_code == 0, table.output
    assert "release-check (intensity)" in table.stdout
    assert "Elation" in table.stdout and "mean over 2 emotions" in table.stdout
    refused = invoke_on(tmp, root, ["import-annotations", "--collection", "Bad Name", str(release)])
    assert refused.exit_code != 0 and "collection name 'Bad Name'" in refused.stderr


def test_agreement_prints_the_per_emotion_table(demo_run, tmp_path):
    result = invoke_on(tmp_path, demo_run.root, ["agreement", "--collection", "generated"])
    assert result.exit_code == 0, result.output
    assert "generated (intensity)" in result.stdout and "generated (binary)" in result.stdout
    assert "interval" in result.stdout and "ordinal" in result.stdout and "[95% CI]" in result.stdout
    assert "mean over 40 emotions" in result.stdout
    unknown = invoke_on(tmp_path, demo_run.root, ["agreement", "--collection", "nope"])
    assert unknown.exit_code != 0 and "no collection 'nope'; known:" in unknown.stderr


def test_a_failed_shard_in_a_backfill_is_named_and_rerun_alone(demo_copy):
    tmp_path, root = demo_copy
    manifests = root / "tables" / "generated_images"
    for shard in ("shard-00001", "shard-00002", "shard-00003"):
        (manifests / f"{shard}.parquet").unlink()
    design = root / "tables" / "prompt_design" / "all.parquet"
    intact = pl.read_parquet(design)
    intact.filter(pl.col("shard") != "shard-00002").write_parquet(design)

    failed = invoke_on(tmp_path, root, ["generate", "shard-00001...shard-00003", "--per-run", "3"])
    assert failed.exit_code != 0
    assert "shard 'shard-00002' has no prompts" in failed.stdout
    assert "Finished and kept: shard-00001, shard-00003. Re-run alone: shard-00002" in failed.stdout
    assert sorted(p.stem for p in manifests.glob("*.parquet")) == [f"shard-{i:05d}" for i in range(15) if i != 2]

    intact.write_parquet(design)
    alone = invoke_on(tmp_path, root, ["generate", "shard-00002"])
    assert alone.exit_code == 0, alone.output
    assert "generated_images [shard-00002]" in alone.stdout
    assert len(list(manifests.glob("*.parquet"))) == 15
    assert pl.read_parquet(manifests).height == 240
