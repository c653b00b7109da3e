"""Annotation batches through the landing-zone sensor, then consensus and agreement (dbt) on the result."""

import json
import re
import shutil
from itertools import combinations

import dagster as dg
import duckdb
import krippendorff
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

from emonet_assets.definitions import build_definitions
from emonet_assets.lib.annotation.annotation_batches import batch_log
from emonet_assets.lib.annotation.demo_panel import EXTERNAL_COLLECTION, land_demo_panel
from emonet_assets.lib.annotation.landing import BatchDeclaration, land_file
from emonet_assets.lib.annotation.simulated_panel import PanelSpec, ground_truth, simulate_ratings, write_long_csv
from emonet_assets.lib.consensus.agreement import KEY, item_statistics
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table
from emonet_assets.lib.taxonomy.taxonomy import load_taxonomy
from emonet_assets.resources import CatalogResource
from emonet_assets.runner import materialize_step, plan, run_sensor
from emonet_assets_tests.defs.conftest import tiny_profile

pytestmark = pytest.mark.slow

SENSOR = "annotation_landing_sensor"


def consensus_steps(defs, instance):
    """Materialize `annotations` and the consensus group downstream of it, one node per run: what the automation
    conditions request after an import, run here directly because this instance holds no history of the graph."""
    annotations = dg.AssetSelection.assets(Table.ANNOTATIONS.key)
    downstream = (annotations | annotations.downstream() & dg.AssetSelection.groups("consensus")).resolve(
        defs.resolve_asset_graph()
    )
    reports = [materialize_step(defs, instance, keys) for keys in plan(defs) if set(keys) & downstream]
    assert all(r.success for r in reports), [r.error for r in reports]
    return reports


class Annotated:
    def __init__(self, root):
        self.root = root
        self.profile = tiny_profile(root)
        self.defs = build_definitions(self.profile)
        self.instance = dg.DagsterInstance.ephemeral()
        self.store = Store(str(root))
        self.landing = self.profile.annotation.landing

    def sensor(self):
        return run_sensor(self.defs, self.instance, SENSOR)

    def catalog(self):
        return duckdb.connect(self.profile.catalog_path, read_only=True)


@pytest.fixture(scope="module")
def annotated(materialized_root, tmp_path_factory):
    """The tiny graph with the demo panel imported through the sensor and consensus built: read only."""
    root = tmp_path_factory.mktemp("annotated") / "root"
    shutil.copytree(materialized_root, root)
    env = Annotated(root)
    land_demo_panel(env.store, env.landing, load_taxonomy(), env.defs.resources["embedder"].embedder())
    reports = env.sensor()
    assert len(reports) == 5 and all(r.success for r in reports), [r.error for r in reports]
    env.consensus_reports = consensus_steps(env.defs, env.instance)
    return env


@pytest.fixture
def annotated_copy(annotated, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(annotated.root, root)
    env = Annotated(root)
    for key in annotated.instance.get_dynamic_partitions("annotation_batches"):
        env.instance.add_dynamic_partitions("annotation_batches", [key])
    return env


def test_every_landed_file_becomes_one_batch_and_its_counts_add_up(annotated):
    log = batch_log(annotated.store)
    assert log.height == 5 and set(log["status"]) == {"imported"}
    assert set(log["format"]) == {"long", "hq", "label-studio"}
    assert set(log["collection"]) == {"generated", EXTERNAL_COLLECTION}
    for row in log.iter_rows(named=True):
        assert row["rows_read"] == row["accepted"] + row["rejected"] + row["skipped"] > 0
    positional = log.filter(pl.col("source_file").str.ends_with("-panel-intensity.csv"))
    assert positional["notes"].to_list() == [["numbers read as prompt positions (positional ids declared)"]]
    ratings = annotated.store.read_table("annotations")
    assert ratings.height == int(log["accepted"].sum())
    assert ratings.select("batch_id", "source_file", "source_row").null_count().row(0) == (0, 0, 0)
    external = annotated.store.read_table("external_images")
    assert external.height == 12 and external["image_id"].str.starts_with(f"{EXTERNAL_COLLECTION}/").all()
    generated = set(annotated.store.read_table("generated_images")["image_sha256"])
    assert set(ratings.filter(pl.col("collection") == "generated")["image_id"]) == generated
    checks = [name for r in annotated.consensus_reports for name in r.checks_failed]
    assert checks == []


def test_the_same_content_landing_again_is_a_no_op(annotated_copy):
    env = annotated_copy
    before = env.store.read_table("annotations")
    [first, *_] = batch_log(env.store)["source_file"].to_list()
    env.store.write_bytes(f"{env.landing}/renamed-copy.csv", env.store.read_bytes(first))

    assert env.sensor() == []
    assert env.store.read_table("annotations").equals(before)


def test_a_file_that_cannot_be_read_fails_its_batch_naming_the_file_and_changes_nothing(annotated_copy):
    env = annotated_copy
    before = env.store.read_table("annotations")
    env.store.write_bytes(f"{env.landing}/header-only.csv", b"path,annotator,value,emotion\n")

    [report] = env.sensor()

    assert not report.success
    assert "header-only.csv" in report.error and "no data rows" in report.error.lower()
    rejected = batch_log(env.store).filter(pl.col("status") == "rejected")
    assert rejected.height == 1 and "header-only.csv" in rejected["source_file"][0]
    consensus_steps(env.defs, env.instance)
    assert env.store.read_table("annotations").equals(before)


def test_consensus_recovers_the_ground_truth_of_a_low_noise_panel(annotated_copy):
    env = annotated_copy
    spec = PanelSpec(annotators=4, noise=0.5, bias_sd=0.2, missing=0.0, seed=11)
    emotions = [e.name for e in load_taxonomy().emotions[:8]]
    refs = [f"ext-{i:03d}" for i in range(60)]
    truth = ground_truth(refs, emotions, spec)
    path = env.root / "truth.csv"
    write_long_csv(simulate_ratings(truth, spec), path)
    land_file(env.store, env.landing, "truth.csv", path.read_bytes(), BatchDeclaration(collection="truth-panel"))
    assert all(r.success for r in env.sensor())
    consensus_steps(env.defs, env.instance)

    consensus = env.store.read_table("consensus_labels").filter(pl.col("collection") == "truth-panel")
    tax = load_taxonomy()
    expected = truth.with_columns(
        image_id=pl.lit("truth-panel/") + pl.col("image_ref"),
        emotion_id=pl.col("emotion").map_elements(tax.resolve, return_dtype=pl.String),
    )
    joined = expected.join(consensus, on=["image_id", "emotion_id"])
    assert joined.height == 60 * 8
    assert (joined["median_rating"] - joined["intensity"]).abs().mean() < 0.5
    assert (joined["present"] == (joined["intensity"] >= 1)).mean() > 0.9


def test_a_second_consensus_build_reuses_dbt_s_parse_of_the_project(annotated_copy):
    """dbt's artifacts stay in one folder per catalog, so a build parses the whole project only when the project or
    its variables changed: here the first build on this copy, whose storage root is new."""
    env = annotated_copy
    dbt_step = next(keys for keys in plan(env.defs) if Table.CONSENSUS_LABELS.key in keys)
    for _ in range(2):
        report = materialize_step(env.defs, env.instance, dbt_step)
        assert report.success, report.error
    log = (CatalogResource(database=env.profile.catalog_path).dbt_target_path() / "dbt.log").read_text()
    parses: dict[str, set[str]] = {}  # per dbt process, in order: how it parsed
    for name, pid in re.findall(r'"name": "(UnableToPartialParse|PartialParsingSkipParsing)", "pid": (\d+)', log):
        parses.setdefault(pid, set()).add(name)
    assert list(parses.values())[-2:] == [{"UnableToPartialParse"}, {"PartialParsingSkipParsing"}]


def _reliability(ratings: pl.DataFrame) -> np.ndarray:
    return ratings.pivot(on="image_id", index="annotator", values="value").drop("annotator").to_numpy().astype(float)


def test_alpha_in_sql_equals_the_krippendorff_package(annotated):
    with annotated.catalog() as con:
        ratings = con.sql("select * from annotations").pl()
        alphas = con.sql("select * from emotion_agreement where alpha_interval is not null").pl()
    assert alphas.height >= 80
    for row in alphas.iter_rows(named=True):
        mine = ratings.filter(
            (pl.col("collection") == row["collection"])
            & (pl.col("scale") == row["scale"])
            & (pl.col("emotion_id") == row["emotion_id"])
        )
        data = _reliability(mine)
        expected = krippendorff.alpha(reliability_data=data, level_of_measurement="interval")
        assert row["alpha_interval"] == pytest.approx(expected, abs=1e-9)
        if np.unique(data[~np.isnan(data)]).size > 1:
            ordinal = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")
            assert row["alpha_ordinal"] == pytest.approx(ordinal, abs=1e-9)


def test_kappa_and_human_ceiling_in_sql_equal_scikit_learn_and_scipy(annotated):
    with annotated.catalog() as con:
        ratings = con.sql("select * from annotations where collection = 'generated' and scale = 'intensity'").pl()
        kappas = con.sql("select * from int_pairwise_kappa where collection = 'generated'").pl()
        ceiling = con.sql("select * from int_annotator_emotion_spearman where collection = 'generated'").pl()
    checked = 0
    for row in kappas.filter(pl.col("scale") == "intensity").head(60).iter_rows(named=True):
        mine = ratings.filter(pl.col("emotion_id") == row["emotion_id"])
        a = mine.filter(pl.col("annotator") == row["annotator_a"]).select("image_id", "value")
        b = mine.filter(pl.col("annotator") == row["annotator_b"]).select("image_id", "value")
        pair = a.join(b, on="image_id")
        expected = cohen_kappa_score(pair["value"], pair["value_right"], weights="quadratic", labels=list(range(8)))
        if np.isnan(expected):
            assert row["kappa_quadratic"] is None
        else:
            assert row["kappa_quadratic"] == pytest.approx(expected, abs=1e-9)
            checked += 1
    assert checked >= 30
    for row in ceiling.filter(pl.col("scale") == "intensity").head(40).iter_rows(named=True):
        mine = ratings.filter(pl.col("emotion_id") == row["emotion_id"])
        own = mine.filter(pl.col("annotator") == row["annotator"]).select("image_id", "value")
        others = mine.filter(pl.col("annotator") != row["annotator"]).group_by("image_id").agg(pl.col("value").median())
        pair = own.join(others, on="image_id")
        rho = spearmanr(pair["value"], pair["value_right"]).statistic
        if np.isnan(rho):
            assert row["spearman_vs_others"] is None
        else:
            assert row["spearman_vs_others"] == pytest.approx(rho, abs=1e-9)


def test_agreement_tables_have_a_bootstrap_ci_and_are_exported_to_parquet(annotated):
    agreement = annotated.store.read_table("emotion_agreement")
    generated = agreement.filter((pl.col("collection") == "generated") & (pl.col("scale") == "intensity"))
    assert generated.height == 40
    assert (generated["bootstrap_resamples"] == 1000).all()
    assert (generated["alpha_interval_ci_low"] <= generated["alpha_interval_ci_high"]).all()
    assert generated["kappa_quadratic_mean"].is_not_null().all()
    assert generated["human_ceiling_spearman"].is_not_null().all()
    quality = annotated.store.read_table("annotator_quality")
    assert set(quality["annotator"]) >= {"expert-1", "expert-2", "expert-3", "expert-4"}
    binary = annotated.store.read_table("dawid_skene_consensus")
    assert binary.height > 0 and binary["ds_probability"].is_between(0, 1).all()


def test_item_stats_are_exported_and_equal_item_statistics_of_the_ratings(annotated):
    with annotated.catalog() as con:
        ratings = con.sql("select * from annotations").pl()
    exported = annotated.store.read_table(Table.AGREEMENT_ITEM_STATS).sort(*KEY, "image_id")
    assert exported.height > 0
    assert_frame_equal(exported, item_statistics(ratings), check_dtypes=False)


def test_per_item_exports_are_stored_in_image_then_emotion_order(annotated):
    """The catalog keeps the per-item counts in item key order and the exported views keep it, so each Parquet row
    group holds few image ids, dictionary-encoded."""
    order = ["collection", "image_id", "emotion_id", "scale"]
    for table in (Table.CONSENSUS_LABELS, Table.AGREEMENT_ITEM_STATS):
        stored = annotated.store.read_table(table).select(order)
        assert stored.height > 100 and stored["image_id"].n_unique() > 10
        assert stored.equals(stored.sort(order)), table


def test_reannotation_tasks_round_trip_through_label_studio(annotated_copy):
    env = annotated_copy
    tasks = json.loads(env.store.read_bytes("exports/label_studio/reannotation_tasks.json"))
    queue = env.store.read_table("reannotation_queue").filter(pl.col("collection") == "generated")
    assert tasks and queue.height
    generated_tasks = [t for t in tasks if t["data"]["collection"] == "generated"]
    assert sum(len(t["data"]["emotions"]) for t in generated_tasks) == queue.height
    export = [
        {
            "id": i,
            "data": task["data"],
            "annotations": [
                {
                    "completed_by": {"id": 99, "email": "expert-9"},
                    "was_cancelled": False,
                    "result": [
                        {"from_name": e, "to_name": "image", "type": "number", "value": {"number": 3}}
                        for e in task["data"]["emotions"]
                    ],
                }
            ],
        }
        for i, task in enumerate(generated_tasks)
    ]
    data = json.dumps(export).encode()
    land_file(env.store, env.landing, "reannotated.json", data, BatchDeclaration())
    [report] = env.sensor()
    assert report.success, report.error
    consensus_steps(env.defs, env.instance)

    ratings = env.store.read_table("annotations").filter(pl.col("annotator") == "expert-9")
    assert ratings.height == queue.height
    assert set(zip(ratings["image_id"], ratings["emotion_id"], strict=True)) == set(
        zip(queue["image_id"], queue["emotion_id"], strict=True)
    )


def test_ratings_check_fails_on_duplicates_and_values_off_the_scale(annotated_copy):
    from emonet_assets.defs.annotation.checks import ratings_meet_expectations
    from emonet_assets.resources import ProfileResource, StorageResource

    env = annotated_copy
    ratings = env.store.read_table("annotations")
    bad = pl.concat([ratings, ratings.head(1)]).with_columns(
        value=pl.when(pl.int_range(pl.len()) == 5).then(9).otherwise(pl.col("value")).cast(pl.Int32)
    )
    env.store.write_table("annotations", bad)

    result = ratings_meet_expectations(
        storage=StorageResource(root=str(env.root)), profile=ProfileResource.from_profile(tiny_profile(env.root))
    )

    assert not result.passed
    failed = {f["expectation"] for f in result.metadata["failures"].value}
    assert {"expect_compound_columns_to_be_unique", "expect_column_values_to_be_between"} <= failed


def test_reconcile_check_fails_when_a_batch_lost_accepted_rows(annotated_copy):
    from emonet_assets.defs.annotation.checks import batches_reconcile
    from emonet_assets.resources import StorageResource

    env = annotated_copy
    batch = batch_log(env.store)["batch_id"][0]
    table = env.store.read_table("annotation_batches", [batch])
    env.store.write_table("annotation_batches", table.head(table.height - 3), batch)

    result = batches_reconcile(storage=StorageResource(root=str(env.root)))

    assert not result.passed
    assert batch[:12] in result.description


def test_every_dbt_test_fails_on_data_that_breaks_it(annotated_copy):
    """Each dbt test becomes an asset check; plant a violation of every one and run `dbt test`."""
    from emonet_assets.defs.consensus.project import dbt_resource

    env = annotated_copy
    with duckdb.connect(env.profile.catalog_path) as con:
        con.execute("insert into stg_ratings select * from stg_ratings where rowid = 0")
        con.execute(
            "insert into stg_ratings select * replace (9 as value, null as annotator_key, null as batch_key, "
            "null as item_key) from stg_ratings where rowid = 0"
        )
        con.execute("insert into stg_emotions select 99, 'not_an_emotion'")
        con.execute("insert into stg_taxonomy select * from stg_taxonomy where rowid = 0")
        con.execute("insert into stg_taxonomy select * replace (null as emotion_id) from stg_taxonomy where rowid = 0")
        # consensus_labels is a view over the per-item value counts: a repeated item, a median of 8, an item with no
        # ratings and one with no median break its tests there.
        con.execute("insert into int_item_value_counts select * from int_item_value_counts where rowid = 0")
        for planted in ("16 as twice_median", "0 as m", "null as twice_median"):
            con.execute(
                f"insert into int_item_value_counts select * replace ({planted}) from int_item_value_counts "
                "where rowid = 1"
            )
        con.execute("insert into emotion_agreement select * from emotion_agreement limit 1")
        con.execute(
            "update emotion_agreement set alpha_interval = 1.5, kappa_quadratic_mean = -2, "
            "human_ceiling_spearman = 2 where rowid = 0"
        )
        con.execute("insert into annotator_quality select * from annotator_quality limit 1")
        con.execute("update annotator_quality set share_nonzero = 1.5 where rowid = 0")
        con.execute("insert into reannotation_queue select * from reannotation_queue limit 1")
        con.execute("update reannotation_queue set reason = 'whim' where rowid = 0")
        con.execute("update agreement_bootstrap set alpha_interval_ci_low = alpha_interval_ci_high + 1 where rowid = 0")
        con.execute("update dawid_skene_consensus set ds_probability = 1.5 where rowid = 0")
    invocation = dbt_resource().cli(
        ["test", "--vars", json.dumps({"catalog_path": env.profile.catalog_path, "storage_root": str(env.root)})],
        raise_on_error=False,
    )
    invocation.wait()
    results = json.loads((invocation.target_path / "run_results.json").read_text())["results"]
    statuses = {r["unique_id"].split(".")[2]: r["status"] for r in results}
    assert len(statuses) >= 20
    assert {name: s for name, s in statuses.items() if s != "fail"} == {}


def test_translator_maps_dbt_sources_onto_the_assets_that_write_them():
    defs = build_definitions(tiny_profile("unused"))
    graph = defs.resolve_asset_graph()
    consensus = graph.get(dg.AssetKey("consensus_labels"))
    assert consensus.group_name == "consensus"
    stg = graph.get(dg.AssetKey("stg_ratings"))
    assert dg.AssetKey("annotations") in stg.parent_keys
    check_names = {key.name for key in graph.asset_check_keys if key.asset_key == dg.AssetKey("consensus_labels")}
    assert any(name.startswith("unique_combination") for name in check_names)


def test_pairs_cover_every_annotator_pair(annotated):
    with annotated.catalog() as con:
        kappas = con.sql(
            "select distinct annotator_a, annotator_b from int_pairwise_kappa "
            "where collection = 'generated' and scale = 'intensity'"
        ).fetchall()
    assert sorted(kappas) == sorted(combinations([f"expert-{i}" for i in range(1, 5)], 2))
