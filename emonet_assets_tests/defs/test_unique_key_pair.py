"""dbt's `unique_key_pair` test, its body rendered with Jinja, against a plain GROUP BY of both keys: the same repeats,
including where member keys share their low 6 bits, where a group has more than 64 members, and where keys are null."""

import re

import duckdb
import jinja2
import numpy as np
import pyarrow as pa

from emonet_assets.defs.consensus.project import DBT_PROJECT_DIR

TEST_SQL = DBT_PROJECT_DIR / "tests" / "generic" / "unique_key_pair.sql"


def _reported(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    body = re.search(r"\{% test [^%]*%\}(.*)\{% endtest %\}", TEST_SQL.read_text(), re.S).group(1)
    sql = jinja2.Template(body).render(model="ratings", group_key="item_key // 2", member_key="annotator_key")
    return sorted(con.sql(sql).fetchall(), key=repr)


def _repeats(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    sql = "select item_key // 2, annotator_key, count(*) from ratings group by all having count(*) > 1"
    return sorted(con.sql(sql).fetchall(), key=repr)


def _ratings(item_keys: list, annotator_keys: list) -> pa.Table:
    return pa.table(
        {"item_key": pa.array(item_keys, pa.int64()), "annotator_key": pa.array(annotator_keys, pa.int32())}
    )


def test_it_reports_every_repeated_pair_and_no_other():
    planted = [
        ([0, 1, 0, 0], [5, 5, 6, 7]),  # the same rater on both scales of one (image, emotion): a repeat
        ([2, 2, 2], [3, 67, 131]),  # three raters 64 apart: one mask bit, no repeat
        ([4] * 100, list(range(100))),  # 100 raters: more than the mask holds, no repeat
        ([6] * 101, [*range(100), 50]),  # the same with one rater twice
        ([8, 8], [7, 7]),  # a plain repeat
        ([10, 10, 10], [None, None, 1]),  # a null rater twice
        ([None, None], [1, 1]),  # a null item twice
        ([12, 14], [2, 2]),  # one rating each
    ]
    items = [key for keys, _ in planted for key in keys]
    annotators = [key for _, keys in planted for key in keys]
    with duckdb.connect() as con:
        con.register("ratings", _ratings(items, annotators))
        reported = _reported(con)
        assert reported == _repeats(con)
    assert reported == sorted([(0, 5, 2), (3, 50, 2), (4, 7, 2), (5, None, 2), (None, 1, 2)], key=repr)


def test_it_matches_a_plain_group_by_on_random_keys():
    rng = np.random.default_rng(0)
    items = rng.integers(0, 2_000, 20_000).tolist()
    annotators = rng.integers(0, 300, 20_000).tolist()
    with duckdb.connect() as con:
        con.register("ratings", _ratings(items, annotators))
        reported = _reported(con)
        assert reported == _repeats(con)
    assert len(reported) > 100
