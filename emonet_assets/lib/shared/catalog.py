"""The DuckDB catalog: glob views over the Parquet tables, and SQL files from sql/ run by name."""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import duckdb

from emonet_assets.lib.shared.package_data import package_path
from emonet_assets.lib.shared.storage import Store

SQL_DIR = package_path("sql")
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
log = logging.getLogger(__name__)


def sql_text(name: str) -> str:
    path = SQL_DIR / f"{name}.sql"
    if not path.exists():
        raise FileNotFoundError(f"no SQL file {path}")
    return path.read_text(encoding="utf-8")


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote_list(values: Iterable[str]) -> str:
    """A DuckDB list literal of strings."""
    return "[" + ", ".join(quote_literal(value) for value in values) + "]"


def render_sql(name: str, **params: str) -> str:
    """Fill `{{ name }}` placeholders with already-quoted SQL fragments; a missing one is an error."""
    text = sql_text(name)
    missing = sorted(set(_PLACEHOLDER.findall(text)) - set(params))
    if missing:
        raise KeyError(f"sql/{name}.sql needs {missing}")
    return _PLACEHOLDER.sub(lambda m: params[m.group(1)], text)


def connect(database: str, store: Store, read_only: bool = False, timeout_s: float = 30.0):
    """Open the catalog with the store's filesystem registered, waiting out another writer."""
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            con = duckdb.connect(database, read_only=read_only)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    register_store(con, store)
    return con


def scratch(
    store: Store, settings: Mapping[str, object] | None = None, database: str = ":memory:"
) -> duckdb.DuckDBPyConnection:
    """A DuckDB, in memory unless `database` names a file, for a query over the store's Parquet, with the profile's
    threads, memory limit and spill folder (`AnnotationSettings.duckdb_settings`): past the limit it spills instead
    of growing. Over an object store, one thread: DuckDB's worker threads call the Python filesystem (s3fs) and can
    wait forever for the GIL the calling thread holds (duckdb/duckdb#16501; a release on moto hung that way twice in
    seven runs)."""
    con = duckdb.connect(database)
    configure(con, settings)
    if not store.is_local:
        con.execute("SET threads = 1")
    register_store(con, store)
    return con


@contextmanager
def scratch_on_disk(store: Store, settings: Mapping[str, object] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """`scratch` whose tables are a database file in the spill folder, removed on exit. DuckDB writes a large table
    into that file compressed as it builds it and reads it back through its buffer cache, where an in-memory table
    stays uncompressed in memory: the release's staged rows at 100,000 images held 1 GB there, and take 124 MB of
    file."""
    spill = Path(str((settings or {}).get("temp_directory") or tempfile.gettempdir()))
    spill.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="scratch-", dir=spill) as folder,
        scratch(store, settings, str(Path(folder) / "scratch.duckdb")) as con,
    ):
        yield con


def copy_to_parquet(con: duckdb.DuckDBPyConnection, query: str, path: str) -> int:
    """`query`'s rows written by DuckDB's `COPY ... TO` as the Parquet file `path`, as every table is stored (zstd);
    returns the row count."""
    return con.execute(f"COPY ({query}) TO {quote_literal(path)} (FORMAT parquet, COMPRESSION zstd)").fetchone()[0]


def configure(con: duckdb.DuckDBPyConnection, settings: Mapping[str, object] | None) -> None:
    """The profile's DuckDB settings on an open connection. Without a memory limit DuckDB keeps every block it
    reads cached up to 80% of the machine's memory: copying the 40M-row marts out of the catalog held 6.7 GB. No
    progress bar: a step's log is not a terminal (the marts' export printed one into the log)."""
    con.execute("SET enable_progress_bar = false")
    for name, value in (settings or {}).items():
        con.execute(f"SET {name} = {quote_literal(str(value))}")


def read_columns(
    con: duckdb.DuckDBPyConnection,
    store: Store,
    table: str,
    columns: list[str],
    where: str | None = None,
    distinct: bool = False,
):
    """Only `columns` of a table's Parquet files (only the rows `where` keeps, a SQL condition that may name
    relations registered on `con`; each distinct row once if `distinct`), read by DuckDB: the rest of the table
    never reaches Python."""
    selected = ("DISTINCT " if distinct else "") + ", ".join(quote_identifier(c) for c in columns)
    files = quote_literal(store.table_glob(table))
    condition = f" WHERE {where}" if where else ""
    return con.sql(f"SELECT {selected} FROM read_parquet({files}, union_by_name = true){condition}").pl()


def register_store(con: duckdb.DuckDBPyConnection, store: Store) -> None:
    if not store.is_local:
        con.register_filesystem(store.fs)


def create_view(con: duckdb.DuckDBPyConnection, store: Store, table: str) -> None:
    """A view over every partition file the table has and will have (a glob, as dbt's sources read), so it never
    needs refreshing; created once, when the table first has a file (DuckDB checks the glob matches then)."""
    con.execute(
        render_sql("catalog/table_view", view=quote_identifier(table), files=quote_literal(store.table_glob(table)))
    )


def add_view(database: str, store: Store, table: str, timeout_s: float = 30.0) -> bool:
    """Create the table's view, unless another process holds the catalog longer than `timeout_s` (a dbt build):
    then the view is left to `add_missing_views`, which that build's step runs next time. True when created."""
    try:
        con = connect(database, store, timeout_s=timeout_s)
    except duckdb.IOException as exc:
        log.warning("catalog %s busy, view %s not created yet: %s", database, table, exc)
        return False
    try:
        create_view(con, store, table)
    finally:
        con.close()
    return True


def add_missing_views(con: duckdb.DuckDBPyConnection, store: Store) -> list[str]:
    """A view for each written table that has none yet; returns the tables given one."""
    existing = {name for (name,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    existing |= {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    added = [table for table in store.table_names() if table not in existing]
    for table in added:
        create_view(con, store, table)
    return added


def run_check_sql(name: str, **relations) -> list[dict]:
    """Run a check query from sql/checks/ over in-memory frames bound to the names it reads."""
    con = duckdb.connect()
    try:
        for relation, frame in relations.items():
            con.register(relation, frame.to_arrow() if hasattr(frame, "to_arrow") else frame)
        cursor = con.execute(sql_text(f"checks/{name}"))
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()
