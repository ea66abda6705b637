"""`opsmetrics analyze sample-size | ab | correlate | experiment`: the statistics commands.

`sample-size` and `ab` compute locally from the numbers given; `correlate` and `experiment`
ask the running server (it owns the database), like `opsmetrics kpi`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from opsmetrics.analysis import abtest, power
from opsmetrics.cli.importer import UrlOpt, quiet_http_log
from opsmetrics.cli.kpi import JsonOpt, TokenOpt, api_get
from opsmetrics.client.transport import DEFAULT_URL, RetryPolicy, Transport
from opsmetrics.errors import BadDataError

console = Console()
Alpha = Annotated[float, typer.Option("--alpha", help="Significance level (two-sided).")]


def register(app: typer.Typer) -> None:
    """Add the statistics commands to the `analyze` group."""
    app.command("sample-size")(sample_size)
    app.command("ab")(ab)
    app.command("correlate")(correlate)
    app.command("experiment")(experiment)


def sample_size(
    mde: Annotated[float, typer.Option("--mde", help="Absolute minimum detectable effect.")],
    baseline: Annotated[
        float | None, typer.Option("--baseline", help="Control rate (proportion metrics).")
    ] = None,
    std: Annotated[float | None, typer.Option("--std", help="Per-unit std (mean metrics).")] = None,
    alpha: Alpha = 0.05,
    power_: Annotated[float, typer.Option("--power", help="Chance to detect the MDE.")] = 0.8,
) -> None:
    """Units per arm to detect an absolute MDE (two-sided; Cohen's h or d as R's pwr)."""
    if (baseline is None) == (std is None):
        raise BadDataError("give --baseline (proportion metric) or --std (mean metric)")
    if baseline is not None:
        n = power.proportion_sample_size(baseline, mde, alpha, power_)
    else:
        assert std is not None
        n = power.mean_sample_size(std, mde, alpha, power_)
    table = Table("per arm", "total", "alpha", "power", "mde", title="Sample size")
    table.add_row(f"{n:,}", f"{2 * n:,}", f"{alpha:g}", f"{power_:g}", f"{mde:g}")
    console.print(table)


def ab(
    control: Annotated[str, typer.Option("--control", help="n:successes or n:mean:std")],
    treatment: Annotated[str, typer.Option("--treatment", help="n:successes or n:mean:std")],
    alpha: Alpha = 0.05,
    as_json: JsonOpt = False,
) -> None:
    """Two-arm test: 2 fields per arm = proportion z-test, 3 fields = Welch t-test."""
    c, t = _arm(control, "--control"), _arm(treatment, "--treatment")
    if len(c) != len(t):
        raise BadDataError("--control and --treatment must both be n:successes or n:mean:std")
    if len(c) == 2:
        comp = abtest.proportion_test(int(c[0]), int(c[1]), int(t[0]), int(t[1]), alpha)
    else:
        comp = abtest.mean_test((int(c[0]), c[1], c[2]), (int(t[0]), t[1], t[2]), alpha)
    data = comp.to_dict() | {"srm_p_value": abtest.srm_test([int(c[0]), int(t[0])]).p_value}
    if as_json:
        typer.echo(json.dumps(data))
        return
    console.print(comparison_table([{"variant": "treatment"} | data], comp.test))


def _arm(text: str, option: str) -> list[float]:
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise BadDataError(f"{option}: {text!r} is not n:successes or n:mean:std") from None
    if len(parts) not in (2, 3):
        raise BadDataError(f"{option}: {text!r} is not n:successes or n:mean:std")
    return parts


def correlate(
    a: Annotated[str, typer.Argument(help="PromQL expression or KPI name.")],
    b: Annotated[str, typer.Argument(help="PromQL expression or KPI name.")],
    start: Annotated[str, typer.Option("--start", help="RFC 3339 or Unix seconds.")],
    end: Annotated[str, typer.Option("--end", help="RFC 3339 or Unix seconds.")],
    step: Annotated[str, typer.Option("--step", help="Resolution, e.g. 1h.")] = "1h",
    max_lag: Annotated[int, typer.Option("--max-lag", help="Lags tried, in steps.")] = 24,
    per: Annotated[float | None, typer.Option("--per", help="Impact per this much of A.")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Correlate two series on the server: raw and de-seasonalised, lead/lag, impact."""
    body: dict[str, Any] = {
        "a": {"query": a},
        "b": {"query": b},
        "start": start,
        "end": end,
        "step": step,
        "max_lag": max_lag,
        "labels": {"a": a, "b": b, "per": per},
    }
    response = _post(url, token, "/api/v1/analysis/correlation", body)
    if as_json:
        typer.echo(json.dumps(response))
        return
    console.print(correlation_table(response["data"]))


def _post(url: str, token: str | None, path: str, body: dict[str, Any]) -> dict[str, Any]:
    quiet_http_log()
    transport = Transport(url, token, policy=RetryPolicy(max_retries=2, max_backoff=2.0))
    try:
        return transport.post(path, msgspec.json.encode(body), "application/json")
    finally:
        transport.close()


def experiment(
    name: Annotated[str, typer.Argument(help="Experiment name (experiments/*.yaml).")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """An experiment's readout: exposures, SRM, primary metric and guardrails."""
    response = api_get(url, token, "/api/v1/analysis/experiment", {"name": name})
    if as_json:
        typer.echo(json.dumps(response))
        return
    data = response["data"]
    console.print(f"[bold]{data['experiment']['title'] or name}[/bold]")
    srm = data.get("srm") or {}
    console.print(f"exposures {data['exposures']}  SRM p={_num(srm.get('p_value'))}")
    for w in data["warnings"]:
        console.print(f"[red]{w}[/red]")
    for m in [data["primary"], *data["guardrails"]]:
        console.print(comparison_table(m["comparisons"], m["name"]))


def _num(v: Any, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}g}"


def comparison_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(
        "variant",
        "control",
        "treatment",
        "effect",
        "CI",
        "relative",
        "p",
        "sequential CS",
        title=title,
    )
    for r in rows:
        if "error" in r:
            table.add_row(r["variant"], r["error"])
            continue
        seq = r.get("sequential")
        cs = f"[{_num(seq['ci_low'])}, {_num(seq['ci_high'])}]" if seq else ""
        rel = r["relative_effect"]
        table.add_row(
            r["variant"],
            _num(r["control"]),
            _num(r["treatment"]),
            _num(r["absolute_effect"]),
            f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]",
            "—" if rel is None else f"{rel:+.1%}",
            _num(r["p_value"], 3),
            cs,
        )
    return table


def correlation_table(d: dict[str, Any]) -> Table:
    table = Table("", "Pearson r", "95% CI", "p", "Spearman ρ", title="Correlation")
    for label, part in (("raw", d), ("de-seasonalised", d["residual"])):
        p, s = part["pearson"], part["spearman"]
        table.add_row(
            label,
            _num(p["r"], 3),
            f"[{_num(p['ci_low'], 3)}, {_num(p['ci_high'], 3)}]",
            _num(p["p_value"], 3),
            _num(s["rho"], 3),
        )
    lag = d["best_lag"]
    table.caption = (
        f"best lag {lag['steps']} steps ({lag['seconds']:g} s), r={_num(lag['r'], 3)}; "
        + (d["finding"] or "no significant link after correction")
    )
    return table
