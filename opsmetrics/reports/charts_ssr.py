"""Charts for reports without a browser: the UI's own ECharts option builders
(web/static/js/chart_options.js) run with the vendored ECharts in QuickJS and render SVG.

The ES modules are joined at load time into one script (`bundle`): each module becomes a
function returning its exports, and its imports read those. One QuickJS context serves every
chart (loading ECharts costs ~0.1-0.3 s, a chart ~40 ms); a lock makes it safe across threads.
Each chart runs under a CPU-time and a memory limit: a chart that fails or runs too long
yields a marked placeholder ("chart unavailable: …") and the context is made again, so a bad
option can neither hang nor poison the scheduler.
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import quickjs

from opsmetrics.reports.memo import Memo

log = logging.getLogger(__name__)

WEB_STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
ECHARTS = WEB_STATIC / "vendor" / "echarts.min.js"
MODULES = (WEB_STATIC / "js" / "value_format.js", WEB_STATIC / "js" / "chart_options.js")
GLUE = Path(__file__).resolve().parent / "charts_ssr.js"
TIME_LIMIT_S = 5.0
MEMORY_LIMIT_BYTES = 256 * 1024 * 1024
#: Charts kept by their payload (an SVG is 20-60 KB).
DRAWN_KEPT = 256
#: Where a placeholder says why; the tests and the HTML look for it.
UNAVAILABLE = "chart unavailable"
#: The report's colours: the UI's light theme (web/static/css/app.css).
REPORT_COLORS = {
    "palette": ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000"],
    "text": "#1b1f24",
    "muted": "#5b6470",
    "border": "#d7dce2",
    "ok": "#0072b2",
    "warning": "#b87d00",
    "critical": "#d55e00",
}

_IMPORT = re.compile(r"""^import\s+(.*?)\s+from\s+["']\./([\w.-]+)["'];?\s*$""", re.M)
#: ECharts writes some labels' font as the `font` shorthand, which WeasyPrint's SVG drops.
_FONT = re.compile(r"font:\s*(normal|italic|oblique)\s+(normal|bold|bolder|lighter|\d+)\s+"
                   r"([\d.]+px)\s+([^;\"]+)")  # fmt: skip
_EXPORT = re.compile(r"^export\s+(function|const|let|class)\s+([A-Za-z_$][\w$]*)", re.M)


@dataclass(frozen=True, slots=True)
class ChartSvg:
    """An SVG chart, or a placeholder of the same size when `error` is set."""

    svg: str
    error: str | None = None


def bundle(paths: Sequence[Path]) -> str:
    """ES modules (relative imports of each other only) as one classic script: module
    `x.js` becomes `__modules["x.js"]`, the object of its exports."""
    parts = ["var __modules = {};"]
    for path in paths:
        parts.append(_module_script(path.name, path.read_text(encoding="utf-8")))
    return "\n".join(parts)


def _module_script(name: str, source: str) -> str:
    exports = [m.group(2) for m in _EXPORT.finditer(source)]
    body = _EXPORT.sub(lambda m: f"{m.group(1)} {m.group(2)}", source)
    body = _IMPORT.sub(lambda m: _import_line(m.group(1), m.group(2)), body)
    listed = ", ".join(exports)
    return f'__modules["{name}"] = (function () {{\n{body}\nreturn {{ {listed} }};\n}})();'


def _import_line(what: str, module: str) -> str:
    star = re.fullmatch(r"\*\s+as\s+([\w$]+)", what.strip())
    if star:
        return f'const {star.group(1)} = __modules["{module}"];'
    names = what.strip().strip("{}").replace(" as ", ": ")
    return f'const {{ {names} }} = __modules["{module}"];'


class ChartRenderer:
    """Renders chart payloads to SVG with the option builders of `modules`: `kind` "trend"
    calls the exported `trendOption(payload, colors)`, "bar" `barOption`, and so on."""

    def __init__(
        self,
        modules: Sequence[Path] = MODULES,
        *,
        time_limit_s: float = TIME_LIMIT_S,
        memory_limit_bytes: int = MEMORY_LIMIT_BYTES,
    ) -> None:
        self._script = bundle(modules)
        self._time_limit = time_limit_s
        self._memory_limit = memory_limit_bytes
        self._lock = threading.Lock()
        self._context: quickjs.Context | None = None
        # Reports due together draw the same KPI charts; a placeholder is never kept.
        self._drawn: Memo[ChartSvg] = Memo(DRAWN_KEPT)

    def render(self, kind: str, payload: dict[str, Any], width: int, height: int) -> ChartSvg:
        """The chart as SVG text; a placeholder naming the failure when it cannot be drawn."""
        call = json.dumps([kind, payload, REPORT_COLORS, width, height], allow_nan=False)
        drawn = self._drawn.find(call)
        if drawn is None:
            drawn = self._draw(kind, call, width, height)
            if drawn.error is None:
                self._drawn.put(call, drawn)
        return drawn

    def _draw(self, kind: str, call: str, width: int, height: int) -> ChartSvg:
        with self._lock:
            try:
                context = self._loaded()
                text = context.eval(f"renderChart.apply(null, {call})")
                return ChartSvg(_longhand_fonts(str(json.loads(text))))
            except quickjs.JSException as exc:
                # An interrupted or out-of-memory context is not trusted again.
                self._context = None
                reason = _reason(str(exc))
        log.warning("report chart %s not rendered: %s", kind, reason)
        return ChartSvg(placeholder(width, height, reason), reason)

    def release(self) -> None:
        """Let the JS context go (ECharts loaded is about 13 MB of RSS); the next chart to
        draw loads it again (about 0.1 s)."""
        with self._lock:
            self._context = None

    def _loaded(self) -> quickjs.Context:
        if self._context is None:
            context = quickjs.Context()
            context.set_memory_limit(self._memory_limit)
            context.set_time_limit(-1)
            context.eval("var setTimeout=function(){return 0};var clearTimeout=function(){};")
            context.eval(ECHARTS.read_text(encoding="utf-8"))
            context.eval(self._script)
            context.eval(GLUE.read_text(encoding="utf-8"))
            context.set_time_limit(self._time_limit)
            self._context = context
        return self._context


def _longhand_fonts(svg: str) -> str:
    return _FONT.sub(
        lambda m: f"font-style:{m[1]};font-weight:{m[2]};font-size:{m[3]};font-family:{m[4]}", svg
    )


def _reason(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    if "interrupted" in first:
        return "it took too long to draw"
    if "out of memory" in first:
        return "it needed too much memory"
    return first[:200]


def placeholder(width: int, height: int, reason: str) -> str:
    """A grey box that says the chart is missing and why (never an empty space)."""
    text = html.escape(f"{UNAVAILABLE}: {reason}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" class="chart-unavailable">'
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#f6f7f9" '
        f'stroke="#d7dce2"/><text x="{width // 2}" y="{height // 2}" text-anchor="middle" '
        f'font-family="DejaVu Sans, sans-serif" font-size="14" fill="#5b6470">{text}</text></svg>'
    )


_shared: ChartRenderer | None = None
_shared_lock = threading.Lock()


def shared_renderer() -> ChartRenderer:
    """The process's renderer (made on first use, so importing this module costs nothing)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ChartRenderer()
        return _shared
