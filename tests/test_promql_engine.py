"""The PromQL engine core on real stores, DuckDB and ClickHouse (chdb in this process, a
database per test: tests/clickhouse_engine.py), against values worked out by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import promql_parser
import pytest

from opsmetrics.model import STALE_NAN, Labels, Series, make_labels
from opsmetrics.query.promql.engine import evaluate_instant, evaluate_range, parse_expr
from opsmetrics.query.promql.nodes import scoped_flags
from opsmetrics.query.promql.values import (
    CallInfo,
    EvalContext,
    InstantVector,
    QueryError,
    QueryLimitError,
    QueryTimeoutError,
    RangeVector,
    Scalar,
    Value,
    register,
)
from opsmetrics.storage.base import WriteBatch
from opsmetrics.storage.clickhouse import ClickHouseStorage
from opsmetrics.storage.clickhouse.connect import ClickHouse, Target
from opsmetrics.storage.composite import DataStore
from opsmetrics.storage.duckdb import DuckDBStorage
from tests.clickhouse_engine import ch_client, ch_database, chdb_path  # noqa: F401

M = 60_000


promql_parser.register_extra_functions(
    [
        promql_parser.Function(
            "opsmetrics_test_window_count",
            [promql_parser.ValueType.Matrix],
            promql_parser.ValueType.Vector,
        )
    ]
)


@register("opsmetrics_test_window_count", ("range",))
def _window_count(args: list[Value], call: CallInfo, ctx: EvalContext) -> Value:
    """Points per window: a tiny stand-in for the function library."""
    rv = args[0]
    assert isinstance(rv, RangeVector)
    rows = [rv.bounds(i) for i in range(len(rv.labels))]
    counts = np.array([hi - lo for lo, hi in rows], dtype=np.float64).reshape(-1, len(ctx.steps))
    return InstantVector(list(rv.labels), counts, counts > 0)


def _write(storage: DataStore, series: list[tuple[dict[str, str], list[int], list[float]]]) -> None:
    ids = storage.allocate_series_ids([make_labels(s[0]) for s in series])
    storage.write(
        WriteBatch(
            new_series=[Series(i, make_labels(s[0])) for i, s in zip(ids, series, strict=True)],
            series_ids=np.concatenate(
                [np.full(len(s[1]), i, np.int64) for i, s in zip(ids, series, strict=True)]
            ),
            ts=np.concatenate([np.array(s[1], np.int64) for s in series]),
            values=np.concatenate([np.array(s[2], np.float64) for s in series]),
        )
    )


def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> DataStore:
    if request.param == "duckdb":
        return DuckDBStorage(tmp_path / "data", now_ms=0)
    path: Path = request.getfixturevalue("chdb_path")
    database: str = request.getfixturevalue("ch_database")
    target = Target("chdb", database, path=str(path))
    return ClickHouseStorage(ClickHouse(request.getfixturevalue("ch_client"), target), now_ms=0)


@pytest.fixture(params=["duckdb", "clickhouse"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DataStore]:
    st = open_store(request, tmp_path)
    every5 = [0, 5 * M, 10 * M]
    _write(
        st,
        [
            ({"__name__": "http", "job": "api", "i": "0"}, every5, [1, 2, 3]),
            ({"__name__": "http", "job": "api", "i": "1"}, every5, [10, 20, 30]),
            ({"__name__": "http", "job": "db", "i": "0"}, every5, [100, 200, STALE_NAN]),
            ({"__name__": "info", "job": "api", "team": "a"}, every5, [1, 1, 1]),
            ({"__name__": "http2", "job": "api", "i": "0"}, [0], [5]),
            ({"__name__": "dense"}, list(range(0, 11 * M, M)), [float(i) for i in range(11)]),
        ],
    )
    yield st
    st.close()


def rows(value: Value) -> dict[Labels, list[float | None]]:
    """Each row's values per step, None where absent."""
    assert isinstance(value, InstantVector)
    return {
        labels: [float(v) if p else None for v, p in zip(vals, pres, strict=True)]
        for labels, vals, pres in zip(value.labels, value.values, value.present, strict=True)
    }


def L(**pairs: str) -> Labels:
    return make_labels({"__name__" if k == "name" else k: v for k, v in pairs.items()})


def range5(storage: DataStore, expr: str) -> dict[Labels, list[float | None]]:
    return rows(evaluate_range(storage, expr, 0, 10 * M, 5 * M))


def test_selector_matchers_and_staleness(storage: DataStore) -> None:
    assert range5(storage, 'http{job=~"a.*", i!="1"}') == {
        L(name="http", job="api", i="0"): [1, 2, 3]
    }
    # The stale marker at 10m ends the db series.
    assert range5(storage, 'http{job="db"}') == {L(name="http", job="db", i="0"): [100, 200, None]}
    assert range5(storage, 'http{job!~"api|db"}') == {}


def test_lookback_is_five_minutes_left_open(storage: DataStore) -> None:
    # At 4m59.999s the sample at 0 is still visible; at exactly 5m the 5m sample takes over.
    got = rows(evaluate_range(storage, 'http{i="1",job="api"}', 299_999, 299_999, 1))
    assert list(got.values()) == [[10]]
    # A series whose newest sample is exactly 5m old is gone (window (t-5m, t]).
    got = rows(evaluate_instant(storage, 'http{job="db"}', 15 * M))
    assert got == {}
    got = rows(evaluate_instant(storage, 'http{i="1",job="api"}', 15 * M))
    assert got == {}
    got = rows(evaluate_instant(storage, 'http{i="1",job="api"}', 15 * M - 1))
    assert list(got.values()) == [[30]]


def test_offset_and_at(storage: DataStore) -> None:
    sel = 'http{i="0",job="api"}'
    assert list(range5(storage, f"{sel} offset 5m").values()) == [[None, 1, 2]]
    # At 10m, offset -5m reads at 15m where the 10m sample is exactly 5m old: gone.
    assert list(range5(storage, f"{sel} offset -5m").values()) == [[2, 3, None]]
    assert list(range5(storage, f"{sel} @ 300").values()) == [[2, 2, 2]]
    assert list(range5(storage, f"{sel} @ start()").values()) == [[1, 1, 1]]
    assert list(range5(storage, f"{sel} @ end() offset 5m").values()) == [[2, 2, 2]]


def test_aggregations(storage: DataStore) -> None:
    assert range5(storage, "sum by (job) (http)") == {
        (("job", "api"),): [11, 22, 33],
        (("job", "db"),): [100, 200, None],
    }
    assert range5(storage, "count without (i) (http)") == {
        (("job", "api"),): [2, 2, 2],
        (("job", "db"),): [1, 1, None],
    }
    assert range5(storage, "avg(http)") == {(): [37, 74, 16.5]}
    assert range5(storage, "max(http)") == {(): [100, 200, 30]}
    assert range5(storage, "stdvar(http{job='api'})") == {(): [20.25, 81, 182.25]}
    assert range5(storage, "quantile(0.5, http)") == {(): [10, 20, 16.5]}
    assert range5(storage, "topk(1, http)") == {
        L(name="http", job="db", i="0"): [100, 200, None],
        L(name="http", job="api", i="1"): [None, None, 30],
    }
    got = rows(evaluate_instant(storage, 'count_values("v", http{job="api"})', 0))
    assert got == {(("v", "1"),): [1], (("v", "10"),): [1]}


def test_binary_operators_and_matching(storage: DataStore) -> None:
    assert range5(storage, 'http{job="api"} * on(job) group_left(team) info') == {
        L(job="api", i="0", team="a"): [1, 2, 3],
        L(job="api", i="1", team="a"): [10, 20, 30],
    }
    # A filtering comparison keeps the name; `bool` drops it.
    assert range5(storage, 'http{job="api"} > 5') == {
        L(name="http", job="api", i="1"): [10, 20, 30]
    }
    assert range5(storage, 'http{i="0",job="api"} >= bool 2') == {L(job="api", i="0"): [0, 1, 1]}
    assert range5(storage, '2 ^ http{i="0",job="api"} - 1') == {L(job="api", i="0"): [1, 3, 7]}


def test_many_to_many_errors(storage: DataStore) -> None:
    with pytest.raises(QueryError, match="many-to-one matching must be explicit"):
        evaluate_instant(storage, 'http{job="api"} + on(job) info', 0)
    with pytest.raises(
        QueryError,
        match=r'found duplicate series for the match group \{job="api"\} on the right',
    ):
        evaluate_instant(storage, 'info + on(job) http{job="api"}', 0)


def test_set_operators(storage: DataStore) -> None:
    assert range5(storage, "http and on(job) info") == {
        L(name="http", job="api", i="0"): [1, 2, 3],
        L(name="http", job="api", i="1"): [10, 20, 30],
    }
    assert range5(storage, "http unless on(job) info") == {
        L(name="http", job="db", i="0"): [100, 200, None]
    }
    # The or-side fills in where the left has no value, merging equal label sets.
    assert range5(storage, '-http{job="db"} or -http{job="db"} offset 5m') == {
        L(job="db", i="0"): [-100, -200, -200]
    }


def test_subquery_steps_are_aligned(storage: DataStore) -> None:
    # dense has one sample a minute; [5m:2m] at 10m evaluates at 6m, 8m, 10m (left-open).
    got = evaluate_instant(storage, "dense[5m:2m]", 10 * M)
    assert isinstance(got, RangeVector)
    assert got.ts[0].tolist() == [6 * M, 8 * M, 10 * M]
    assert got.values[0].tolist() == [6, 8, 10]
    # At 9m the absolute grid gives 6m and 8m, not 5m/7m/9m.
    assert rows(evaluate_instant(storage, "opsmetrics_test_window_count(dense[5m:2m])", 9 * M)) == {
        L(name="dense"): [2]
    }
    assert range5(storage, "opsmetrics_test_window_count(dense[3m])") == {
        L(name="dense"): [1, 3, 3]
    }


def test_range_selectors_keep_label_order_and_drop_stale_markers(storage: DataStore) -> None:
    # Ids go to z, a, s, m in that order, so the read (by id) and the range vector (by labels)
    # disagree; each series loses its own stale markers, and one of nothing else is dropped.
    _write(
        storage,
        [
            ({"__name__": "order", "k": "z"}, [1 * M, 2 * M, 3 * M], [1, STALE_NAN, 3]),
            ({"__name__": "order", "k": "a"}, [1 * M, 2 * M], [STALE_NAN, 20]),
            ({"__name__": "order", "k": "s"}, [1 * M], [STALE_NAN]),
            ({"__name__": "order", "k": "m"}, [2 * M, 3 * M], [200, 300]),
        ],
    )

    def points(selector: str) -> list[tuple[str, list[int], list[float]]]:
        got = evaluate_instant(storage, f"{selector}[10m]", 5 * M)
        assert isinstance(got, RangeVector)
        # Kept in the read's order (by id): series i's points are stored series stored[i]'s.
        by_id = np.argsort(got.stored).tolist()
        assert got.flat_ts.tolist() == [t for i in by_id for t in got.ts[i].tolist()]
        stored[selector] = got.stored.tolist()
        return [
            (dict(lab)["k"], t.tolist(), v.tolist())
            for lab, t, v in zip(got.labels, got.ts, got.values, strict=True)
        ]

    stored: dict[str, list[int]] = {}
    m = ("m", [2 * M, 3 * M], [200, 300])
    assert points("order") == [("a", [2 * M], [20]), m, ("z", [1 * M, 3 * M], [1, 3])]
    # Neither backend's ids follow the labels here: the read was kept, not copied in order.
    assert sorted(stored["order"]) == [0, 1, 2] != stored["order"]
    assert points('order{k=~"a|s|m"}') == [("a", [2 * M], [20]), m]
    assert points('order{k="m"}') == [m]
    assert points('order{k="s"}') == []


def test_duplicate_labelsets_are_an_error(storage: DataStore) -> None:
    both = '{__name__=~"http|http2", job="api", i="0"}'
    with pytest.raises(QueryError, match="same labelset"):
        evaluate_instant(storage, f"-{both}", 0)
    with pytest.raises(QueryError, match="same labelset"):
        evaluate_instant(storage, f"{both} * 2", 0)
    # Without overlap in time the two rows become one series.
    assert rows(evaluate_instant(storage, f"-{both}", 5 * M)) == {L(job="api", i="0"): [-2]}


def test_scalars_and_literals(storage: DataStore) -> None:
    got = evaluate_range(storage, "1 + 2 * 3 ^ 2", 0, 10 * M, 5 * M)
    assert isinstance(got, Scalar)
    assert got.values.tolist() == [19, 19, 19]
    got = evaluate_instant(storage, "2 > bool 1", 0)
    assert isinstance(got, Scalar)
    assert got.values.tolist() == [1.0]


def test_limits_and_errors(storage: DataStore) -> None:
    with pytest.raises(QueryLimitError):
        evaluate_range(storage, "http", 0, 10 * M, M, max_samples=3)
    with pytest.raises(QueryTimeoutError):
        evaluate_range(storage, "http", 0, 10 * M, M, timeout_s=-1)
    with pytest.raises(QueryError, match="parse error"):
        parse_expr("http{")
    with pytest.raises(QueryError, match="range vector"):
        evaluate_range(storage, "http[5m]", 0, M, M)


def test_re2_flag_groups_become_scoped() -> None:
    assert scoped_flags("((?i)PRO).*") == "((?i:PRO)).*"
    assert scoped_flags("(?i)foo") == "(?i:foo)"
    assert scoped_flags(r"a[(?i)]\(") == r"a[(?i)]\("
