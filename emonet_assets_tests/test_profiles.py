import pytest

from emonet_assets.lib.design.prompt_design import build_design
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy
from emonet_assets.profiles import ProfileError, available_profiles, load_profile


def test_tiny_is_the_default_and_is_small():
    profile = load_profile(env={})
    assert profile.name == "tiny"
    assert profile.generation.device == "cpu" and profile.generation.build_tiny
    assert profile.design.total is not None and profile.design.total <= 240
    assert profile.root.endswith("data/tiny")


def test_profile_is_chosen_by_environment():
    assert load_profile(env={"EMONET_PROFILE": "sdxl-turbo"}).name == "sdxl-turbo"


def test_gpu_examples_name_their_models_by_hugging_face_id():
    """`hf download <id>` puts a model where the profile finds it: the cache, looked up by that id."""
    assert {"tiny", "sdxl-turbo", "flux-schnell"} <= set(available_profiles())
    models = {"sdxl-turbo": "stabilityai/sdxl-turbo", "flux-schnell": "black-forest-labs/FLUX.1-schnell"}
    for name, repo_id in models.items():
        profile = load_profile(name, env={})
        assert profile.generation.device == "cuda"
        assert profile.generation.dtype == "bfloat16"
        assert profile.generation.model == repo_id
        assert not profile.generation.build_tiny


def test_every_shipped_profile_builds_a_valid_design():
    tax = load_taxonomy()
    for name in available_profiles():
        prompts, _ = build_design(load_profile(name, env={}).design, tax)
        assert prompts.height > 0 and prompts["prompt_id"].n_unique() == prompts.height, name


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ProfileError) as err:
        load_profile("huge", env={})
    message = str(err.value)
    assert "unknown profile 'huge'" in message
    for name in available_profiles():
        assert name in message


def test_root_and_catalog_come_from_the_environment(tmp_path):
    profile = load_profile(env={"EMONET_ROOT": str(tmp_path / "root")})
    assert profile.root == str(tmp_path / "root")
    assert profile.catalog_path == str(tmp_path / "root" / "catalog.duckdb")
    remote = load_profile(env={"EMONET_ROOT": "s3://bucket/emonet"})
    assert remote.catalog_path.endswith(".emonet/tiny/catalog.duckdb")
    pinned = load_profile(env={"EMONET_CATALOG": str(tmp_path / "c.duckdb")})
    assert pinned.catalog_path == str(tmp_path / "c.duckdb")


def test_invalid_profile_file_names_the_file_and_field(tmp_path, monkeypatch):
    import emonet_assets.lib.shared.profile_files as profiles

    (tmp_path / "broken.yaml").write_text(
        "description: x\ndesign: {total: 5}\ngeneration: {model: m, license: mit, batch_size: 0}\n"
    )
    (tmp_path / "notyaml.yaml").write_text("description: [unclosed\n")
    monkeypatch.setattr(profiles, "PROFILE_DIR", tmp_path)
    with pytest.raises(ProfileError) as err:
        load_profile("broken", env={})
    assert "broken.yaml" in str(err.value) and "generation.batch_size" in str(err.value)
    with pytest.raises(ProfileError, match="notyaml.yaml: not valid YAML"):
        load_profile("notyaml", env={})
