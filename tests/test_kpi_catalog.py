"""The KPI catalog: validation messages (golden files), loading, lineage, expressions, versions.

Validation messages are compared with tests/golden/validate/<case>.txt (tests/golden_files.py).
Refresh them with `OPSMETRICS_UPDATE_GOLDEN=1 pytest tests/test_kpi_catalog.py`, then review the
diff by hand.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from opsmetrics.catalog.kpi_expr import (
    Binary,
    BinaryOp,
    ExprError,
    Name,
    Negate,
    Number,
    parse_expr,
)
from opsmetrics.catalog.kpi_lineage import Dependent, InputKind, LineageInput
from opsmetrics.catalog.kpi_model import (
    ConversionFormula,
    CumulativeFormula,
    Direction,
    EventAgg,
    EventField,
    EventFormula,
    ExprFormula,
    FieldSource,
    FilterOp,
    KpiRef,
    LibraryFormula,
    ManualFormula,
    PromqlFormula,
    PropFilter,
    RatioFormula,
    SqlFormula,
    StateAgg,
    StateFormula,
    Unit,
)
from opsmetrics.catalog.kpi_sql import SqlRefusedError, check_read_only
from opsmetrics.catalog.kpi_versions import git_author, record_versions
from opsmetrics.catalog.kpis import load_catalog
from opsmetrics.catalog.validate import validate_config_dir
from opsmetrics.clock import FakeClock
from opsmetrics.errors import ConfigError, NotFoundError
from tests.golden_files import GOLDEN_DIR as GOLDEN_ROOT
from tests.golden_files import assert_golden
from tests.stores import open_store

GOLDEN_DIR = GOLDEN_ROOT / "validate"

HEAD = "  title: T\n  owner: team\n  unit: count\n  direction: higher_is_better\n"


def kpi(name: str, formula: str, extra: str = "") -> str:
    """One valid-looking list item; `formula` and `extra` are indented YAML lines."""
    return f"- name: {name}\n{HEAD}{formula}{extra}"


CASES: dict[str, dict[str, str]] = {
    "unknown_field": {
        "kpis/a.yaml": kpi("a", "  promql: up\n", "  threshold: {warning: 1}\n  ownr: x\n")
        + kpi("b", "  conversion: {from: x, to: y, whithin: 1d}\n")
        + kpi("c", "  event: {name: x, agg: sum, feild: value}\n"),
    },
    "missing_required": {
        "kpis/a.yaml": "- name: a\n  promql: up\n- title: no name\n  owner: t\n  unit: count\n"
        "  direction: higher_is_better\n  manual: true\n",
    },
    "bad_enum": {
        "kpis/a.yaml": kpi(
            "a",
            "  event: {name: x, agg: p42}\n",
            "  level: stratgic\n  cadence: hourly\n  grain: fortnight\n  indicator: late\n",
        ).replace("unit: count", "unit: precent"),
    },
    "formula_count": {
        "kpis/a.yaml": kpi("none", "")
        + kpi("two", "  promql: up\n  expr: none * 2\n")
        + kpi(
            "inline", "  ratio:\n    numerator: {promql: up, sql: SELECT 1}\n    denominator: {}\n"
        ),
    },
    "bad_promql": {
        "kpis/a.yaml": kpi("a", "  promql: 'sum(rate(http_requests_total[5m]'\n")
        + kpi("b", "  ratio: {numerator: {promql: 'up{'}, denominator: a}\n"),
    },
    "unknown_reference": {
        "kpis/a.yaml": kpi("revenue", "  event: {name: purchase, agg: sum}\n")
        + kpi("margin", "  expr: revenu * 0.3 - costs\n")
        + kpi("share", "  ratio: {numerator: revenue, denominator: total_revenue}\n")
        + kpi("running", "  cumulative: {of: revenues, running: true}\n"),
    },
    "cycle": {
        "kpis/a.yaml": kpi("a", "  expr: b + 1\n")
        + kpi("b", "  ratio: {numerator: c, denominator: a}\n")
        + kpi("c", "  cumulative: {of: b, window: 7d}\n")
        + kpi("selfish", "  expr: selfish * 2\n"),
    },
    "thresholds": {
        "kpis/a.yaml": kpi(
            "up_good",
            "  promql: up\n",
            "  target: 0.99\n  thresholds: {warning: 0.995, critical: 0.9}\n",
        )
        + kpi(
            "down_good",
            "  promql: up\n",
            "  target: 200\n  thresholds: {warning: 300, critical: 250}\n",
        ).replace("higher_is_better", "lower_is_better")
        + kpi(
            "steps",
            "  promql: up\n",
            "  target: [{from: 2026-01-01, value: 10}, {from: 2026-06-01, value: 20}]\n"
            "  thresholds: {warning: 15}\n",
        )
        + kpi("best", "  promql: up\n", "  thresholds: {warning: 2, critical: 1}\n").replace(
            "higher_is_better", "target_is_best"
        ),
    },
    "duplicate_names": {
        "kpis/a.yaml": kpi("revenue", "  manual: true\n"),
        "kpis/b.yaml": "kpis:\n"
        + kpi("revenue", "  manual: true\n")
        .replace("\n", "\n  ")
        .replace("- name", "  - name", 1)
        .rstrip()
        + "\n",
    },
    "bad_duration": {
        "kpis/a.yaml": kpi("a", "  conversion: {from: x, to: y, within: 1 day}\n")
        + kpi("b", "  conversion: {from: x, to: y, within: 0s}\n")
        + kpi("c", "  cumulative: {of: a, window: soon}\n")
        + kpi("d", "  cumulative: {of: a, window: 1d, running: true}\n")
        + kpi("e", "  cumulative: {of: a}\n"),
    },
    "bad_expr": {
        "kpis/a.yaml": kpi("a", "  expr: __import__('os').system('x')\n")
        + kpi("b", "  expr: a ** 2\n")
        + kpi("c", "  expr: 'a +'\n"),
    },
    "bad_sql": {
        "kpis/a.yaml": kpi("a", "  sql: DELETE FROM events\n")
        + kpi("b", "  sql: SELECT 1; DROP TABLE events\n")
        + kpi("c", "  sql: SELECT * FROM read_csv('/etc/passwd')\n"),
    },
    "file_shape": {
        "kpis/a.yaml": "name: a\ntitle: not a list\n",
        "kpis/b.yaml": "- just a string\n",
        "kpis/c.yaml": "- name: [unclosed\n",
        "kpis/d.yaml": "kpis: []\nextra: 1\n",
    },
    "display_format": {
        "kpis/a.yaml": kpi("a", "  manual: true\n").replace("unit: count", "unit: currency")
        + kpi("b", "  manual: true\n", "  currency: EUR\n")
        + kpi("c", "  manual: true\n", "  currency: euro\n  decimals: 12\n").replace(
            "unit: count", "unit: currency"
        ),
    },
    "library": {
        "kpis/a.yaml": kpi("a", "  use: mrrr\n")
        + kpi("b", "  manual: true\n", "  params: {plan: pro}\n"),
    },
    "target_shape": {
        "kpis/a.yaml": kpi(
            "a",
            "  manual: true\n",
            "  target: [{from: 2026-06-01, value: 1}, {from: 2026-01-01, value: 2}]\n",
        )
        + kpi("b", "  manual: true\n", "  target: high\n")
        + kpi("c", "  manual: true\n", "  target: [{from: someday, value: 1}]\n"),
    },
    "event_filters": {
        "kpis/a.yaml": kpi("a", "  event: {name: x, where: {amount: {bigger: 3}}}\n")
        + kpi("b", "  event: {name: x, field: props, where: {plan: {in: pro}}}\n")
        + kpi("c", "  state: {event: x, field: amount}\n"),
    },
}


def write_config(root: Path, files: dict[str, str]) -> Path:
    config = root / "config"
    for name, text in files.items():
        path = config / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return config


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_messages_match_golden(tmp_path: Path, case: str) -> None:
    config = write_config(tmp_path, CASES[case])
    problems = validate_config_dir(config)
    assert problems, "every case has at least one problem"
    text = "\n".join(problems).replace(f"{tmp_path}/", "") + "\n"
    assert_golden(GOLDEN_DIR / f"{case}.txt", text)


def test_every_golden_file_has_a_case() -> None:
    files = {p.stem for p in GOLDEN_DIR.glob("*.txt")}
    assert files <= set(CASES), f"stale golden files: {sorted(files - set(CASES))}"


def test_validate_cli_prints_every_problem_and_exits_1(tmp_path: Path) -> None:
    config = write_config(tmp_path, CASES["cycle"])
    res = subprocess.run(
        [sys.executable, "-m", "opsmetrics", "validate", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert res.stdout.splitlines() == validate_config_dir(config)
    assert len(res.stdout.splitlines()) == 3  # a → b → a, b → c → b, selfish → selfish


def test_load_catalog_raises_with_every_problem(tmp_path: Path) -> None:
    config = write_config(tmp_path, CASES["unknown_reference"])
    with pytest.raises(ConfigError) as info:
        load_catalog(config)
    assert info.value.message.splitlines() == validate_config_dir(config)


# --- a valid catalog ------------------------------------------------------------------------

VALID = """\
kpis:
  - name: checkout_conversion_rate
    title: Checkout conversion rate
    description: Share of users who viewed a cart and then purchased within a day
    owner: growth-team
    level: tactical
    indicator: leading
    unit: percent
    decimals: 1
    direction: higher_is_better
    cadence: weekly
    grain: day
    conversion: {from: cart_view, to: purchase, within: 1d, entity: user}
    target: 0.035
    thresholds: {warning: 0.03, critical: 0.02}
    dimensions: [source, device]
    tags: [growth]
  - name: revenue
    title: Revenue
    owner: finance
    level: strategic
    unit: currency
    currency: EUR
    direction: higher_is_better
    event:
      name: purchase
      agg: sum
      where: {country: [DE, FR], plan: pro, amount: {gte: 10, lt: 1000}}
    target:
      - {from: 2026-01-01, value: 100000}
      - {from: 2026-07-01, value: 120000}
"""

MORE = """\
- name: error_rate
  title: Error rate
  owner: sre
  unit: ratio
  direction: lower_is_better
  promql: >
    sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))
  target: 0.001
  thresholds: {warning: 0.005, critical: 0.01}
- name: signups
  title: Signups
  owner: growth-team
  unit: count
  direction: higher_is_better
  event: {name: signup}
- name: buyers
  title: Unique buyers
  owner: growth-team
  unit: count
  direction: higher_is_better
  event: {name: purchase, agg: unique}
- name: buyer_share
  title: Buyers per signup
  owner: growth-team
  unit: percent
  direction: higher_is_better
  ratio: {numerator: buyers, denominator: {event: {name: signup, agg: count}}}
- name: revenue_30d
  title: Revenue, last 30 days
  owner: finance
  unit: currency
  currency: EUR
  direction: higher_is_better
  cumulative: {of: revenue, window: 30d}
- name: mrr
  title: MRR
  owner: finance
  unit: currency
  currency: USD
  direction: higher_is_better
  state: {event: subscription_changed, field: props.mrr, by: entity}
- name: revenue_per_buyer
  title: Revenue per buyer
  owner: finance
  unit: currency
  currency: EUR
  direction: target_is_best
  expr: revenue / buyers
  target: 50
  thresholds: {warning: 5, critical: 10}
- name: orders_sql
  title: Orders (SQL)
  owner: data
  unit: count
  direction: higher_is_better
  sql: SELECT count(*) FROM events WHERE name = 'purchase'
- name: market_share
  title: Market share
  owner: strategy
  unit: percent
  direction: higher_is_better
  manual: true
- name: nps
  title: NPS
  owner: cx
  unit: score
  direction: higher_is_better
  use: nps
  params: {event: nps_response}
"""


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    return write_config(tmp_path, {"kpis/shop.yaml": VALID, "kpis/more.yml": MORE})


def test_a_valid_catalog_loads_every_field(catalog_dir: Path) -> None:
    assert validate_config_dir(catalog_dir) == []
    catalog = load_catalog(catalog_dir)
    assert catalog.names() == sorted(catalog.names()) and len(catalog) == 12
    conv = catalog.get("checkout_conversion_rate")
    assert conv.formula == ConversionFormula("cart_view", "purchase", 86_400_000, "user", None)
    assert (conv.unit, conv.display.decimals, conv.direction) == (
        Unit.PERCENT,
        1,
        Direction.HIGHER_IS_BETTER,
    )
    assert conv.dimensions == ("source", "device") and conv.tags == ("growth",)
    assert conv.target is not None and conv.target.values() == [0.035]
    assert (conv.thresholds.warning, conv.thresholds.critical) == (0.03, 0.02)
    assert str(conv.source) == f"{catalog_dir}/kpis/shop.yaml:2"
    assert str(catalog.get("error_rate").source) == f"{catalog_dir}/kpis/more.yml:1"


def test_time_varying_target(catalog_dir: Path) -> None:
    from datetime import date

    target = load_catalog(catalog_dir).get("revenue").target
    assert target is not None
    assert target.at(date(2025, 12, 31)) is None
    assert target.at(date(2026, 3, 1)) == 100_000
    assert target.at(date(2026, 7, 1)) == 120_000


def test_every_formula_kind_becomes_a_typed_record(catalog_dir: Path) -> None:
    catalog = load_catalog(catalog_dir)
    formulas = {kpi.name: kpi.formula for kpi in catalog}
    assert formulas["revenue"] == EventFormula(
        "purchase",
        EventAgg.SUM,
        EventField(FieldSource.VALUE),
        (
            PropFilter("country", FilterOp.IN, ("DE", "FR")),
            PropFilter("plan", FilterOp.EQ, ("pro",)),
            PropFilter("amount", FilterOp.GTE, (10,)),
            PropFilter("amount", FilterOp.LT, (1000,)),
        ),
    )
    assert formulas["signups"] == EventFormula("signup", EventAgg.COUNT)
    assert formulas["buyers"] == EventFormula(
        "purchase", EventAgg.UNIQUE, EventField(FieldSource.ENTITY)
    )
    assert formulas["buyer_share"] == RatioFormula(
        KpiRef("buyers"), EventFormula("signup", EventAgg.COUNT)
    )
    assert formulas["revenue_30d"] == CumulativeFormula(KpiRef("revenue"), 30 * 86_400_000)
    assert formulas["mrr"] == StateFormula(
        "subscription_changed",
        EventField(FieldSource.PROP, "mrr"),
        EventField(FieldSource.ENTITY),
        StateAgg.SUM,
    )
    assert formulas["revenue_per_buyer"] == ExprFormula(
        "revenue / buyers", Binary(BinaryOp.DIV, Name("revenue"), Name("buyers"))
    )
    assert isinstance(formulas["error_rate"], PromqlFormula)
    assert isinstance(formulas["orders_sql"], SqlFormula)
    assert formulas["market_share"] == ManualFormula()
    assert formulas["nps"] == LibraryFormula("nps", (("event", "nps_response"),))
    assert EventAgg.P95.quantile == 0.95 and EventAgg.SUM.quantile is None


def test_unknown_kpi_is_not_found_with_a_suggestion(catalog_dir: Path) -> None:
    with pytest.raises(NotFoundError, match="did you mean 'revenue'"):
        load_catalog(catalog_dir).get("revenu")


def test_no_config_dir_or_no_kpis_folder_is_an_empty_catalog(tmp_path: Path) -> None:
    assert len(load_catalog(None)) == 0
    assert len(load_catalog(tmp_path)) == 0


# --- lineage --------------------------------------------------------------------------------


def test_lineage_inputs_and_dependents(catalog_dir: Path) -> None:
    catalog = load_catalog(catalog_dir)
    revenue = catalog.lineage("revenue")
    assert revenue.inputs == (LineageInput(InputKind.EVENT, "purchase"),)
    assert [(d.kind, d.name) for d in revenue.dependents] == [
        ("kpi", "revenue_30d"),
        ("kpi", "revenue_per_buyer"),
    ]
    assert catalog.lineage("error_rate").inputs == (
        LineageInput(InputKind.SERIES, 'http_requests_total{code=~"5.."}'),
        LineageInput(InputKind.SERIES, "http_requests_total"),
    )
    assert catalog.lineage("buyer_share").inputs == (
        LineageInput(InputKind.KPI, "buyers"),
        LineageInput(InputKind.EVENT, "signup"),
    )
    assert catalog.lineage("checkout_conversion_rate").inputs == (
        LineageInput(InputKind.EVENT, "cart_view"),
        LineageInput(InputKind.EVENT, "purchase"),
    )
    assert catalog.lineage("orders_sql").inputs == (LineageInput(InputKind.VIEW, "events"),)
    assert catalog.lineage("nps").inputs == (LineageInput(InputKind.EVENT, "nps_response"),)


class _Dashboards:
    def dependents_of(self, kpi: str) -> list[Dependent]:
        return [Dependent("dashboard", "executive", "dashboards/exec.yaml:4")] if kpi else []


def test_lineage_takes_dependents_from_other_sources(catalog_dir: Path) -> None:
    lineage = load_catalog(catalog_dir).lineage("mrr", users=[_Dashboards()])
    assert lineage.dependents == (Dependent("dashboard", "executive", "dashboards/exec.yaml:4"),)


# --- the safe expression parser -------------------------------------------------------------


def test_expr_parses_arithmetic_over_names_and_numbers() -> None:
    assert parse_expr("(ltv - 2.5) / cac * -k") == Binary(
        BinaryOp.MUL,
        Binary(BinaryOp.DIV, Binary(BinaryOp.SUB, Name("ltv"), Number(2.5)), Name("cac")),
        Negate(Name("k")),
    )
    assert parse_expr("+a") == Name("a")


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('rm -rf /')",
        "open('/etc/passwd')",
        "a.b",
        "a[0]",
        "a ** 2",
        "a % 2",
        "a // 2",
        "a < b",
        "a and b",
        "not a",
        "'text'",
        "True",
        "None",
        "lambda: 1",
        "[a]",
        "a if b else c",
        "(yield)",
        "a; b",
        "a = 1",
        "f'{a}'",
        "1e400",
        "~a",
        "",
        "a +" * 900 + "a",
    ],
)
def test_expr_refuses_everything_else(text: str) -> None:
    with pytest.raises(ExprError):
        parse_expr(text)


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO events VALUES (1)",
        "select 1; delete from events",
        "WITH x AS (DELETE FROM events RETURNING *) SELECT * FROM x",
        "SELECT * FROM read_parquet('x.parquet')",
        "ATTACH 'other.db'",
        "SELECT 'unterminated",
        "SELECT (1",
        "   ",
    ],
)
def test_sql_refuses_anything_but_one_select(query: str) -> None:
    with pytest.raises(SqlRefusedError):
        check_read_only(query)


def test_sql_accepts_selects_with_keywords_inside_strings() -> None:
    check_read_only("SELECT count(*) FROM events WHERE name = 'delete; drop' -- update\n;")
    check_read_only("WITH t AS (SELECT 1 AS updated) SELECT updated FROM t")


# --- versions -------------------------------------------------------------------------------


def test_versions_are_recorded_once_per_change(catalog_dir: Path, tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000_000)
    storage = open_store(tmp_path / "data", clock.now_ms())
    try:
        first = record_versions(load_catalog(catalog_dir), storage, clock.now_ms(), lambda _: "ann")
        assert len(first) == 12
        clock.advance(60_000)
        assert record_versions(load_catalog(catalog_dir), storage, clock.now_ms()) == []

        shop = catalog_dir / "kpis" / "shop.yaml"
        shop.write_text(shop.read_text().replace("target: 0.035", "target: 0.04"))
        clock.advance(60_000)
        changed = record_versions(
            load_catalog(catalog_dir), storage, clock.now_ms(), lambda _: "bob"
        )
        assert [c.kpi for c in changed] == ["checkout_conversion_rate"]

        history = storage.kpi_versions("checkout_conversion_rate")
        assert [(v.version, v.author, v.recorded_ms) for v in history] == [
            (1, "ann", 1_800_000_000_000),
            (2, "bob", 1_800_000_120_000),
        ]
        assert history[0].hash != history[1].hash
        assert history[0].diff.startswith("--- /dev/null\n+++ checkout_conversion_rate v1\n")
        assert "-target: 0.035\n+target: 0.04\n" in history[1].diff
        assert storage.kpi_versions("revenue")[0].version == 1
        assert storage.kpi_versions("nope") == []

        notes = storage.read_annotations(0, 2_000_000_000_000)
        assert [(a.id, a.ts) for a in notes] == [
            ("kpi-version:checkout_conversion_rate:2", 1_800_000_120_000)
        ]
        assert "kpi:checkout_conversion_rate" in notes[0].tags
    finally:
        storage.close()


def test_versions_survive_a_restart_and_refuse_duplicates(
    catalog_dir: Path, tmp_path: Path
) -> None:
    storage = open_store(tmp_path / "data", 1)
    record_versions(load_catalog(catalog_dir), storage, 1, lambda _: "ann")
    version = storage.kpi_versions("mrr")[0]
    storage.close()
    storage = open_store(tmp_path / "data", 2)
    try:
        assert storage.kpi_versions("mrr") == [version]
        assert record_versions(load_catalog(catalog_dir), storage, 2, lambda _: "x") == []
        with pytest.raises(ValueError, match="already has version 1"):
            storage.record_kpi_version(version)
    finally:
        storage.close()


def test_a_version_another_node_recorded_meanwhile_is_not_an_error(
    catalog_dir: Path, tmp_path: Path
) -> None:
    """Two nodes sharing a state store start at once: both see no version of a KPI, one
    records it first; the other's start goes on (tests/test_state_stores.py: the store
    refuses the second copy with ValueError on every backend)."""
    storage = open_store(tmp_path / "data", 5)
    catalog = load_catalog(catalog_dir)
    other: list[list[object]] = []

    def author(_: Path) -> str:  # called between reading the history and recording
        if not other:
            other.append(list(record_versions(catalog, storage, 5, lambda _: "node-b")))
        return "node-a"

    try:
        assert record_versions(catalog, storage, 5, author) == []
        assert len(other[0]) == 12
        assert {v.author for k in catalog for v in storage.kpi_versions(k.name)} == {"node-b"}
        assert all(len(storage.kpi_versions(k.name)) == 1 for k in catalog)
    finally:
        storage.close()


def test_author_comes_from_git_when_the_config_is_in_a_repo(catalog_dir: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=catalog_dir, check=True, capture_output=True)

    shop = catalog_dir / "kpis" / "shop.yaml"
    outside = git_author(shop)
    assert outside and outside != "Grace Hopper"
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=Grace Hopper", "-c", "user.email=g@example.com", "commit", "-qm", "kpis")
    assert git_author(shop) == "Grace Hopper"


# --- the reference stays in step with the code ----------------------------------------------


def test_docs_name_every_field_formula_and_value() -> None:
    from opsmetrics.catalog import kpi_model as m
    from opsmetrics.catalog.kpi_library import LIBRARY
    from opsmetrics.catalog.kpi_schema import KpiModel

    text = (Path(__file__).resolve().parent.parent / "docs" / "kpis.md").read_text()
    names = [f.alias or n for n, f in KpiModel.model_fields.items()]
    enums = [m.Level, m.Indicator, m.Unit, m.Direction, m.Cadence, m.Grain, m.EventAgg, m.FilterOp]
    words = [*names, *m.FORMULA_KEYS, *LIBRARY, *(v.value for e in enums for v in e)]
    missing = [w for w in words if f"`{w}`" not in text]
    assert not missing, f"docs/kpis.md does not mention {missing}"
