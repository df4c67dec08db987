"""`python -m bot demo` in a real browser (headless Chromium from the Debian packages, driven by
Playwright): the customer joins and gets the card image, the cashier pastes its payload into the
staff group and confirms an amount, then scans it again by dragging the image across; the
customer opens the live card in the Mini App and the owner's Mini App till scans it; the
owner's /stats counts the three sales. Three people, three languages: the customer switches to
English, the cashier to Estonian, the owner stays in Russian.

The demo keeps its own SQLite database whatever engine the suite runs on, so the test runs once,
in the SQLite pass. Without Chromium it is skipped, unless REQUIRE_BROWSER=1 (CI) makes that a
failure."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
import zxingcpp
from PIL import Image

from bot.i18n import create_i18n
from config import PROJECT_ROOT
from tests.conftest import on_postgres
from tests.servers import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.async_api import Locator, Page, async_playwright, expect
except ImportError:  # pragma: no cover - a dev extra
    async_playwright = None  # type: ignore[assignment]

if on_postgres():
    pytestmark = pytest.mark.skip(reason="the demo runs on its own SQLite database: tested once")
elif (CHROMIUM is None or async_playwright is None) and not os.environ.get("REQUIRE_BROWSER"):
    pytestmark = pytest.mark.skip(reason="needs Chromium (apt install chromium) and Playwright")

I18N = create_i18n()
WAIT_MS = 20_000


def tr(text: str, language: str) -> str:
    return I18N.gettext(text, locale=language)


@pytest.fixture
def demo_url(tmp_path: Path) -> Iterator[str]:
    """`python -m bot demo` as a newcomer runs it, on a free port and its own data folder."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "DATABASE_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "demo", "--port", str(port), "--data", str(tmp_path)],
        cwd=tmp_path,  # no .env there, nor needed
        env={**env, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:  # a thread: a demo that hangs must not hang the test run
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if line.startswith("Demo: open "):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(90), "".join(output)
        assert f"Demo: open http://127.0.0.1:{port} in a browser (Ctrl+C stops it).\n" in output
        assert any(line.startswith("Seeded the demo: 10,000 cards") for line in output), output
        yield f"http://127.0.0.1:{port}"
        process.send_signal(signal.SIGINT)  # Ctrl+C
        assert process.wait(timeout=30) == 0, "".join(output)
        reader.join(5)
        assert "Traceback" not in "".join(output), "".join(output)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def pane(page: Page, role: str) -> Locator:
    return page.locator(f"#pane-{role}")


async def say(page: Page, role: str, text: str) -> None:
    box = pane(page, role).locator("textarea")
    await box.fill(text)
    await box.press("Enter")


async def last_bot_message(page: Page, role: str, containing: str) -> Locator:
    message = pane(page, role).locator(".msg.in", has_text=containing).last
    await expect(message).to_be_visible(timeout=WAIT_MS)
    return message


async def purchases_in_stats(page: Page, count: int) -> int:
    """/stats in the owner's chat (Russian): the purchases figure of the `count`-th answer (not
    of the weekly digest, which the scheduler may send there too)."""
    label = tr("Purchases", "ru")
    title = re.sub(r"<[^>]+>", "", tr("<b>Program KPIs</b> for {period}", "ru")).split("{")[0]
    stats = pane(page, "owner").locator(".msg.in", has_text=title)
    await expect(stats).to_have_count(count, timeout=WAIT_MS)
    text = await stats.nth(count - 1).inner_text()
    found = re.search(rf"^{label}: ([\d\s\u00a0\u202f]+)", text, re.MULTILINE)
    assert found, text
    return int(re.sub(r"\D", "", found.group(1)))


async def sell(page: Page, amount: str) -> None:
    """The cashier (Estonian) answers the amount prompt and confirms with ✅."""
    staff = pane(page, "staff")
    await expect(staff.locator(".reply-bar")).to_be_visible(timeout=WAIT_MS)
    await say(page, "staff", amount)
    confirm = staff.locator(".inline-btn", has_text=tr("✅ Confirm", "et")).last
    await confirm.click(timeout=WAIT_MS)


async def test_a_newcomer_runs_the_whole_loop_in_the_browser(demo_url: str) -> None:
    assert async_playwright is not None and CHROMIUM is not None, "install Chromium and Playwright"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1500, "height": 950})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(demo_url)
        await page.locator("#page-language").select_option("en")
        await expect(pane(page, "staff").locator("h2")).to_have_text("Staff group")
        card = re.search(r"\d{6}", await page.locator("#steps li").first.inner_text())
        assert card, "the walkthrough names a card in stock"

        await pane(page, "customer").locator("select.language").select_option("en")
        await pane(page, "staff").locator("select.language").select_option("et")
        await say(page, "owner", "/stats")
        before = await purchases_in_stats(page, 1)
        assert before > 0  # the seeded year shows at once

        # The customer joins in English and gets the card image.
        await say(page, "customer", "/start")
        consent = await last_bot_message(page, "customer", "I agree")
        await consent.locator(".inline-btn", has_text=tr("✅ I agree", "en")).click()
        await say(page, "customer", card.group())
        image = pane(page, "customer").locator("img.photo").last
        await expect(image).to_be_visible(timeout=WAIT_MS)

        # The cashier pastes the QR's payload (what a USB scanner types) into the staff group.
        src = await image.get_attribute("src")
        assert src
        png = await (await page.request.get(demo_url + src)).body()
        (qr,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
        await say(page, "staff", qr.text)
        await sell(page, "2500")
        recorded = tr("✅ Purchase #{id} recorded", "et").split("{id}")[0]
        receipts = pane(page, "staff").locator(".msg.in", has_text=recorded)
        await expect(receipts).to_have_count(1, timeout=WAIT_MS)
        notice = tr("Purchase {amount}: discount {pct}, you saved {saved}.", "en")
        await last_bot_message(page, "customer", notice.split("{amount}")[0])

        # Then scans the card image itself: dragged from the customer's chat into the group.
        await image.drag_to(pane(page, "staff").locator(".messages"))
        await sell(page, "1000")
        await expect(receipts).to_have_count(2, timeout=WAIT_MS)

        # The Mini App opens inside the page: the customer's live card, and the owner's till
        # whose phone scanner sees it.
        await pane(page, "customer").locator(".app-button").click()
        card_app = page.frame_locator("#pane-customer iframe")
        await expect(card_app.locator(".qr svg")).to_be_visible(timeout=WAIT_MS)
        await pane(page, "owner").locator(".app-button").click()
        till = page.frame_locator("#pane-owner iframe")
        await till.locator('[data-tab="till"]').click(timeout=WAIT_MS)
        await till.locator("#scan").click()
        await pane(page, "owner").locator(".scan-live").click()
        for key in "1200":
            await till.locator(f'.key[data-key="{key}"]').click(timeout=WAIT_MS)
        await till.locator("#quote").click()
        await till.locator("#confirm").click(timeout=WAIT_MS)
        await expect(till.locator("#receipt")).to_be_visible(timeout=WAIT_MS)
        await pane(page, "owner").locator(".webapp button").click()  # ✕
        staff_log = pane(page, "staff").locator(".msg.in", has_text="Oleg")
        await expect(staff_log).to_have_count(1, timeout=WAIT_MS)

        await say(page, "owner", "/stats")
        assert await purchases_in_stats(page, 2) == before + 3

        # The export is a document in the owner's chat; the page downloads it as a file.
        await say(page, "owner", "/export")
        link = pane(page, "owner").locator("a.document").last
        await expect(link).to_be_visible(timeout=WAIT_MS)
        async with page.expect_download() as download_info:
            await link.click()
        download = await download_info.value
        assert download.suggested_filename.endswith(".xlsx")
        data = await asyncio.to_thread(Path(await download.path()).read_bytes)
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
        rows = {sheet.title: sum(1 for _ in sheet.iter_rows()) for sheet in workbook.worksheets}
        assert max(rows.values()) > 1000, rows  # a year of purchases
        if shot := os.environ.get("DEMO_SCREENSHOT"):  # the README's picture
            await page.locator("#steps").evaluate("s => s.scrollIntoView()")
            await page.evaluate(
                "document.querySelectorAll('.messages').forEach(m => m.scrollTop = 1e9)"
            )
            await page.screenshot(path=shot)
        assert errors == []
        await browser.close()
