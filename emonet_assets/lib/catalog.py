"""The DuckDB catalog: views over the Parquet tables, and SQL files from sql/ run by name."""

from __future__ import annotations

import re
import time
from pathlib import Path

import duckdb

from emonet_assets.lib.storage import Store

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def sql_text(name: str) -> str:
    path = SQL_DIR / f"{name}.sql"
    if not path.exists():
        raise FileNotFoundError(f"no SQL file {path}")
    return path.read_text(encoding="utf-8")


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


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


def register_store(con: duckdb.DuckDBPyConnection, store: Store) -> None:
    if not store.is_local:
        con.register_filesystem(store.fs)


def refresh_view(con: duckdb.DuckDBPyConnection, store: Store, table: str) -> None:
    """Point the view at the table's current partition files (sql/catalog/<table>.sql if present)."""
    files = [store.url(store.table_path(table, p)) for p in store.table_partitions(table)]
    if not files:
        con.execute(f"DROP VIEW IF EXISTS {quote_identifier(table)}")
        return
    name = f"catalog/{table}" if (SQL_DIR / "catalog" / f"{table}.sql").exists() else "catalog/table_view"
    con.execute(
        render_sql(
            name,
            view=quote_identifier(table),
            files="[" + ", ".join(quote_literal(f) for f in files) + "]",
        )
    )


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
