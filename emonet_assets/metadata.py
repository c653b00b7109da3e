"""Materialization metadata that makes the Dagster UI useful: counts, schema, previews."""

from __future__ import annotations

import dagster as dg
import polars as pl


def markdown_table(frame: pl.DataFrame, limit: int = 10) -> str:
    head = frame.head(limit)

    def cell(value) -> str:
        text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in head.iter_rows()]
    if frame.height > limit:
        lines.append(f"\n{frame.height - limit} more rows")
    return "\n".join(lines)


def table_metadata(frame: pl.DataFrame, url: str, preview_rows: int = 10) -> dict:
    schema = dg.TableSchema(columns=[dg.TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()])
    return {
        "dagster/row_count": frame.height,
        "dagster/column_schema": schema,
        "path": dg.MetadataValue.path(url),
        "preview": dg.MetadataValue.md(markdown_table(frame, preview_rows)),
    }


def suite_metadata(result) -> dict:
    meta = {"expectations_evaluated": result.evaluated, "expectations_failed": len(result.failures)}
    if result.failures:
        meta["failures"] = dg.MetadataValue.json(result.failures)
    return meta
