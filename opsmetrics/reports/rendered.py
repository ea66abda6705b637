"""The artefact of one report run: what delivery sends and the preview shows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


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
    images: dict[str, bytes] = field(default_factory=dict)
    pdf: bytes | None = None
    csv: bytes | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""


def content_hash(text: str, html: bytes | None, csv: bytes | None) -> str:
    """The artefact hash: the text, the page HTML (charts inline) and the CSV. Not the PDF,
    whose bytes carry the time it was made."""
    digest = hashlib.sha256(text.encode())
    for part in (html, csv):
        digest.update(b"\0" if part is None else part)
    return digest.hexdigest()
