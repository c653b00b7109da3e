"""The DuckDB catalog (emonet_assets.lib.shared.catalog): SQL rendering, views over Parquet tables, checks."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import polars as pl
import pytest

from emonet_assets.lib.shared.catalog import (
    add_missing_views,
    add_view,
    configure,
    connect,
    create_view,
    quote_identifier,
    quote_literal,
    render_sql,
    run_check_sql,
    sql_text,
)
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import Table
from emonet_assets.resources import StorageResource


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(str(tmp_path / "root"))


# rendering


def test_render_sql_fills_every_placeholder():
    text = render_sql("catalog/table_view", view='"my_view"', files="['/a.parquet', '/b.parquet']")
    assert "{{" not in text and "}}" not in text
    assert 'CREATE VIEW IF NOT EXISTS "my_view" AS' in text
    assert "read_parquet(['/a.parquet', '/b.parquet'], union_by_name = true)" in text
    # the rest of the file is untouched
    assert text.replace('"my_view"', "{{ view }}").replace("['/a.parquet', '/b.parquet']", "{{ files }}") == sql_text(
        "catalog/table_view"
    )


def test_render_sql_names_a_missing_placeholder():
    with pytest.raises(KeyError) as exc:
        render_sql("catalog/table_view", view='"my_view"')
    assert "files" in str(exc.value)
    assert "catalog/table_view" in str(exc.value)


def test_render_sql_of_unknown_file():
    with pytest.raises(FileNotFoundError) as exc:
        render_sql("catalog/does_not_exist")
    assert "does_not_exist" in str(exc.value)


def test_quote_literal_escapes_single_quotes():
    assert quote_literal("plain") == "'plain'"
    assert quote_literal("it's") == "'it''s'"
    assert quote_literal("''") == "''''''"
    con = duckdb.connect()
    try:
        for value in ["it's", "a'; DROP TABLE x; --", "''", "/tmp/o'brien/t.parquet"]:
            assert con.execute(f"SELECT {quote_literal(value)}").fetchone() == (value,)
    finally:
        con.close()


def test_quote_identifier_escapes_double_quotes():
    assert quote_identifier('we"ird') == '"we""ird"'
    con = duckdb.connect()
    try:
        name = quote_identifier('we"ird name')
        con.execute(f"CREATE TABLE {name} AS SELECT 1 AS x")
        assert con.execute('SELECT x FROM "we""ird name"').fetchone() == (1,)
    finally:
        con.close()


# views over the store's tables


def test_view_unions_partitions(store, tmp_path):
    store.write_table("prompts", pl.DataFrame({"prompt_id": [1, 2], "n": [10, 20]}), partition="shard-000")
    store.write_table("prompts", pl.DataFrame({"prompt_id": [3], "n": [30]}), partition="shard-001")

    con = connect(str(tmp_path / "catalog.duckdb"), store)
    try:
        create_view(con, store, "prompts")
        rows = con.execute('SELECT prompt_id, n FROM "prompts" ORDER BY prompt_id').fetchall()
        assert rows == [(1, 10), (2, 20), (3, 30)]
        assert con.execute('SELECT count(*), sum(n) FROM "prompts"').fetchone() == (3, 60)
    finally:
        con.close()


def test_view_unions_columns_by_name(store, tmp_path):
    store.write_table("t", pl.DataFrame({"a": [1], "b": ["x"]}), partition="p1")
    store.write_table("t", pl.DataFrame({"b": ["y"], "a": [2], "c": [True]}), partition="p2")

    con = connect(str(tmp_path / "catalog.duckdb"), store)
    try:
        create_view(con, store, "t")
        assert con.execute('SELECT a, b, c FROM "t" ORDER BY a').fetchall() == [
            (1, "x", None),
            (2, "y", True),
        ]
    finally:
        con.close()


def test_view_sees_partitions_written_after_it_without_a_refresh(store, tmp_path):
    store.write_table("t", pl.DataFrame({"a": [1]}), partition="p1")
    database = str(tmp_path / "catalog.duckdb")
    assert add_view(database, store, "t")
    store.write_table("t", pl.DataFrame({"a": [2, 3]}), partition="p2")
    store.write_table("t", pl.DataFrame({"a": [10]}), partition="p1")
    reader = connect(database, store, read_only=True)
    try:
        assert reader.execute('SELECT count(*), sum(a) FROM "t"').fetchone() == (3, 15)
    finally:
        reader.close()


def test_a_tables_first_file_creates_its_view_once(tmp_path):
    database = str(tmp_path / "catalog.duckdb")
    created = []

    def on_new_table(store: Store, table: str) -> None:
        created.append(table)
        add_view(database, store, table)

    store = Store(str(tmp_path / "root"), on_new_table=on_new_table)
    store.write_table("t", pl.DataFrame({"a": [1]}), partition="p1")
    store.write_table("t", pl.DataFrame({"a": [2]}), partition="p2")
    store.write_table("u", pl.DataFrame({"b": ["x"]}))
    assert created == ["t", "u"]
    reader = connect(database, store, read_only=True)
    try:
        assert reader.execute('SELECT sum(a) FROM "t"').fetchone() == (3,)
        assert reader.execute('SELECT b FROM "u"').fetchall() == [("x",)]
    finally:
        reader.close()


def test_a_view_the_busy_catalog_refused_is_added_by_the_next_writer(store, tmp_path):
    """Another process (a dbt build) holds the catalog: the first write's view waits `timeout_s`, gives up without
    failing the write, and the catalog's next regular writer adds it; tables and views already there are kept."""
    database = str(tmp_path / "catalog.duckdb")
    store.write_table("t", pl.DataFrame({"a": [1, 2]}))
    store.write_table("mart", pl.DataFrame({"a": [1]}))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_CATALOG, database], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert not add_view(database, store, "t", timeout_s=0.5)
    finally:
        holder.communicate("")
    con = connect(database, store)
    try:
        assert add_missing_views(con, store) == ["t"]
        assert add_missing_views(con, store) == []
        assert con.execute('SELECT sum(a) FROM "t"').fetchone() == (3,)
        assert con.execute('SELECT a FROM "mart"').fetchall() == [(7,)]
    finally:
        con.close()


# A dbt build, in short: a process that writes a table `mart` into the catalog and holds it until stdin closes.
HOLD_CATALOG = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE mart AS SELECT 7 AS a")
print("holding", flush=True)
sys.stdin.read()
con.close()
"""


def test_view_with_quotes_in_root_and_table_name(tmp_path):
    store = Store(str(tmp_path / "o'brien's root"))
    store.write_table('we"ird', pl.DataFrame({"a": [1, 2]}), partition="p'1")

    con = connect(str(tmp_path / "catalog.duckdb"), store)
    try:
        create_view(con, store, 'we"ird')
        assert con.execute('SELECT sum(a) FROM "we""ird"').fetchone() == (3,)
    finally:
        con.close()


def test_reader_opens_read_only_after_writer_closes(store, tmp_path):
    database = tmp_path / "nested" / "catalog.duckdb"
    store.write_table("t", pl.DataFrame({"a": [1, 2]}), partition="p1")
    store.write_table("t", pl.DataFrame({"a": [3]}), partition="p2")

    writer = connect(str(database), store)
    create_view(writer, store, "t")
    writer.close()
    assert database.exists()

    reader = connect(str(database), store, read_only=True, timeout_s=0)
    try:
        assert reader.execute('SELECT count(*), sum(a) FROM "t"').fetchone() == (3, 6)
        with pytest.raises(duckdb.Error):
            reader.execute("CREATE TABLE nope AS SELECT 1")
    finally:
        reader.close()


def test_a_catalog_table_is_copied_to_parquet_under_the_profiles_duckdb_settings(tmp_path):
    database = str(tmp_path / "catalog.duckdb")
    with duckdb.connect(database) as con:
        con.execute("CREATE TABLE marts AS SELECT range AS a, range % 7 AS b FROM range(100000)")
    storage = StorageResource(root=str(tmp_path / "root"))
    with pytest.raises(duckdb.Error, match="Memory must have a number"):
        storage.copy_table(Table.CONSENSUS_LABELS, database, "main.marts", {"memory_limit": "not a size"})
    assert not storage.store().has_table(Table.CONSENSUS_LABELS)
    settings = {"threads": 1, "memory_limit": "64MB", "temp_directory": str(tmp_path / "spill")}
    metadata = storage.copy_table(Table.CONSENSUS_LABELS, database, "main.marts", settings)
    assert metadata["dagster/row_count"] == 100000
    copied = storage.store().read_table(Table.CONSENSUS_LABELS)
    assert copied.sort("a").equals(pl.DataFrame({"a": range(100000), "b": [i % 7 for i in range(100000)]}))


def test_a_configured_connection_takes_the_settings_and_prints_no_progress_bar():
    """A step's log is not a terminal: the marts' export once printed DuckDB's progress bar into it."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = true")
    configure(con, {"threads": 1, "memory_limit": "64MB"})
    setting = "SELECT current_setting('enable_progress_bar'), current_setting('threads')"
    assert con.sql(setting).fetchone() == (False, 1)


# checks


def test_run_check_sql_returns_dict_rows():
    prompts = pl.DataFrame(
        {
            "prompt_id": ["p1", "p2", "p3", "p4", "p5"],
            "shard": ["s0", "s0", "s1", "s1", "s3"],
            "position": [0, 1, 2, 4, 5],
        }
    )
    shards = pl.DataFrame({"shard": ["s0", "s1", "s2"], "n_prompts": [2, 2, 0]})
    shard_size = pl.DataFrame({"n": [2]})

    rows = run_check_sql("prompt_shards_non_empty", prompts=prompts, shards=shards, shard_size=shard_size)

    assert rows == [
        {"shard": "s1", "n_prompts": 2, "prompts_found": 2, "problem": "positions not contiguous"},
        {"shard": "s2", "n_prompts": 0, "prompts_found": 0, "problem": "empty shard"},
        {"shard": "s3", "n_prompts": None, "prompts_found": 1, "problem": "shard missing from prompt_shards"},
    ]


def test_run_check_sql_with_nothing_wrong_returns_no_rows():
    prompts = pl.DataFrame({"prompt_id": ["p1", "p2"], "shard": ["s0", "s0"], "position": [0, 1]})
    shards = pl.DataFrame({"shard": ["s0"], "n_prompts": [2]})
    rows = run_check_sql("prompt_shards_non_empty", prompts=prompts, shards=shards, shard_size=pl.DataFrame({"n": [2]}))
    assert rows == []


def test_run_check_sql_aggregate_check():
    cells = pl.DataFrame(
        {
            "cell_id": ["c1", "c2"],
            "emotion_id": ["joy", "fear"],
            "ethnicity": ["e", "e"],
            "gender": ["g", "g"],
            "age": ["a", "a"],
            "planned": [2, 1],
        }
    )
    prompts = pl.DataFrame({"prompt_id": ["p1", "p2", "p3", "p4"], "cell_id": ["c1", "c1", "c1", "zz"]})

    [row] = run_check_sql("prompt_cell_balance", prompts=prompts, cells=cells)

    assert row["cells"] == 2
    assert (row["min_per_cell"], row["max_per_cell"], row["spread"]) == (0, 3, 3)
    assert row["off_plan_cells"] == 2
    assert row["prompts_outside_grid"] == 1
    assert row["fullest_cells"] == ["joy / e / g / a: 3"]
