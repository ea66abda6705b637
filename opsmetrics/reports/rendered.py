"""The artefact of one report run: what delivery sends and the preview shows."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class ChartImages:
    """The email's PNG charts (id → bytes), drawn from their SVG on first use, once.

    Drawing is a fifth of a report's rendering; a run that sends no email (Slack and webhooks
    only, a preview) never pays it. Thread-safe: the first caller draws, the others wait.
    """

    def __init__(self, svgs: Mapping[str, str], draw: Callable[[str], bytes]) -> None:
        self._svgs = dict(svgs)
        self._draw = draw
        self._lock = threading.Lock()
        self._images: dict[str, bytes] | None = None

    def get(self) -> dict[str, bytes]:
        with self._lock:
            if self._images is None:
                self._images = {cid: self._draw(svg) for cid, svg in self._svgs.items()}
                self._svgs = {}
            return self._images


@dataclass(frozen=True, slots=True)
class RenderedReport:
    """One rendering of a report for one slot, in every format asked for.

    `html_email` refers to its charts as `cid:<id>` (each id a key of `images`, PNG bytes);
    `html_page` is the same document with the charts inline, for the preview and the browser.
    `summary` is JSON-able (KPIs with value, attainment, status, change and explanations;
    alerts) for the webhook and Slack. `sha256` identifies the content (the delivery log's
    artefact hash).
    """

    subject: str
    text: str
    html_email: str
    html_page: str
    pdf: bytes | None = None
    csv: bytes | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    chart_images: ChartImages | None = field(default=None, repr=False, compare=False)

    @property
    def images(self) -> dict[str, bytes]:
        """PNG per chart id of `html_email` (drawn on first access); empty without html."""
        return {} if self.chart_images is None else self.chart_images.get()


def content_hash(text: str, html: bytes | None, csv: bytes | None) -> str:
    """The artefact hash: the text, the page HTML (charts inline) and the CSV. Not the PDF,
    whose bytes carry the time it was made."""
    digest = hashlib.sha256(text.encode())
    for part in (html, csv):
        digest.update(b"\0" if part is None else part)
    return digest.hexdigest()
