"""The report's HTML (one Jinja2 template for email, page and PDF), its PDF (WeasyPrint: A4,
"page X of Y", repeated table headers, vector charts and selectable text) and the PNG
charts of the email (resvg)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, Template, select_autoescape

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent / "templates"
#: Chart size in CSS pixels; PNGs are drawn at twice that for sharp email images.
CHART_WIDTH = 680
CHART_HEIGHT = 210
PNG_ZOOM = 1.5


@cache
def template() -> Template:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2")


def render_html(doc: Any, chart_src: Callable[[str], str], local: Callable[[int], str]) -> str:
    return template().render(doc=doc, chart_src=chart_src, local=local, chart_width=CHART_WIDTH)


def svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def png_of(svg: str) -> bytes:
    """The chart as PNG on white (email clients and Slack do not show SVG)."""
    import resvg_py  # imported on first use: a PDF-only report never draws a PNG

    return bytes(resvg_py.svg_to_bytes(svg_string=svg, background="#ffffff", zoom=PNG_ZOOM))


def pdf_of(html: str) -> bytes:
    """The page HTML (charts as SVG data URIs) as a PDF."""
    from weasyprint import HTML  # imported on first use: it loads pango and fonttools

    pdf = HTML(string=html, base_url=str(TEMPLATES)).write_pdf()
    assert pdf is not None
    return bytes(pdf)
