"""Materialization metadata that makes the Dagster UI useful: counts, schema, previews."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import polars as pl

from emonet_assets.lib.shared.tables import LINEAGE_KEYS


def markdown_table(frame: pl.DataFrame, limit: int = 10, rows: int | None = None) -> str:
    """The first `limit` rows as a Markdown table; `rows`, the table's size when `frame` is only its head."""
    head = frame.head(limit)
    rows = frame.height if rows is None else rows

    def cell(value) -> str:
        text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in head.iter_rows()]
    if rows > limit:
        lines.append(f"\n{rows - limit} more rows")
    return "\n".join(lines)


def column_schema(frame: pl.DataFrame) -> dg.TableSchema:
    """The frame's columns and types; the lineage keys (image sha256, prompt id, batch id, model) described."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, str(dtype), description=LINEAGE_KEYS.get(name)) for name, dtype in frame.schema.items()
        ]
    )


def table_metadata(
    frame: pl.DataFrame, url: str, preview_rows: int = 10, preview_drop: Sequence[str] = (), rows: int | None = None
) -> dict:
    """Row count, column schema, path and preview of a table; `rows`, its size when `frame` is only its head."""
    rows = frame.height if rows is None else rows
    return {
        "dagster/row_count": rows,
        "dagster/column_schema": column_schema(frame),
        "path": dg.MetadataValue.path(url),
        "preview": dg.MetadataValue.md(markdown_table(frame.drop(preview_drop, strict=False), preview_rows, rows)),
    }


def suite_metadata(result) -> dict:
    meta = {"expectations_evaluated": result.evaluated, "expectations_failed": len(result.failures)}
    if result.failures:
        meta["failures"] = dg.MetadataValue.json(result.failures)
    return meta
