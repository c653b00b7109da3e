import dataclasses
import json
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import polars as pl
import pytest

from emonet_assets.lib.design import prompt_design
from emonet_assets.lib.design.prompt_design import (
    RELEASE_TEMPLATE,
    DesignError,
    DesignSpec,
    balanced_order,
    build_design,
    cell_balance,
    render_prompt,
    shard_table,
)
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy

TAX = load_taxonomy()
CELLS = 40 * 7 * 3 * 14


def design(**overrides):
    return build_design(DesignSpec(**{"seed": 7, "total": 120, "shard_size": 16, **overrides}), TAX)


def _prefix_spread(column: np.ndarray, levels: int) -> int:
    onehot = np.zeros((len(column), levels), dtype=np.int32)
    onehot[np.arange(len(column)), column] = 1
    counts = np.cumsum(onehot, axis=0)
    return int((counts.max(axis=1) - counts.min(axis=1)).max())


def test_balanced_order_visits_every_cell_once_with_balanced_prefixes():
    sizes = [40, 14, 3, 7]
    order = balanced_order(sizes)
    assert len(order) == CELLS
    assert len({tuple(row) for row in order}) == CELLS
    spreads = [_prefix_spread(order[:, j], n) for j, n in enumerate(sizes)]
    # emotion and ethnicity never differ by more than one in any prefix, gender and age by two
    assert spreads[0] == 1 and spreads[1] == 1
    assert max(spreads[2:]) <= 2


@pytest.mark.parametrize("total", [1, 39, 80, 1000, CELLS - 1, CELLS, CELLS + 17, 2 * CELLS + 5])
def test_total_budget_keeps_every_cell_within_one(total):
    prompts, cells = design(total=total, shard_size=4096)
    assert prompts.height == total
    balance = cell_balance(prompts, cells)
    assert balance["cells"] == CELLS
    assert balance["max_per_cell"] - balance["min_per_cell"] <= 1
    per_emotion = prompts["emotion_id"].value_counts()["count"]
    if total >= 40:
        assert per_emotion.max() - per_emotion.min() <= 1


def test_n_per_cell_fills_every_cell_exactly():
    prompts, cells = design(total=None, n_per_cell=2, shard_size=4096)
    assert prompts.height == 2 * CELLS
    balance = cell_balance(prompts, cells)
    assert balance["min_per_cell"] == balance["max_per_cell"] == 2
    assert cells["planned"].unique().to_list() == [2]


def test_ids_and_seeds_are_stable_and_growing_the_budget_only_appends():
    small, _ = design(total=100)
    again, _ = design(total=100)
    grown, _ = design(total=300)
    assert small.equals(again)
    head = grown.head(100)
    assert head["prompt_id"].to_list() == small["prompt_id"].to_list()
    assert head["seed"].to_list() == small["seed"].to_list()
    assert head["shard"].to_list() == small["shard"].to_list()
    assert grown["prompt_id"].n_unique() == 300


def test_ids_seeds_and_words_are_pinned_across_versions_of_the_code():
    """Prompt ids name generated images and their ratings: a refactor of the design must not move them. Values from
    the design as first released (sha256 of the prompt's factors and text; no float arithmetic involved)."""
    prompts, _ = build_design(DesignSpec(total=12000), TAX)
    pinned = prompts[[0, 1, 11760, 11999]].select("prompt_id", "seed", "cluster_words", "template_id", "shard")
    assert pinned.rows() == [
        ("3821cc5ac425f912", 359297975, ["jesting", "lighthearted fun"], "release", "shard-00000"),
        ("b5355df7f73e088d", 3892770193, ["cheerfulness", "exhilaration"], "release", "shard-00000"),
        ("dbec566f65fcf5ce", 315410152, ["jesting", "playfulness"], "release", "shard-00183"),
        ("03de375be43a4676", 4060764264, ["covetousness", "envy"], "release", "shard-00187"),
    ]
    assert prompts["prompt"][11760] == (
        "a focused close-up photo of a American Indian or Alaska Native man of 20 years with soft smooth skin who "
        "seems to genuinely experience jesting and playfulness. Strong facial expression of jesting and "
        "playfulness. No wrinkles"
    )


def test_a_prompt_identity_filled_into_its_cell_s_pieces_is_the_json_of_the_whole_identity():
    """The ids hash `json.dumps(identity, sort_keys=True)`; the design fills a cell's encoded pieces instead, which
    must give the same text for any values: quotes, backslashes, non-ASCII, numbers."""
    cell = {
        "emotion_id": "joy",
        "ethnicity": 'Black "or" African\\American',
        "gender": "femme non-binaire é",
        "age": 40,
        "occlusion": "none",
        "lighting": "soft\nlight",
        "pose": "三/四",
    }
    head, before_template, before_text, end = prompt_design._identity_parts(cell)
    for replicate, template_id, text in ((0, "release", "a face."), (12, 'tém"plate', 'a "quoted"\\ face ✓')):
        filled = f"{head}{replicate}{before_template}{json.dumps(template_id)}{before_text}{json.dumps(text)}{end}"
        identity = {**cell, "replicate": replicate, "template_id": template_id, "text": text}
        assert filled == json.dumps(identity, sort_keys=True)


def test_seeds_derive_from_design_seed_and_prompt_id():
    a, _ = design(seed=1)
    b, _ = design(seed=2)
    assert a["seed"].n_unique() == a.height
    assert set(a["seed"]).isdisjoint(set(b["seed"]))


def test_prompts_follow_the_release_template_with_cluster_words():
    prompts, _ = design(total=40)
    row = prompts.row(0, named=True)
    words = row["cluster_words"]
    assert len(words) == 2 and all(w in TAX.by_id[row["emotion_id"]].cluster for w in words)
    cluster = f"{words[0]} and {words[1]}"
    expected = RELEASE_TEMPLATE.format(
        ethnicity=row["ethnicity"], gender=row["gender"], age=row["age"], cluster=cluster
    )
    assert row["prompt"] == expected
    assert prompts["prompt"].str.contains(r"\{").sum() == 0


def test_ethnicities_map_to_analysis_groups():
    prompts, _ = design(total=CELLS, shard_size=4096)
    groups = dict(prompts.select("ethnicity", "ethnicity_group").unique().iter_rows())
    assert len(groups) == 14
    assert set(groups.values()) == {
        "White",
        "Black",
        "Latino",
        "East Asian",
        "Southeast Asian",
        "Indian",
        "Middle Eastern",
        "AI/AN-NHPI",
    }
    assert groups["North African"] == "Middle Eastern" and groups["South Asian"] == "Indian"


def test_default_design_keeps_frontal_studio_faces():
    prompts, _ = design()
    assert prompts["occlusion"].unique().to_list() == ["none"]
    assert prompts["lighting"].unique().to_list() == ["studio"]
    assert prompts["pose"].unique().to_list() == ["frontal"]
    assert not prompts["prompt"].str.contains("lighting|view|mask").any()


def test_robustness_axes_are_opt_in_factors():
    prompts, cells = design(
        total=CELLS * 2, occlusion=("none", "sunglasses"), lighting=("studio", "dim"), shard_size=4096
    )
    assert cells.height == CELLS * 4
    balance = cell_balance(prompts, cells)
    assert balance["max_per_cell"] - balance["min_per_cell"] <= 1
    counts = prompts["occlusion"].value_counts()["count"]
    assert counts.max() - counts.min() <= 1
    shaded = prompts.filter((pl.col("occlusion") == "sunglasses") & (pl.col("lighting") == "dim"))
    assert shaded["prompt"].str.contains("The person wears sunglasses. Dim lighting").all()


def test_templates_may_name_axes_and_are_mixed_deterministically():
    templates = {
        "a": RELEASE_TEMPLATE,
        "b": "portrait of a {gender}, {age}, {ethnicity}, feeling {cluster}; {lighting}",
    }
    prompts, _ = design(templates=templates, total=400, shard_size=4096)
    counts = dict(prompts["template_id"].value_counts().iter_rows())
    assert set(counts) == {"a", "b"} and min(counts.values()) > 100
    assert prompts.filter(pl.col("template_id") == "b")["prompt"].str.ends_with("soft studio lighting").all()
    again, _ = design(templates=templates, total=400, shard_size=4096)
    assert again["template_id"].to_list() == prompts["template_id"].to_list()


def test_render_prompt_appends_only_non_default_axes():
    fields = {
        "ethnicity": "White",
        "gender": "man",
        "age": "30",
        "cluster": "joy",
        "emotion": "elation",
        "occlusion": "none",
        "lighting": "backlit",
        "pose": "three_quarter",
    }
    text = render_prompt("a {gender} feeling {cluster}.", fields)
    assert text == "a man feeling joy. Backlit. Three-quarter view of the head"


def test_shards_have_fixed_size_and_cover_the_design():
    prompts, _ = design(total=100, shard_size=16)
    shards = shard_table(prompts)
    assert shards["shard"].to_list() == [f"shard-{i:05d}" for i in range(7)]
    assert shards["n_prompts"].to_list() == [16] * 6 + [4]
    assert shards["n_prompts"].sum() == 100


def test_lineage_columns():
    prompts, _ = design()
    assert prompts["taxonomy_version"].unique().to_list() == [TAX.version]
    assert prompts["design_seed"].unique().to_list() == [7]
    assert prompts["design_version"].n_unique() == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"templates": {"x": "a {mood} face of {cluster}"}}, "unknown placeholder(s) {mood}"),
        ({"templates": {"x": "a {cluster face"}}, "malformed"),
        ({"templates": {}}, "no prompt template"),
        ({"total": None}, "exactly one budget"),
        ({"n_per_cell": 2}, "exactly one budget"),
        ({"total": 0}, "at least 1"),
        ({"shard_size": 0}, "shard_size"),
        ({"workers": 0}, "workers must be at least 1"),
        ({"occlusion": ("none", "balaclava")}, "occlusion levels ['balaclava']"),
        ({"emotions": ("elation", "glee")}, "unknown emotion id(s) ['glee']"),
        ({"genders": ("man", "man")}, "genders must be"),
    ],
)
def test_bad_design_settings_are_refused_naming_the_source(overrides, message):
    spec = dataclasses.replace(DesignSpec(seed=1, total=10, source="profile x (x.yaml)"), **overrides)
    with pytest.raises(DesignError) as err:
        build_design(spec, TAX)
    assert "profile x (x.yaml)" in str(err.value)
    assert message in str(err.value)


def test_worker_processes_render_the_design_one_process_renders(monkeypatch):
    """Consecutive ranges of positions rendered in spawned processes give the same prompts, ids, seeds and version;
    no more processes start than asked for, and none for a design under PROMPTS_PER_WORKER a process."""
    started = []

    class Recording(ProcessPoolExecutor):
        def __init__(self, max_workers, **kwargs):
            started.append(max_workers)
            super().__init__(max_workers, **kwargs)

    monkeypatch.setattr(prompt_design, "ProcessPoolExecutor", Recording)
    alone = design(total=2500, workers=1, cluster_words=3, templates={"a": RELEASE_TEMPLATE, "b": "{cluster}, {age}"})
    monkeypatch.setattr(prompt_design, "PROMPTS_PER_WORKER", 1000)
    split = design(total=2500, workers=3, cluster_words=3, templates={"a": RELEASE_TEMPLATE, "b": "{cluster}, {age}"})
    assert started == [2]
    assert split[0].equals(alone[0]) and split[1].equals(alone[1])
    assert alone[0]["template_id"].n_unique() == 2 and alone[0]["prompt_id"].n_unique() == 2500
    design(total=999, workers=2)
    assert started == [2]


def test_emotion_subset():
    prompts, cells = design(emotions=("elation", "fear"), total=10)
    assert set(prompts["emotion_id"]) == {"elation", "fear"}
    assert cells.height == 2 * 7 * 3 * 14
