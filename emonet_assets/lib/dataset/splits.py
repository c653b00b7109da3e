"""Deterministic, group-aware train/validation/test splits of the benchmark images, and the checks that guard them.

Images that share a prompt, or whose perceptual hashes lie within a few bits, show the same face; split apart,
a model would be scored on a face it was trained on. So images are first joined into groups (prompt and
near-duplicate links, transitively) and whole groups are dealt to splits, stratified by emotion and analysis
group so that every cell is represented in test. Nothing depends on row order or on pixels: a group is named
by its smallest prompt id and groups are ordered by a seeded hash of that name, so regenerating the images
(another machine, GPU or model) keeps every prompt in its split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from emonet_assets.lib.shared.catalog import read_columns
from emonet_assets.lib.shared.rules import GENERATED_INTENSITY, GENERATED_INTENSITY_SQL, SPLITS
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table

if TYPE_CHECKING:
    import duckdb

DEFAULT_RATIOS = (0.8, 0.1, 0.1)
DEFAULT_STRATA = ("emotion_id", "ethnicity_group")
HASH_BITS = 64
_TEST = SPLITS.index("test")
_TRAIN = SPLITS.index("train")
POOL = "pool of small cells"

LEAKAGE_SCHEMA = {"kind": pl.String, "key": pl.String, "splits": pl.List(pl.String), "images": pl.List(pl.String)}
LINK_SCHEMA = {"image_a": pl.String, "image_b": pl.String, "distance": pl.Int64}


@dataclass(frozen=True)
class SplitResult:
    """`assignments`: the input rows, in input order, plus `group_id` and `split`; `warnings`: one sentence per
    cell that could not be split as asked; `summary`: split, images, groups, share; `warned`: the cell each warning
    is about ("anger x Black"; "pool of small cells"), in the same order."""

    assignments: pl.DataFrame
    warnings: list[str]
    summary: pl.DataFrame
    warned: list[str]

    def warning_line(self, examples: int = 3) -> str | None:
        """All the warnings as one sentence with their count and a few cells, for a log that one line per cell
        would flood (a small design has hundreds); None when there are none."""
        if not self.warnings:
            return None
        cells = [label for label in self.warned if label != POOL]
        counted = f"{len(cells)} cell{'s' if len(cells) != 1 else ''}"
        shown = ", ".join(cells[:examples])
        more = f" and {len(cells) - examples} more" if len(cells) > examples else ""
        pool = "; nor could their pool" if POOL in self.warned else ""
        return (
            f"{counted} could not be split as asked (too few groups for every split, or too few test images), "
            f"e.g. {shown}{more}{pool}; each is listed in the splits asset's `warnings` metadata"
        )


def validate_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    """Ratios for train, validation and test; every split must be able to receive images, hence all positive."""
    ratios = tuple(float(ratio) for ratio in ratios)
    if len(ratios) != len(SPLITS):
        raise ValueError(f"ratios must give one share per split {'/'.join(SPLITS)}, got {len(ratios)}: {ratios}")
    if any(not ratio > 0 for ratio in ratios):
        raise ValueError(f"ratios must all be positive, got {dict(zip(SPLITS, ratios, strict=True))}")
    if abs(sum(ratios) - 1) > 1e-9:
        raise ValueError(f"ratios must sum to 1, got {sum(ratios):g} from {dict(zip(SPLITS, ratios, strict=True))}")
    return ratios


def _bands(max_distance: int) -> list[tuple[int, int]]:
    """(shift, width) of max_distance + 1 bands covering the 64 bits: by pigeonhole, two hashes at most
    max_distance bits apart agree exactly on at least one band, so only hashes sharing a band need comparing."""
    count = max_distance + 1
    widths = [HASH_BITS // count + (band < HASH_BITS % count) for band in range(count)]
    shifts = np.cumsum([0, *widths[:-1]]).tolist()
    return list(zip(shifts, widths, strict=True))


def hash_pairs(values: np.ndarray, max_distance: int = 4) -> pl.DataFrame:
    """Every index pair (a < b) of 64-bit hashes at most `max_distance` bits apart, with its distance.

    Exact, like comparing all pairs, but only hashes equal on a band are compared (in a compiled loop over each
    band's runs), so cost grows with the number of hashes sharing a band rather than with n^2. Identical values
    all pair up: pass distinct values when copies can be many (near_duplicate_links does).
    """
    if not 0 <= max_distance < HASH_BITS:
        raise ValueError(f"near-duplicate distance must be between 0 and {HASH_BITS - 1} bits, got {max_distance}")
    from emonet_assets.lib.dataset.hash_kernel import close_pairs_in_runs

    values = np.asarray(values, dtype=np.uint64)
    found_a, found_b = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
    for shift, width in _bands(max_distance):
        band = (values >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        a, b = close_pairs_in_runs(values, np.argsort(band, kind="stable"), band, max_distance)
        found_a.append(a)
        found_b.append(b)
    # A pair agreeing on several bands was found once per band.
    stride = max(len(values), 1)
    keys = np.unique(np.concatenate(found_a) * stride + np.concatenate(found_b))
    a, b = keys // stride, keys % stride
    distance = np.bitwise_count(values[a] ^ values[b]).astype(np.int64)
    return pl.DataFrame({"a": a, "b": b, "distance": distance})


def _parsed_hashes(images: pl.DataFrame) -> pl.DataFrame:
    """image_sha256 and its phash as UInt64, images without a hash left out."""
    images = images.select("image_sha256", pl.col("phash").cast(pl.String))
    bad = images.filter(pl.col("phash").is_not_null() & ~pl.col("phash").str.contains(r"^[0-9a-fA-F]{16}$"))
    if bad.height:
        sha, value = bad["image_sha256"][0], bad["phash"][0]
        raise ValueError(f"{bad.height} perceptual hashes are not 16 hex digits (64 bits), e.g. image {sha}: {value!r}")
    hashed = pl.col("phash").str.to_integer(base=16, dtype=pl.UInt64)
    return images.select("image_sha256", hashed.alias("hash")).drop_nulls("hash")


def near_duplicate_links(images: pl.DataFrame, max_distance: int = 4) -> pl.DataFrame:
    """Links (image_a < image_b, distance) whose connected components are exactly the near-duplicate clusters.

    Images with identical hashes are linked to the copy with the smallest image_sha256 rather than pairwise,
    so a thousand copies cost a thousand links, not half a million; distinct hashes within `max_distance`
    link those representatives. Hence not every close pair is listed, but every cluster is connected.
    """
    hashed = _parsed_hashes(images)
    classes = hashed.group_by("hash").agg(rep=pl.col("image_sha256").min()).sort("hash")
    copies = (
        hashed.join(classes, on="hash")
        .filter(pl.col("image_sha256") != pl.col("rep"))
        .select(image_a="rep", image_b="image_sha256", distance=pl.lit(0, pl.Int64))
    )
    pairs = hash_pairs(classes["hash"].to_numpy(), max_distance)
    reps = classes["rep"]
    x, y = reps.gather(pairs["a"]), reps.gather(pairs["b"])
    near = pl.DataFrame({"x": x, "y": y, "distance": pairs["distance"]}).select(
        image_a=pl.min_horizontal("x", "y"), image_b=pl.max_horizontal("x", "y"), distance="distance"
    )
    return pl.concat([copies, near]).cast(LINK_SCHEMA).sort("image_a", "image_b")


def group_ids(images: pl.DataFrame, near_duplicate_distance: int = 4) -> pl.Series:
    """Per input row, the smallest prompt_id among the images it shares a prompt or near-duplicate chain with.

    The name comes from the design, never from pixels: the same prompts regenerated with other pixels keep
    their group names. A group without any prompt id (images from outside the design) is named by its smallest
    image_sha256, the only identity it has.
    """
    from scipy.sparse import coo_matrix  # scipy loads in a second: only the steps that split pay for it
    from scipy.sparse.csgraph import connected_components

    nodes = images.select("image_sha256", "prompt_id").with_row_index("node")
    same_prompt = (
        nodes.drop_nulls("prompt_id").with_columns(other=pl.col("node").min().over("prompt_id")).select("node", "other")
    )
    index = nodes.select("image_sha256", "node")
    links = (
        near_duplicate_links(images, near_duplicate_distance)
        .join(index.rename({"image_sha256": "image_a"}), on="image_a")
        .join(index.rename({"image_sha256": "image_b", "node": "other"}), on="image_b")
        .select("node", "other")
    )
    edges = pl.concat([same_prompt, links])
    graph = coo_matrix(
        (np.ones(edges.height, dtype=np.int8), (edges["node"].to_numpy(), edges["other"].to_numpy())),
        shape=(images.height, images.height),
    )
    _, labels = connected_components(graph, directed=False)
    component = nodes.with_columns(label=pl.Series(labels))
    name = pl.coalesce(
        pl.col("prompt_id").cast(pl.String).min().over("label"), pl.col("image_sha256").min().over("label")
    )
    return component.select(name.alias("group_id")).to_series()


def _deal(sizes: list[int], ratios: tuple[float, ...], min_test: int) -> tuple[list[int], str | None]:
    """Split index per group (groups in dealing order) and, when the cell could not be split as asked, why.

    Test first takes groups until it holds `min_test` images, leaving one group for each other split; then each
    group goes to the split furthest below its target share of the images dealt so far, except that the last
    groups go to splits still empty. With fewer groups than splits, the first group goes to test (when
    `min_test` asks for test images) and the rest to train.
    """
    if len(sizes) < len(SPLITS):
        if min_test > 0:
            return [_TEST] + [_TRAIN] * (len(sizes) - 1), "first group goes to test, the rest to train"
        return [_TRAIN] * len(sizes), "all go to train"
    counts, groups, dealt = [0] * len(SPLITS), [0] * len(SPLITS), []
    for position, size in enumerate(sizes):
        remaining = len(sizes) - position
        empty = [split for split in range(len(SPLITS)) if groups[split] == 0]
        total = sum(counts) + size
        if counts[_TEST] < min_test and remaining > len(SPLITS) - 1:
            split = _TEST
        else:
            candidates = empty if remaining <= len(empty) else range(len(SPLITS))
            split = max(candidates, key=lambda s: (ratios[s] * total - counts[s], -s))
        counts[split] += size
        groups[split] += 1
        dealt.append(split)
    if counts[_TEST] < min_test:
        return dealt, f"only {counts[_TEST]} test images reachable, below min_test_per_cell={min_test}"
    return dealt, None


def _order_key(seed: int | str, group_id: str) -> str:
    return hashlib.sha256(f"{seed}:{group_id}".encode()).hexdigest()


def assign_splits(
    images: pl.DataFrame,
    *,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int | str = 0,
    near_duplicate_distance: int = 4,
    strata: Sequence[str] = DEFAULT_STRATA,
    min_test_per_cell: int = 1,
) -> SplitResult:
    """Train/validation/test per image; whole groups (shared prompt or near-duplicate phash) move together.

    A group belongs to the stratum most of its images are in (ties: the smallest stratum values). Within a
    stratum, groups are dealt in order of sha256(seed, group_id) so that cumulative image counts track `ratios`.

    Small cells: a stratum with fewer groups than splits cannot fill all three, so its groups join one pool of
    every such cell, dealt like a stratum (the shares stay on target however fragmented the design), and a
    warning names the cell. In a stratum or pool that can be split, test is served first up to
    `min_test_per_cell` images while leaving every other split one group; when that is not enough, a warning
    says so.
    """
    ratios = validate_ratios(ratios)
    strata = list(strata)
    missing = [column for column in ("image_sha256", "prompt_id", "phash", *strata) if column not in images.columns]
    if missing:
        raise ValueError(f"images lack column(s) {', '.join(missing)}")
    if images["image_sha256"].is_duplicated().any():
        duplicated = images.filter(pl.col("image_sha256").is_duplicated())["image_sha256"][0]
        raise ValueError(f"image_sha256 must be unique; {duplicated} appears more than once")

    labelled = images.with_columns(group_id=group_ids(images, near_duplicate_distance))
    majority = (
        labelled.group_by("group_id", *strata)
        .len()
        .sort(["group_id", "len", *strata], descending=[False, True, *[False] * len(strata)], nulls_last=True)
        .unique("group_id", keep="first", maintain_order=True)
        .drop("len")
    )
    groups = labelled.group_by("group_id").agg(images=pl.len()).join(majority, on="group_id")
    groups = groups.with_columns(
        order=pl.Series([_order_key(seed, group_id) for group_id in groups["group_id"]], dtype=pl.String)
    ).sort([*strata, "order"], nulls_last=True)

    warnings, warned, split_ids, pooled = [], [], {}, []
    for cell, members in groups.group_by(strata, maintain_order=True):
        sizes = members["images"].to_list()
        name = ", ".join(f"{column}={value}" for column, value in zip(strata, cell, strict=True))
        reach = f"{len(sizes)} groups ({sum(sizes)} images)"
        if len(sizes) < len(SPLITS):
            pooled.append(members)
            warnings.append(f"cell {name}: {reach} cannot fill {'/'.join(SPLITS)}; dealt in the pool of small cells")
            warned.append(" x ".join(map(str, cell)))
            continue
        splits, problem = _deal(sizes, ratios, min_test_per_cell)
        split_ids.update(zip(members["group_id"], splits, strict=True))
        if problem:
            warnings.append(f"cell {name}: {reach}, {problem}")
            warned.append(" x ".join(map(str, cell)))
    if pooled:
        pool = pl.concat(pooled).sort("order")
        splits, problem = _deal(pool["images"].to_list(), ratios, min_test_per_cell)
        split_ids.update(zip(pool["group_id"], splits, strict=True))
        if problem:
            warnings.append(f"pool of small cells: {pool.height} groups ({pool['images'].sum()} images), {problem}")
            warned.append(POOL)
    split_of = groups.select("group_id").with_columns(
        split=pl.col("group_id").replace_strict({g: SPLITS[i] for g, i in split_ids.items()}, return_dtype=pl.String)
    )
    assignments = labelled.join(split_of, on="group_id", how="left", maintain_order="left")
    return SplitResult(assignments, warnings, summarise(assignments), warned)


def summarise(assignments: pl.DataFrame) -> pl.DataFrame:
    """Images, groups and share of images per split, every split listed even when empty."""
    counts = assignments.group_by("split").agg(
        images=pl.len().cast(pl.Int64), groups=pl.col("group_id").n_unique().cast(pl.Int64)
    )
    total = max(assignments.height, 1)
    return (
        pl.DataFrame({"split": SPLITS})
        .join(counts, on="split", how="left", maintain_order="left")
        .fill_null(0)
        .with_columns(share=pl.col("images") / total)
    )


def leakage(assignments: pl.DataFrame, near_duplicate_distance: int = 4) -> pl.DataFrame:
    """Prompts spread over several splits, and near-duplicate links crossing splits: each a face seen in training
    and scored in evaluation. Empty when the split is clean.

    Near-duplicates are checked over near_duplicate_links, so every cluster that crosses splits shows at least
    one crossing pair (key "image_a~image_b"), though not necessarily every one.
    """
    prompts = (
        assignments.drop_nulls("prompt_id")
        .group_by("prompt_id")
        .agg(splits=pl.col("split").unique().sort(), images=pl.col("image_sha256").sort())
        .filter(pl.col("splits").list.len() > 1)
        .select(kind=pl.lit("prompt_id"), key="prompt_id", splits="splits", images="images")
    )
    split_of = assignments.select("image_sha256", "split")
    near = (
        near_duplicate_links(assignments, near_duplicate_distance)
        .join(split_of.rename({"image_sha256": "image_a", "split": "split_a"}), on="image_a")
        .join(split_of.rename({"image_sha256": "image_b", "split": "split_b"}), on="image_b")
        .filter(pl.col("split_a") != pl.col("split_b"))
        .select(
            kind=pl.lit("near_duplicate"),
            key=pl.concat_str("image_a", "image_b", separator="~"),
            splits=pl.concat_list("split_a", "split_b").list.sort(),
            images=pl.concat_list("image_a", "image_b"),
        )
    )
    return pl.concat([prompts.cast(LEAKAGE_SCHEMA), near.cast(LEAKAGE_SCHEMA)]).sort("kind", "key")


def thin_test_cells(assignments: pl.DataFrame, k: int, cells: Sequence[str] = DEFAULT_STRATA) -> pl.DataFrame:
    """Cells present in the data with fewer than `k` test images, whose per-cell scores would be noise.
    Empty when every cell is covered."""
    cells = list(cells)
    return (
        assignments.group_by(cells)
        .agg(test_images=(pl.col("split") == "test").sum().cast(pl.Int64))
        .filter(pl.col("test_images") < k)
        .with_columns(k=pl.lit(k, pl.Int64))
        .sort(cells, nulls_last=True)
    )


def share_deviation(
    assignments: pl.DataFrame, ratios: Sequence[float] = DEFAULT_RATIOS, tolerance: float = 0.02
) -> pl.DataFrame:
    """Every split's share of images against its target; grouping and small cells pull shares off target, and
    `within_tolerance` says whether that stayed within `tolerance` (absolute share)."""
    target = pl.DataFrame({"split": SPLITS, "target": validate_ratios(ratios)})
    return (
        summarise(assignments)
        .select("split", "images", "share")
        .join(target, on="split", maintain_order="left")
        .with_columns(deviation=pl.col("share") - pl.col("target"))
        .with_columns(within_tolerance=pl.col("deviation").abs() <= tolerance)
    )


def read_rated_images(con: duckdb.DuckDBPyConnection, store: Store) -> pl.DataFrame:
    """`rated_images` over the store's tables, reading only the columns and rows it uses by DuckDB on `con`: at a
    million images the consensus alone is 40M rows, of which one per rated image is needed."""
    return rated_images(
        read_columns(con, store, Table.GENERATED_IMAGES, ["image_sha256", "prompt_id"]),
        read_columns(con, store, Table.IMAGE_QC, ["image_sha256", "passed", "phash"]),
        read_columns(con, store, Table.PROMPT_DESIGN, ["prompt_id", "emotion_id", "ethnicity_group", "age", "gender"]),
        read_columns(
            con,
            store,
            Table.CONSENSUS_LABELS,
            ["collection", "scale", "image_id"],
            GENERATED_INTENSITY_SQL,
            distinct=True,
        ),
    )


def rated_images(
    manifest: pl.DataFrame, qc: pl.DataFrame, prompts: pl.DataFrame, consensus: pl.DataFrame
) -> pl.DataFrame:
    """The images a model can learn from: generated, past QC, with intensity consensus; one row each with the
    prompt's demographics, so splits can keep prompts together and stratify by emotion and analysis group."""
    rated = consensus.filter(GENERATED_INTENSITY)
    return (
        manifest.select("image_sha256", "prompt_id")
        .join(qc.filter(pl.col("passed")).select("image_sha256", "phash"), on="image_sha256")
        .join(rated.select(image_sha256="image_id").unique(), on="image_sha256", how="semi")
        .join(prompts.select("prompt_id", "emotion_id", "ethnicity_group", "age", "gender"), on="prompt_id")
        .sort("image_sha256")
    )
