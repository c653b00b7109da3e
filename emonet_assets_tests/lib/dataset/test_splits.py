"""Train/validation/test assignment (emonet_assets.lib.dataset.splits): groups stay whole, and every check fails on
bad data."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import polars as pl
import pytest

from emonet_assets.lib.dataset.splits import (
    assign_splits,
    hash_pairs,
    leakage,
    near_duplicate_links,
    share_deviation,
    thin_test_cells,
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def hex64(value: int) -> str:
    return f"{value:016x}"


def flip(value: int, *bits: int) -> int:
    for bit in bits:
        value ^= 1 << int(bit)
    return value


def random_hashes(rng: np.random.Generator, n: int) -> list[int]:
    return [int(value) for value in rng.integers(0, 2**64, n, dtype=np.uint64)]


def synthetic(prompts: int = 3300, emotions: int = 40, groups: int = 8, seed: int = 0) -> pl.DataFrame:
    """Prompts spread over emotion x group cells, a fifth of them rendered by two models, random hashes."""
    rng = np.random.default_rng(seed)
    rows = []
    for prompt in range(prompts):
        emotion, group = f"emotion{rng.integers(emotions)}", f"group{rng.integers(groups)}"
        for model in range(2 if rng.random() < 0.2 else 1):
            rows.append(
                {
                    "image_sha256": sha(f"{prompt}:{model}"),
                    "prompt_id": f"p{prompt}",
                    "phash": hex64(random_hashes(rng, 1)[0]),
                    "emotion_id": emotion,
                    "ethnicity_group": group,
                    "age": "adult",
                }
            )
    return pl.DataFrame(rows)


def image(name: str, prompt: str, phash: int | None, emotion: str = "joy", group: str = "White") -> dict:
    return {
        "image_sha256": sha(name),
        "prompt_id": prompt,
        "phash": None if phash is None else hex64(phash),
        "emotion_id": emotion,
        "ethnicity_group": group,
    }


@pytest.fixture(scope="module")
def images() -> pl.DataFrame:
    return synthetic()


@pytest.fixture(scope="module")
def result(images):
    return assign_splits(images)


def split_of(assignments: pl.DataFrame) -> dict[str, str]:
    return dict(assignments.select("image_sha256", "split").iter_rows())


def test_output_carries_input_columns_in_input_order(images, result):
    assert result.assignments.columns == [*images.columns, "group_id", "split"]
    assert result.assignments["image_sha256"].to_list() == images["image_sha256"].to_list()
    assert set(result.assignments["split"]) == {"train", "validation", "test"}


def test_shuffled_rows_give_the_same_assignment_and_another_seed_another(images, result):
    shuffled = assign_splits(images.sample(fraction=1.0, shuffle=True, seed=7))
    assert split_of(shuffled.assignments) == split_of(result.assignments)
    assert shuffled.summary.equals(result.summary)
    assert shuffled.warnings == result.warnings
    reseeded = split_of(assign_splits(images, seed=1).assignments)
    moved = sum(reseeded[image] != split for image, split in split_of(result.assignments).items())
    assert moved > images.height // 10


def test_images_of_one_prompt_share_a_split_and_group(images, result):
    per_prompt = result.assignments.group_by("prompt_id").agg(
        splits=pl.col("split").n_unique(), groups=pl.col("group_id").n_unique(), images=pl.len()
    )
    assert per_prompt["splits"].max() == 1
    assert per_prompt["groups"].max() == 1
    assert per_prompt["images"].max() == 2


def test_near_duplicates_land_together_transitively():
    rng = np.random.default_rng(3)
    base = random_hashes(rng, 1)[0]
    middle = flip(base, 1, 2, 3)  # 3 bits from a
    end = flip(middle, 40, 50, 60)  # 3 bits from b, 6 from a: joined only through b
    rows = [image("a", "pa", base, "awe"), image("b", "pb", middle, "joy"), image("c", "pc", end, "fear")]
    rows += [image(f"x{i}", f"px{i}", value, "awe") for i, value in enumerate(random_hashes(rng, 60))]
    assignments = assign_splits(pl.DataFrame(rows), strata=("ethnicity_group",)).assignments
    chain = assignments.filter(pl.col("image_sha256").is_in([sha("a"), sha("b"), sha("c")]))
    assert chain["group_id"].n_unique() == 1
    assert chain["split"].n_unique() == 1
    assert chain["group_id"][0] == "pa"
    assert assignments["group_id"].n_unique() == 61


def regenerated(images: pl.DataFrame, salt: str, seed: int) -> pl.DataFrame:
    """The same design rendered again with other pixels: every image sha256 and perceptual hash is new, and the
    planted near-duplicate pair of `images` (prompts p0 and p1) stays a pair."""
    rng = np.random.default_rng(seed)
    hashes = random_hashes(rng, images.height)
    hashes[1] = flip(hashes[0], 5, 9)
    return images.with_columns(
        image_sha256=pl.Series([sha(f"{salt}:{name}") for name in images["image_sha256"]]),
        phash=pl.Series([hex64(value) for value in hashes]),
    )


def test_regenerating_the_design_with_other_pixels_keeps_every_prompt_in_its_split():
    design = synthetic(prompts=600, seed=5).unique("prompt_id", keep="first", maintain_order=True)
    before = assign_splits(regenerated(design, "cpu", 1)).assignments
    after = assign_splits(regenerated(design, "gpu", 2).sample(fraction=1.0, shuffle=True, seed=3)).assignments
    assert not set(before["image_sha256"]) & set(after["image_sha256"])
    split_per_prompt = {
        name: dict(frame.select("prompt_id", "split").iter_rows()) for name, frame in (("cpu", before), ("gpu", after))
    }
    assert split_per_prompt["cpu"] == split_per_prompt["gpu"]
    assert set(split_per_prompt["cpu"].values()) == {"train", "validation", "test"}
    pair = before.filter(pl.col("prompt_id").is_in(["p0", "p1"]))
    assert pair["group_id"].to_list() == ["p0", "p0"] and pair["split"].n_unique() == 1


def test_a_group_without_prompt_ids_is_named_by_its_smallest_image():
    rng = np.random.default_rng(11)
    base = random_hashes(rng, 1)[0]
    rows = [image("a", None, base), image("b", None, flip(base, 2)), image("c", "pc", flip(base, 40, 41, 42, 43, 44))]
    rows += [image(f"x{i}", f"px{i}", value) for i, value in enumerate(random_hashes(rng, 10))]
    assignments = assign_splits(pl.DataFrame(rows), strata=("ethnicity_group",)).assignments
    named = dict(assignments.select("image_sha256", "group_id").iter_rows())
    assert named[sha("a")] == named[sha("b")] == min(sha("a"), sha("b"))


@pytest.mark.parametrize("max_distance", [0, 4, 7])
def test_banding_finds_exactly_the_pairs_brute_force_finds(max_distance):
    rng = np.random.default_rng(max_distance)
    values = random_hashes(rng, 1900)
    for source in rng.choice(len(values), 100, replace=False):
        values.append(flip(values[source], *rng.choice(64, rng.integers(0, 9), replace=False)))
    array = np.array(values, dtype=np.uint64)
    distances = np.bitwise_count(array[:, None] ^ array[None, :])
    a, b = np.nonzero(np.triu(distances <= max_distance, k=1))
    expected = {(int(i), int(j), int(distances[i, j])) for i, j in zip(a, b, strict=True)}
    assert set(hash_pairs(array, max_distance).iter_rows()) == expected
    assert len(expected) > 10


def test_every_copy_of_a_hash_pairs_with_every_other():
    pairs = hash_pairs(np.full(100, 0xABCDEF, dtype=np.uint64), 4)
    assert pairs.height == 100 * 99 // 2
    assert set(pairs.select("a", "b").iter_rows()) == set(itertools.combinations(range(100), 2))
    assert (pairs["distance"] == 0).all()


def test_identical_hashes_are_linked_to_one_copy_not_pairwise():
    rows = [image(f"copy{i}", f"p{i}", 0xABCDEF) for i in range(50)] + [image("near", "pn", flip(0xABCDEF, 9))]
    rows.append(image("unhashed", "pu", None))
    links = near_duplicate_links(pl.DataFrame(rows), 4)
    first = min(sha(f"copy{i}") for i in range(50))
    assert links.height == 50
    assert set(links.filter(pl.col("distance") == 0)["image_a"]) == {first}
    assert links.filter(pl.col("distance") == 1).rows() == [tuple(sorted((first, sha("near")))) + (1,)]


def test_shares_track_the_ratios_and_every_splittable_cell_has_test_images(images, result):
    deviation = share_deviation(result.assignments, tolerance=0.02)
    assert deviation["within_tolerance"].all(), deviation
    summary = dict(result.summary.select("split", "images").iter_rows())
    assert sum(summary.values()) == images.height
    groups_per_cell = result.assignments.group_by("emotion_id", "ethnicity_group").agg(
        groups=pl.col("group_id").n_unique()
    )
    assert groups_per_cell.height == 320
    splittable = groups_per_cell.filter(pl.col("groups") >= 3)
    thin = thin_test_cells(result.assignments, 1).join(splittable, on=["emotion_id", "ethnicity_group"])
    assert thin.is_empty()
    small_cells = [w for w in result.warnings if w.startswith("cell ")]
    assert len(small_cells) == groups_per_cell.height - splittable.height


def small_cell_data() -> pl.DataFrame:
    rng = np.random.default_rng(5)
    hashes = iter(random_hashes(rng, 50))
    rows = [image(f"big{i}", f"pbig{i}", next(hashes), "joy", "White") for i in range(30)]
    rows += [image("awe1", "pawe1", next(hashes), "awe", "Black"), image("awe2", "pawe1", next(hashes), "awe", "Black")]
    rows.append(image("awe3", "pawe3", next(hashes), "awe", "Black"))
    return pl.DataFrame(rows)


def test_small_cells_are_pooled_named_and_dealt_to_the_ratios():
    rng = np.random.default_rng(9)
    hashes = iter(random_hashes(rng, 80))
    rows = [image(f"big{i}", f"pbig{i}", next(hashes), "joy", "White") for i in range(30)]
    rows += [image(f"s{i}", f"ps{i}", next(hashes), f"emotion{i}", "Black") for i in range(40)]
    result = assign_splits(pl.DataFrame(rows))
    assert len(result.warnings) == 40
    assert result.warnings[0] == (
        "cell emotion_id=emotion0, ethnicity_group=Black: 1 groups (1 images) cannot fill "
        "train/validation/test; dealt in the pool of small cells"
    )
    small = result.assignments.filter(pl.col("ethnicity_group") == "Black")
    shares = dict(small.group_by("split").len().iter_rows())
    assert shares == {"train": 32, "validation": 4, "test": 4}
    line = result.warning_line()
    assert "\n" not in line
    assert line.startswith("40 cells could not be split as asked")
    assert "e.g. emotion0 x Black, emotion1 x Black, emotion10 x Black and 37 more;" in line
    assert assign_splits(pl.DataFrame(rows[:30])).warning_line() is None


def test_the_warning_line_says_when_the_pool_too_could_not_be_split():
    result = assign_splits(small_cell_data())
    assert result.warned == ["awe x Black", "pool of small cells"]
    line = result.warning_line()
    assert line.startswith("1 cell could not be split as asked (too few groups for every split")
    assert "e.g. awe x Black; nor could their pool;" in line


def test_a_pool_too_small_to_split_sends_its_first_group_to_test_or_all_to_train():
    result = assign_splits(small_cell_data())
    assert result.warnings == [
        "cell emotion_id=awe, ethnicity_group=Black: 2 groups (3 images) cannot fill train/validation/test; "
        "dealt in the pool of small cells",
        "pool of small cells: 2 groups (3 images), first group goes to test, the rest to train",
    ]
    awe = result.assignments.filter(pl.col("emotion_id") == "awe")
    assert awe.group_by("split").agg(groups=pl.col("group_id").n_unique()).sort("split").rows() == [
        ("test", 1),
        ("train", 1),
    ]
    without_minimum = assign_splits(small_cell_data(), min_test_per_cell=0)
    assert without_minimum.warnings[-1] == "pool of small cells: 2 groups (3 images), all go to train"
    assert set(without_minimum.assignments.filter(pl.col("emotion_id") == "awe")["split"]) == {"train"}


def test_cell_short_of_test_minimum_keeps_one_group_per_split_and_warns():
    rows = [image(f"i{i}", f"p{i}", None, "awe", "Black") for i in range(3)]
    result = assign_splits(pl.DataFrame(rows), min_test_per_cell=2)
    assert sorted(result.assignments["split"]) == ["test", "train", "validation"]
    assert result.warnings == [
        "cell emotion_id=awe, ethnicity_group=Black: 3 groups (3 images), "
        "only 1 test images reachable, below min_test_per_cell=2"
    ]


@pytest.mark.parametrize(
    ("ratios", "message"),
    [
        ((0.9, 0.1), "one share per split train/validation/test, got 2"),
        ((0.8, 0.2, 0.0), "must all be positive"),
        ((0.9, 0.2, -0.1), "must all be positive"),
        ((0.8, 0.1, 0.2), "must sum to 1, got 1.1"),
    ],
)
def test_bad_ratios_are_refused(images, ratios, message):
    with pytest.raises(ValueError, match=message):
        assign_splits(images, ratios=ratios)


def test_malformed_input_is_refused():
    rows = [image("a", "pa", 1), image("b", "pb", 2)]
    with pytest.raises(ValueError, match="not 16 hex digits"):
        assign_splits(pl.DataFrame(rows).with_columns(phash=pl.lit("xyz")))
    with pytest.raises(ValueError, match="must be unique"):
        assign_splits(pl.DataFrame([rows[0], rows[0]]))
    with pytest.raises(ValueError, match="lack column"):
        assign_splits(pl.DataFrame(rows).drop("ethnicity_group"))


def test_leakage_is_empty_for_a_clean_split_and_flags_planted_leaks(images, result):
    assert leakage(result.assignments).is_empty()
    assignments = result.assignments
    prompt = assignments.filter(pl.col("prompt_id").is_duplicated())["prompt_id"][0]
    first, second = assignments.filter(pl.col("prompt_id") == prompt)["image_sha256"].sort()
    train, test = (
        assignments.filter(pl.col("split") == split)["image_sha256"].sort()[0] for split in ("train", "test")
    )
    moved = pl.when(pl.col("image_sha256") == first).then(
        pl.when(pl.col("split") == "test").then(pl.lit("train")).otherwise(pl.lit("test"))
    )
    copied = pl.when(pl.col("image_sha256") == test).then(
        pl.lit(hex64(flip(int(assignments.filter(pl.col("image_sha256") == train)["phash"][0], 16), 5, 6)))
    )
    leaky = assignments.with_columns(split=moved.otherwise("split"), phash=copied.otherwise("phash"))
    found = leakage(leaky)
    assert found.select("kind", "key").rows() == [
        ("near_duplicate", "~".join(sorted((train, test)))),
        ("prompt_id", prompt),
    ]
    assert found.filter(pl.col("kind") == "prompt_id")["images"].to_list() == [[first, second]]
    assert found.filter(pl.col("kind") == "near_duplicate")["splits"].to_list() == [["test", "train"]]


def test_thin_test_cells_flags_a_cell_stripped_of_test_images(result):
    assert thin_test_cells(result.assignments, 1).filter(pl.col("emotion_id") == "emotion3").is_empty()
    cell = (pl.col("emotion_id") == "emotion3") & (pl.col("ethnicity_group") == "group5")
    stripped = result.assignments.with_columns(split=pl.when(cell).then(pl.lit("train")).otherwise("split"))
    thin = thin_test_cells(stripped, 1).filter(pl.col("emotion_id") == "emotion3")
    assert thin.rows(named=True) == [{"emotion_id": "emotion3", "ethnicity_group": "group5", "test_images": 0, "k": 1}]


def test_share_deviation_flags_a_skewed_split(result):
    assert share_deviation(result.assignments, tolerance=0.02)["within_tolerance"].all()
    skew = pl.col("split").is_in(["validation", "test"]) & (pl.int_range(pl.len()) % 3 == 0)
    skewed = result.assignments.with_columns(split=pl.when(skew).then(pl.lit("train")).otherwise("split"))
    report = share_deviation(skewed, tolerance=0.02)
    flagged = dict(report.select("split", "within_tolerance").iter_rows())
    assert flagged == {"train": False, "validation": False, "test": False}
    assert report["deviation"].sum() == pytest.approx(0.0)
    assert report.filter(pl.col("split") == "train")["deviation"][0] > 0.05


def test_hashes_at_exactly_the_limit_with_flips_spread_over_all_bands_are_found():
    for max_distance in range(8):
        rng = np.random.default_rng(max_distance)
        base = random_hashes(rng, 1)[0]
        spread = [flip(base, *bits) for bits in itertools.combinations(range(0, 64, 9), max_distance)][:50]
        found = hash_pairs(np.array([base, *spread], dtype=np.uint64), max_distance)
        assert found.filter(pl.col("a") == 0).height == len(spread)
