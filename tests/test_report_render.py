"""Report content and rendering on real data through the real stack (tests/report_data.py: a
DuckDB store written through the ingestor, a planted spike, a stale KPI, alert timelines):
the PDF's text (pdftotext), pages (pdfinfo), pixels (pdftoppm), the email's CID images, the
CSV and the summary. Everything is read as of the slot, a fixed instant."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import multiprocessing
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from opsmetrics.catalog.reports import ReportSources
from opsmetrics.reports.pdf_workers import PdfMaker
from opsmetrics.reports.render import ReportInputs, inputs_from_services, render_report
from opsmetrics.reports.rendered import RenderedReport
from opsmetrics.reports.tables import ReportTable
from opsmetrics.services import Services
from tests.report_data import SLOT, open_shop, spec

ALL = frozenset({"html", "pdf", "csv"})
REVIEWS = ReportTable("Reviews due", ("KPI", "Owner", "To do"), [("Orders", "shop", "Review it")])


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    services = open_shop(tmp_path_factory.mktemp("shop"))
    try:
        yield services
    finally:
        services.close()


@pytest.fixture(scope="module")
def inputs(shop: Services) -> ReportInputs:
    return inputs_from_services(
        shop, tables=lambda s, slot: [REVIEWS] if s.audience == "owner" else []
    )


@pytest.fixture(scope="module")
def executive(inputs: ReportInputs) -> RenderedReport:
    return render_report(inputs, spec("executive"), SLOT, formats=ALL)


@pytest.fixture(scope="module")
def engineering(inputs: ReportInputs) -> RenderedReport:
    sources = ReportSources(tags=("sre",))
    return render_report(inputs, spec("engineering", sources=sources), SLOT, formats=ALL)


def _pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    done = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                          check=True, timeout=60)  # fmt: skip
    return re.sub(r"[ \t]+", " ", done.stdout.decode())


def _svg_texts(html: str) -> list[str]:
    texts = []
    for data in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html):
        svg = base64.b64decode(data).decode()
        texts += re.findall(r"<text[^>]*>([^<]+)</text>", svg)
    return texts


def test_pdf_text_has_titles_attainment_change_explanation_and_ticks(
    executive: RenderedReport, tmp_path: Path
) -> None:
    assert executive.pdf is not None and executive.pdf.startswith(b"%PDF")
    text = _pdf_text(executive.pdf, tmp_path)
    for title in ("Executive summary", "Orders", "Refunds", "Signups", "Targets"):
        assert title in text
    assert "58.0 %" in text  # 1,160 orders of a 2,000 target
    assert "up 27.9% vs the previous day — better" in re.sub(r"\s+", " ", text)
    flat = re.sub(r"\s+", " ", text)
    assert "Orders was unusually high on Sun 6 Dec 2026, 14:00" in flat
    assert "most of the change came from region eu-west" in flat
    assert "it coincided with the deploy “v1.42”" in flat
    ticks = [t for t in _svg_texts(executive.html_page) if re.fullmatch(r"-?[\d,]+", t)]
    assert len(ticks) >= 6 and all(t in text for t in ticks)  # vector text, not pictures
    assert re.search(r"page 1 of \d", text)


def test_refunds_going_up_is_worse(executive: RenderedReport) -> None:
    refunds = next(k for k in executive.summary["kpis"] if k["name"] == "refunds")
    assert refunds["change"] > 0 and refunds["change_text"].endswith("— worse")
    orders = next(k for k in executive.summary["kpis"] if k["name"] == "orders")
    assert orders["attainment"] == pytest.approx(0.58) and orders["status"] == "warning"


def test_pdf_is_a4_with_pages_and_page_one_is_not_blank(
    executive: RenderedReport, tmp_path: Path
) -> None:
    assert executive.pdf is not None
    path = tmp_path / "r.pdf"
    path.write_bytes(executive.pdf)
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, check=True, timeout=60)
    pages = int(re.search(rb"Pages:\s+(\d+)", info.stdout).group(1))  # type: ignore[union-attr]
    assert pages >= 3 and b"595.276 x 841.89 pts (A4)" in info.stdout
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(path), str(tmp_path / "p")],
                   check=True, timeout=60)  # fmt: skip
    first = Image.open(tmp_path / "p-1.png").convert("L")
    assert ImageStat.Stat(first).stddev[0] > 5  # text on it, not a blank page
    second = Image.open(tmp_path / "p-2.png").convert("RGB")  # the movers' charts
    red, _, blue_band = second.split()
    blue = sum(
        1 for r, b in zip(red.tobytes(), blue_band.tobytes(), strict=True) if b > 150 and r < 80
    )
    assert blue > 200  # the trend line (#0072B2) is drawn


def test_stale_data_is_a_warning_never_a_zero(executive: RenderedReport, tmp_path: Path) -> None:
    signups = next(k for k in executive.summary["kpis"] if k["name"] == "signups")
    assert signups["value"] is None and signups["status"] == "unknown"
    assert signups["warning"] == "no data since Thu 3 Dec 2026, 10:00"
    assert "Signups: no data since Thu 3 Dec 2026, 10:00" in executive.text
    assert executive.csv is not None
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(executive.csv.decode()))}
    assert rows["signups"]["value"] == "" and rows["orders"]["value"] == "1160.0"
    assert list(rows["orders"]) == ["name", "title", "value", "unit", "target", "attainment",
                                    "status", "change"]  # fmt: skip
    assert executive.pdf is not None
    assert "no data since Thu 3 Dec 2026, 10:00" in _pdf_text(executive.pdf, tmp_path)


def test_executive_words_have_no_jargon_and_engineering_has_the_detail(
    executive: RenderedReport, engineering: RenderedReport
) -> None:
    for form in (executive.text, executive.html_page, executive.html_email):
        assert "σ" not in form
    sentence = next(e["sentence"] for k in engineering.summary["kpis"] for e in k["explanations"])
    assert "σ from the seasonal baseline" in sentence
    assert "top dimension region=eu-west" in sentence
    assert "annotation 'v1.42'" in sentence
    assert [k["name"] for k in engineering.summary["kpis"]] == ["orders"]  # tags: [sre]


def test_every_cid_of_the_email_is_an_image(executive: RenderedReport) -> None:
    cids = set(re.findall(r'src="cid:([^"]+)"', executive.html_email))
    assert cids and cids == set(executive.images)
    assert all(png.startswith(b"\x89PNG") for png in executive.images.values())
    assert executive.images is executive.images  # drawn on first use, once
    assert "data:image" not in executive.html_email


def test_alerts_of_the_window_open_and_resolved(engineering: RenderedReport) -> None:
    alerts = engineering.summary["alerts"]
    assert [a["name"] for a in alerts["open"]] == ["CheckoutErrors"]
    assert [a["name"] for a in alerts["resolved"]] == ["SlowSearch"]
    assert "SlowSearch (warning): fired Sun 6 Dec 2026, 14:00, resolved" in engineering.text


def test_a_table_section_renders_and_formats_are_only_what_was_asked(
    inputs: ReportInputs,
) -> None:
    got = render_report(inputs, spec("owner"), SLOT, formats=frozenset({"csv"}))
    assert got.pdf is None and got.images == {} and got.html_email == ""
    assert "<th>Owner</th>" in got.html_page and "<td>Review it</td>" in got.html_page
    assert "Reviews due" in got.text and got.csv is not None
    again = render_report(inputs, spec("owner"), SLOT, formats=frozenset({"csv"}))
    assert again.sha256 == got.sha256  # the same slot renders the same artefact


def test_a_delayed_run_says_so(inputs: ReportInputs) -> None:
    got = render_report(inputs, spec("owner"), SLOT, delayed=True, formats=frozenset({"csv"}))
    assert got.subject == "Owner summary — Sun 6 Dec 2026 (delayed)"
    assert "delayed" in got.html_page


def test_owner_and_hygiene_audiences_render_their_tables(shop: Services) -> None:
    inputs = inputs_from_services(shop)
    owner = render_report(inputs, spec("owner", sources=ReportSources(owners=("growth",))),
                          SLOT, formats=frozenset({"csv"}))  # fmt: skip
    assert [k["name"] for k in owner.summary["kpis"]] == ["signups"]
    table = owner.summary["tables"][0]
    assert table["rows"] and all(row[0] == "Signups" for row in table["rows"])
    assert "<th>" + table["columns"][0] + "</th>" in owner.html_page
    hygiene = render_report(inputs, spec("hygiene"), SLOT, formats=frozenset({"csv"}))
    assert hygiene.summary["tables"][0]["title"] == "Hygiene"
    assert "Fix" in hygiene.summary["tables"][0]["columns"]


def test_an_earlier_slot_shows_its_own_period(
    inputs: ReportInputs, executive: RenderedReport
) -> None:
    """A catch-up run for the day before reads as of its slot: Saturday's orders (today's
    comparison value), and nothing of Sunday's spike, though the data is in the store."""
    day = 86_400_000
    earlier = render_report(inputs, spec("executive"), SLOT - day, formats=frozenset({"csv"}))
    before = next(k for k in earlier.summary["kpis"] if k["name"] == "orders")
    now = next(k for k in executive.summary["kpis"] if k["name"] == "orders")
    assert before["value"] == now["compare"] and before["value"] != now["value"]
    assert before["explanations"] == [] and earlier.summary["period"] == "Sat 5 Dec 2026"
    assert earlier.summary["alerts"] == {"open": [], "resolved": []}  # they fired on Sunday


def test_a_named_dashboard_brings_its_chart_widgets(inputs: ReportInputs) -> None:
    sources = ReportSources(dashboards=("shop",))
    got = render_report(
        inputs, spec("operations", sources=sources), SLOT, formats=frozenset({"html"})
    )
    assert "Dashboard: Shop" in got.html_page
    texts = _svg_texts(got.html_page)
    assert "eu-west" in texts and "us-east" in texts  # the bar widget, by region
    assert [k["name"] for k in got.summary["kpis"]] == ["orders"]  # the dashboard's KPIs
    cids = set(re.findall(r'src="cid:([^"]+)"', got.html_email))
    assert len(cids) == 3 and cids == set(got.images)  # the KPI's chart + trend + bar


def test_a_pdf_made_while_another_report_renders_comes_from_a_worker_process(
    inputs: ReportInputs, tmp_path: Path
) -> None:
    maker = PdfMaker(workers=1)
    try:
        with maker.rendering():  # another report renders meanwhile
            got = render_report(dataclasses.replace(inputs, pdfs=maker), spec("executive"),
                                SLOT, formats=frozenset({"pdf"}))  # fmt: skip
            workers = multiprocessing.active_children()
    finally:
        maker.close()
    assert workers and not any(w.is_alive() for w in workers)
    assert got.pdf is not None and "Orders" in _pdf_text(got.pdf, tmp_path)
