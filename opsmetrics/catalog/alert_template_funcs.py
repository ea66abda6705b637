"""The functions of alert templates, with Go's and Prometheus's output formats.

humanize(1234567) == "1.235M", humanize1024(2048) == "2ki", humanizePercentage(0.1234) ==
"12.34%", humanizeDuration(3725) == "1h 2m 5s", humanizeTimestamp(0) ==
"1970-01-01 00:00:00 +0000 UTC"; printf follows Go's verbs (%s %v %d %f %g %e %q %x).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from opsmetrics.errors import UserError


class TemplateError(UserError):
    """An alert template that does not parse or cannot be expanded."""

    reason = "template"


# --- Go formatting --------------------------------------------------------------------------
def go_special(v: float) -> str | None:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return None


def go_exp(text: str) -> str:
    """Python's 1e+6 exponent as Go's two-digit 1e+06."""
    return re.sub(r"e([+-])(\d)$", r"e\g<1>0\2", text)


def go_float(v: float) -> str:
    """fmt.Sprint of a float64: the shortest digits; %e when the exponent is < -4 or >= 6."""
    special = go_special(v)
    if special is not None:
        return special
    if v == 0:
        return "-0" if math.copysign(1, v) < 0 else "0"
    sign, digits, exponent = Decimal(repr(v)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    exp = len(digits) + exponent - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{prefix}0.{'0' * (-exp - 1)}{text}"
    whole, frac = text[: exp + 1].ljust(exp + 1, "0"), text[exp + 1 :]
    return prefix + whole + ("." + frac if frac else "")


def g4(v: float) -> str:
    """Go's %.4g."""
    return go_special(v) or go_exp(format(v, ".4g"))


def go_text(value: Any) -> str:
    """How text/template prints a value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_text(v)}" for k, v in sorted(value.items())) + "]"
    if value is None:
        return "<no value>"
    return str(value)


def truthy(value: Any) -> bool:
    """Go's truth: false, 0, empty string/map and nil are false."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float | str | dict | list):
        return bool(value)
    return True


# --- Prometheus's functions -----------------------------------------------------------------
def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TemplateError(f"can't convert {go_text(value)} to float")
    if isinstance(value, int | float):
        return float(value)
    text = str(value)
    try:
        return float(text)
    except ValueError:
        raise TemplateError(f'strconv.ParseFloat: parsing "{text}": invalid syntax') from None


def _scaled(v: float, prefixes: tuple[str, ...], step: float, up: bool) -> str:
    prefix = ""
    for p in prefixes:
        if (abs(v) < step) if up else (abs(v) >= 1):
            break
        prefix = p
        v = v / step if up else v * step
    return g4(v) + prefix


def humanize(value: Any) -> str:
    v = to_float(value)
    if v == 0 or math.isnan(v) or math.isinf(v):
        return g4(v)
    if abs(v) >= 1:
        return _scaled(v, ("k", "M", "G", "T", "P", "E", "Z", "Y"), 1000, True)
    return _scaled(v, ("m", "u", "n", "p", "f", "a", "z", "y"), 1000, False)


def humanize1024(value: Any) -> str:
    v = to_float(value)
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return g4(v)
    return _scaled(v, ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"), 1024, True)


def humanize_duration(value: Any) -> str:
    v = to_float(value)
    if math.isnan(v) or math.isinf(v):
        return g4(v)
    if v == 0:
        return g4(v) + "s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        total = int(abs(v))
        days, hours = total // 86400, total // 3600 % 24
        minutes, seconds = total // 60 % 60, total % 60
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{g4(abs(v))}s"
    return _scaled(v, ("m", "u", "n", "p", "f", "a", "z", "y"), 1000, False) + "s"


def humanize_percentage(value: Any) -> str:
    return g4(to_float(value) * 100) + "%"


def humanize_timestamp(value: Any) -> str:
    """Go's time.Time String() of a Unix timestamp in seconds (ms precision), in UTC."""
    v = to_float(value)
    if math.isnan(v) or math.isinf(v):
        return g4(v)
    ms = int(int(v * 1e9) / 1e6)  # as Prometheus: nanoseconds, then model.Time (ms)
    seconds, millis = divmod(ms, 1000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
    frac = f"{millis:03d}".rstrip("0")
    return f"{text}{'.' + frac if frac else ''} +0000 UTC"


def title(value: Any) -> str:
    return re.sub(r"(^|[^\w'])(\w)", lambda m: m.group(1) + m.group(2).upper(), str(value))


# --- printf ---------------------------------------------------------------------------------
_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d+))?([a-zA-Z%])")


def _format_one(flags: str, width: str, precision: str | None, verb: str, arg: Any) -> str:
    spec = f"%{flags}{width}" + (f".{precision}" if precision is not None else "")
    if verb in "sv":
        text = go_text(arg)
        return (spec + "s") % (text[: int(precision)] if precision else text)
    if verb == "q":
        return json.dumps(go_text(arg), ensure_ascii=False)
    if verb in "dxXob" and isinstance(arg, int) and not isinstance(arg, bool):
        return format(arg, {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}[verb])
    if verb in "feEgG" and isinstance(arg, int | float) and not isinstance(arg, bool):
        v = float(arg)
        return go_special(v) or go_exp((spec + verb) % v)
    type_name = "float64" if isinstance(arg, float) else type(arg).__name__
    return f"%!{verb}({type_name}={go_text(arg)})"


def printf(fmt: Any, *args: Any) -> str:
    queue = list(args)

    def one(m: re.Match[str]) -> str:
        flags, width, precision, verb = m.groups()
        if verb == "%":
            return "%"
        if not queue:
            return f"%!{verb}(MISSING)"
        return _format_one(flags, width, precision, verb, queue.pop(0))

    out = _VERB.sub(one, str(fmt))
    if queue:
        out += "%!(EXTRA " + ", ".join(go_text(a) for a in queue) + ")"
    return out


# --- comparisons (eq ne lt le gt ge) and logic ----------------------------------------------
def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers):
        if isinstance(a, bool) == isinstance(b, bool):
            return a, b
    elif type(a) is type(b) and isinstance(a, str):
        return a, b
    raise TemplateError("incompatible types for comparison")


def _compare(op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(a: Any, b: Any) -> bool:
        x, y = _comparable(a, b)
        return op(x, y)

    return compare


def eq(a: Any, *others: Any) -> bool:
    if not others:
        raise TemplateError("missing argument for comparison")
    return any(_comparable(a, b)[0] == _comparable(a, b)[1] for b in others)


def index(mapping: Any, *keys: Any) -> Any:
    """Go's `index $labels "name"`: a missing key gives "" (missingkey=zero)."""
    value = mapping
    for key in keys:
        if not isinstance(value, dict):
            raise TemplateError(f"can't index item of type {type(value).__name__}")
        value = value.get(str(key), "")
    return value


def _regex(pattern: Any) -> re.Pattern[str]:
    try:
        return re.compile(str(pattern))
    except re.error as exc:
        raise TemplateError(f"error parsing regexp: {exc}") from None


#: `$1`, `${1}`, `$name`, `${name}` and `$$` in a Go replacement string.
_GO_GROUP_REF = re.compile(r"\$(?:\{(\w+)\}|(\w+)|(\$))")


def re_replace_all(pattern: Any, replacement: Any, text: Any) -> str:
    """Go's Regexp.ReplaceAllString: `$1` / `${1}` in the replacement name groups, and a
    group that does not exist expands to "" (Python's own templates would raise)."""
    template = str(replacement)

    def expand(match: re.Match[str]) -> str:
        return _GO_GROUP_REF.sub(lambda ref: _group_text(match, ref), template)

    return _regex(pattern).sub(expand, str(text))


def _group_text(match: re.Match[str], ref: re.Match[str]) -> str:
    if ref.group(3):
        return "$"
    name = ref.group(1) or ref.group(2)
    try:
        return match.group(int(name) if name.isdigit() else name) or ""
    except IndexError:
        return ""


def _split_host_port(text: str) -> tuple[str, str] | None:
    """Go's net.SplitHostPort, None where it fails."""
    if text.startswith("["):
        end = text.find("]:")
        return (text[1:end], text[end + 2 :]) if end > 0 else None
    host, sep, port = text.rpartition(":")
    return (host, port) if sep and ":" not in host else None


def strip_port(host: Any) -> str:
    split = _split_host_port(str(host))
    return split[0] if split else str(host)


def strip_domain(host_port: Any) -> str:
    text = str(host_port)
    host, port = _split_host_port(text) or (text, "")
    try:
        ipaddress.ip_address(host)
        return text
    except ValueError:
        pass
    short = host.split(".")[0]
    return f"{short}:{port}" if port else short


FUNCS: dict[str, Callable[..., Any]] = {
    "humanize": humanize,
    "humanize1024": humanize1024,
    "humanizeDuration": humanize_duration,
    "humanizePercentage": humanize_percentage,
    "humanizeTimestamp": humanize_timestamp,
    "printf": printf,
    "toUpper": lambda s: str(s).upper(),
    "toLower": lambda s: str(s).lower(),
    "title": title,
    "eq": eq,
    "ne": _compare(lambda a, b: a != b),
    "lt": _compare(lambda a, b: a < b),
    "le": _compare(lambda a, b: a <= b),
    "gt": _compare(lambda a, b: a > b),
    "ge": _compare(lambda a, b: a >= b),
    "not": lambda v: not truthy(v),
    "index": index,
    "match": lambda pattern, text: _regex(pattern).search(str(text)) is not None,
    "reReplaceAll": re_replace_all,
    "stripPort": strip_port,
    "stripDomain": strip_domain,
    "safeHtml": lambda text: str(text),
    "and": lambda *vs: next((v for v in vs if not truthy(v)), vs[-1]),
    "or": lambda *vs: next((v for v in vs if truthy(v)), vs[-1]),
}
