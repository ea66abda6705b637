"""Alert templates: Prometheus's functions against outputs its template.go produces, Go's
formatting of values, the syntax subset (pipelines, trimming, if/else) and its errors."""

from __future__ import annotations

import math

import pytest

from opsmetrics.catalog.alert_template_funcs import go_float
from opsmetrics.catalog.alert_templates import AlertData, TemplateError, expand, parse
from opsmetrics.catalog.rules import parse_rule_file
from opsmetrics.errors import ConfigError

DATA = AlertData({"__name__": "up", "job": "api", "instance": "a:1"}, 0.1234)


def render(text: str, data: AlertData = DATA) -> str:
    return parse(text, "__alert_T").render(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ humanize 1234567 }}", "1.235M"),
        ("{{ humanize 1234.5678 }}", "1.235k"),
        ("{{ humanize 0.000123 }}", "123u"),
        ("{{ humanize 0 }}", "0"),
        ("{{ humanize -1500 }}", "-1.5k"),
        ("{{ humanize 1e30 }}", "1e+06Y"),
        ("{{ humanize1024 1024 }}", "1ki"),
        ("{{ humanize1024 1048576 }}", "1Mi"),
        ("{{ humanize1024 0.5 }}", "0.5"),
        ("{{ humanizePercentage 0.1234 }}", "12.34%"),
        ("{{ humanizePercentage 1 }}", "100%"),
        ("{{ humanizeDuration 3725 }}", "1h 2m 5s"),
        ("{{ humanizeDuration 90061 }}", "1d 1h 1m 1s"),
        ("{{ humanizeDuration 65 }}", "1m 5s"),
        ("{{ humanizeDuration 1.5 }}", "1.5s"),
        ("{{ humanizeDuration 0.0012 }}", "1.2ms"),
        ("{{ humanizeDuration 0 }}", "0s"),
        ("{{ humanizeDuration -3725 }}", "-1h 2m 5s"),
        ("{{ humanizeTimestamp 1700000000 }}", "2023-11-14 22:13:20 +0000 UTC"),
        ("{{ humanizeTimestamp 1435065584.128 }}", "2015-06-23 13:19:44.128 +0000 UTC"),
        ('{{ humanize "1234567" }}', "1.235M"),
        ('{{ printf "%.2f" 3.14159 }}', "3.14"),
        ('{{ printf "%s has %d" "api" 3 }}', "api has 3"),
        ('{{ printf "%v|%5.1f|%q" 1.5 2.25 "x" }}', '1.5|  2.2|"x"'),
        ('{{ printf "%d" 1.5 }}', "%!d(float64=1.5)"),
        ('{{ printf "%s %s" "a" }}', "a %!s(MISSING)"),
        ('{{ toUpper "abc" }} {{ toLower "ABC" }}', "ABC abc"),
        ('{{ title "hello wide-world" }}', "Hello Wide-World"),
        ('{{ index $labels "job" }}|{{ index .Labels "nope" }}|', "api||"),
        ('{{ reReplaceAll "(.*):(.*)" "${2}-$1" "host:80" }}', "80-host"),
        ('{{ if match "^a:" $labels.instance }}yes{{ end }}', "yes"),
        (
            '{{ "node1:9100" | stripPort }} {{ "[::1]:80" | stripPort }} {{ "::1" | stripPort }}',
            "node1 ::1 ::1",
        ),
        (
            '{{ stripDomain "node1.example.com:9100" }} {{ stripDomain "10.0.0.1:80" }}',
            "node1:9100 10.0.0.1:80",
        ),
    ],
)
def test_functions_match_prometheus(text: str, expected: str) -> None:
    assert render(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1234, "0.1234"),
        (1.0, "1"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
    ],
)
def test_values_print_as_go_prints_float64(value: float, expected: str) -> None:
    assert go_float(value) == expected
    assert render("{{ $value }}", AlertData({}, value)) == expected


def test_variables_and_fields() -> None:
    text = "{{ $labels.job }}/{{ .Labels.instance }} {{ .Value }} {{ $value }} [{{ $labels.x }}]"
    # Prometheus expands with missingkey=zero: a label that is not there is empty.
    assert render(text) == "api/a:1 0.1234 0.1234 []"
    assert render("{{ $externalLabels.cluster }}|{{ $externalURL }}|") == "||"


def test_pipelines_feed_the_last_argument() -> None:
    assert render("{{ $value | humanizePercentage }}") == "12.34%"
    assert render('{{ $labels.job | printf "job=%s" | toUpper }}') == "JOB=API"
    assert render('{{ humanize (printf "%f" 2000.0) }}') == "2k"


def test_trim_markers_remove_adjacent_space() -> None:
    assert render("a  {{- $labels.job -}}  \n b") == "aapib"
    assert render("a {{ $labels.job }} b") == "a api b"


def test_if_else_chains_with_comparisons() -> None:
    text = (
        '{{ if gt $value 0.5 }}high{{ else if eq $labels.job "api" "web" }}web-ish'
        "{{ else }}low{{ end }}"
    )
    assert render(text) == "web-ish"
    assert render(text, AlertData({"job": "db"}, 0.9)) == "high"
    assert render(text, AlertData({"job": "db"}, 0.1)) == "low"
    ops = '{{ if ne $labels.job "x" }}ne{{ end }}{{ if lt $value 1.0 }}lt{{ end }}'
    ops += "{{ if le $value 0.1234 }}le{{ end }}{{ if ge $value 0.2 }}ge{{ end }}"
    assert render(ops) == "neltle"
    nested = "{{ if $labels.job }}{{ if not $labels.x }}no-x{{ end }}{{ end }}"
    assert render(nested) == "no-x"


def test_comparing_a_string_with_a_number_is_an_error() -> None:
    with pytest.raises(TemplateError, match="incompatible types for comparison"):
        render("{{ if gt $labels.job 1.0 }}x{{ end }}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ nope }}", 'function "nope" not defined'),
        ("{{ if $value }}x", "`if` without `end`"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ range $labels }}{{ end }}", "'range' is not supported"),
        ("{{ $value ", "unclosed action"),
        ("{{ $nope }}", 'undefined variable "$nope"'),
        ("{{ .Nope }}", "can't evaluate field Nope"),
        ("{{ (humanize 1 }}", "unclosed left paren"),
    ],
)
def test_errors_are_reported(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match="template: __alert_T:1: ") as info:
        render(text)
    assert message in info.value.message


def test_expand_shows_the_error_in_the_text_as_prometheus() -> None:
    assert expand("{{ nope }}", "__alert_T", DATA) == (
        "<error expanding template: error parsing template __alert_T: template: __alert_T:1: "
        'function "nope" not defined>'
    )
    assert expand("{{ .Nope }}", "__alert_T", DATA).startswith(
        "<error expanding template: error executing template __alert_T: template: __alert_T:1:"
    )


def test_rule_files_check_templates_at_load_time() -> None:
    text = """\
groups:
  - name: g
    rules:
      - alert: A
        expr: up == 0
        labels: {severity: "{{ if $value }}page"}
        annotations:
          summary: "{{ $labels.job | humanize }}"
          description: "{{ $value | nosuch }}"
"""
    with pytest.raises(ConfigError) as info:
        parse_rule_file(text, "rules/a.yaml")
    assert info.value.message.splitlines() == [
        "rules/a.yaml:6: groups[0].rules[0].labels.severity: invalid template: template: "
        "__alert_A:1: unexpected EOF: `if` without `end`",
        "rules/a.yaml:9: groups[0].rules[0].annotations.description: invalid template: "
        'template: __alert_A:1: function "nosuch" not defined',
    ]
