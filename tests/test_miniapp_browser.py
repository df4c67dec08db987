"""The Mini App in a real browser (headless Chromium from the Debian packages, Playwright), with
a stub `window.Telegram.WebApp` carrying correctly signed initData, as Telegram would give it:

* the customer's live card shows the number and a QR that decodes (zxing-cpp) to a payload the
  till accepts, and a different one after a rotation;
* the cashier's till records a sale exactly once, double tap included, by the typed number and
  by the phone's scanner (showScanQrPopup);
* the owner's dashboard shows the figures `python -m bot kpi --json` gives;
* in a chain, the owner switches the dashboard between the whole chain and each branch (the
  period chips keep the branch), and a branch manager is offered their branch only;
* the page and everything it loads weigh under 150 KB.

Screenshots for the README: MINIAPP_SCREENSHOTS=docs .venv/bin/pytest tests/test_miniapp_browser.py
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeTelegram
from config import PROJECT_ROOT
from db.models import Purchase
from handlers import formatting as fmt
from services import qr_payload
from services.sales import SalesService
from tests.branch_helpers import BRANCH_B, MANAGER_A, seed_chain, seed_sales
from tests.conftest import (
    CASHIER_ID,
    CUSTOMER_ID,
    OWNER_ID,
    App,
    FrozenClock,
    make_settings,
    on_postgres,
    running_app,
)
from tests.miniapp_helpers import MINIAPP_URL, init_data, miniapp_server
from tests.till_helpers import seed_bound
from tests.wallet_helpers import add_purchase

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # pragma: no cover - a dev extra
    async_playwright = None  # type: ignore[assignment]

if (CHROMIUM is None or async_playwright is None) and not os.environ.get("REQUIRE_BROWSER"):
    pytestmark = pytest.mark.skip(reason="needs Chromium (apt install chromium) and Playwright")

WAIT_MS = 10_000
SHOTS = os.environ.get("MINIAPP_SCREENSHOTS")


@pytest.fixture
async def served(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> AsyncIterator[tuple[App, str]]:
    settings = make_settings(db_url, miniapp_url=MINIAPP_URL)
    async with running_app(tg, settings, sessionmaker, clock) as app, miniapp_server(app) as base:
        yield app, base


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert async_playwright is not None and CHROMIUM is not None, "install Chromium and Playwright"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


async def opened(
    browser: Browser, app: App, base: str, user_id: int, name: str, view: str = ""
) -> Page:
    """The Mini App as Telegram opens it for `user_id`: a phone-sized page whose
    window.Telegram.WebApp (a stub) carries initData signed with the bot's token."""
    data = init_data(app, user_id, name=name)
    user = {"id": user_id, "first_name": name, "language_code": "en"}
    page = await browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors  # type: ignore[attr-defined]
    await page.add_init_script(
        "window.__scan = null; window.Telegram = {WebApp: {"
        f"initData: {json.dumps(data)}, initDataUnsafe: {{user: {json.dumps(user)}}},"
        "themeParams: {bg_color: '#ffffff', text_color: '#000000', button_color: '#3390ec',"
        " button_text_color: '#ffffff', secondary_bg_color: '#f1f1f4', hint_color: '#707579'},"
        "platform: 'android', version: '8.0', isVersionAtLeast: () => true,"
        "ready() { window.__ready = true; }, expand() {}, onEvent() {}, offEvent() {},"
        "showScanQrPopup(params, callback) { window.__scan = callback; },"
        "closeScanQrPopup() {}, addToHomeScreen() {}}};"
    )
    await page.goto(base + (f"?view={view}" if view else ""))
    return page


async def shot(page: Page, name: str) -> None:
    if SHOTS:
        await page.screenshot(path=str(Path(SHOTS) / f"miniapp-{name}.png"))


async def test_the_live_card_shows_a_qr_the_till_accepts_and_rotates(served, browser) -> None:  # type: ignore[no-untyped-def]
    app, base = served
    await seed_bound(app.sessionmaker)
    rotate = app.settings.miniapp.qr_rotate_sec
    start = app.clock()
    app.clock.set(start + timedelta(seconds=rotate - 2 - start.timestamp() % rotate))
    page = await opened(browser, app, base, CUSTOMER_ID, "Anna")
    await expect(page.locator("#card-number")).to_have_text("100 045", timeout=WAIT_MS)
    qr = page.locator(".qr")
    await expect(qr.locator("svg")).to_be_visible(timeout=WAIT_MS)
    first = await qr.get_attribute("data-payload")
    assert first and await page.evaluate("window.__ready") is True
    (decoded,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(await qr.screenshot())))
    assert decoded.text.endswith(f"?start={first}")
    sales = SalesService(app.db, app.settings, app.clock)
    assert (await sales.identify_payload(decoded.text.rsplit("=", 1)[1])).number == "100045"
    await shot(page, "card")

    app.clock.advance(seconds=3)  # the next time step: the page fetches a new code
    await expect(qr).not_to_have_attribute("data-payload", first, timeout=WAIT_MS)
    second = await qr.get_attribute("data-payload")
    assert second and second != first
    assert (await sales.identify_payload(second)).number == "100045"
    assert page.errors == []  # type: ignore[attr-defined]


async def test_the_till_records_a_sale_exactly_once(served, browser) -> None:  # type: ignore[no-untyped-def]
    app, base = served
    await seed_bound(app.sessionmaker)
    page = await opened(browser, app, base, CASHIER_ID, "Kate")
    await page.locator("#till-input").fill("100045")
    await page.locator("#till-input").press("Enter")
    for key in "2500":
        await page.locator(f'.key[data-key="{key}"]').click(timeout=WAIT_MS)
    await expect(page.locator("#amount")).to_have_text("2500")
    await page.locator("#quote").click()
    await expect(page.locator("#confirm")).to_be_visible(timeout=WAIT_MS)
    await shot(page, "till")
    await page.locator("#confirm").dblclick()  # a double tap
    await expect(page.locator("#receipt")).to_contain_text("2,375", timeout=WAIT_MS)
    async with app.sessionmaker() as session:
        sales = (await session.scalars(select(Purchase))).all()
    assert [(p.amount, p.paid_amount, p.cashier_id) for p in sales] == [
        (250000, 237500, CASHIER_ID)
    ]

    # The next customer shows the live card to the phone's scanner.
    await page.get_by_role("button", name="Next customer").click()
    await expect(page.locator("#scan")).to_be_visible()
    await page.locator("#scan").click()
    secret = app.settings.telegram.secret_key.get_secret_value()
    live = qr_payload.sign_live(
        secret, "100045", qr_payload.time_step(app.clock(), app.settings.miniapp.qr_rotate_sec)
    )
    await page.evaluate("(text) => window.__scan(text)", f"https://t.me/bot?start={live}")
    await expect(page.locator(".keypad")).to_be_visible(timeout=WAIT_MS)
    assert page.errors == []  # type: ignore[attr-defined]


async def test_the_dashboard_shows_what_kpi_json_gives(served, browser, db_url) -> None:  # type: ignore[no-untyped-def]
    app, base = served
    await seed_bound(app.sessionmaker)
    now = app.clock()
    for days, amount in ((1, 250000), (2, 120000), (3, 99000), (9, 50000)):
        await add_purchase(app.sessionmaker, "100045", amount, 5, now - timedelta(days=days))
    page = await opened(browser, app, base, OWNER_ID, "Oleg")
    await expect(page.locator('.tile[data-key="purchases"] .value')).to_have_text(
        "3", timeout=WAIT_MS
    )
    await shot(page, "dashboard")
    today = now.astimezone(app.settings.store.tz).date()
    first, last = today - timedelta(days=7), today - timedelta(days=1)
    figures = kpi_json(db_url, first.isoformat(), last.isoformat())
    for key in ("purchases", "active_cards", "new_buyers", "cards_issued"):
        shown = await page.locator(f'.tile[data-key="{key}"] .value').inner_text()
        assert int(re.sub(r"\D", "", shown)) == figures[key], key
    revenue = await page.locator('.tile[data-key="revenue"] .value').inner_text()
    # en: "₽4,690" or "₽4,690.50"; the JSON has major units
    assert Decimal(re.sub(r"[^\d.]", "", revenue)) == Decimal(str(figures["revenue"])), revenue
    async with page.expect_download() as download:
        await page.locator("#export").click()
    assert (await download.value).suggested_filename.endswith(".xlsx")
    assert page.errors == []  # type: ignore[attr-defined]


async def test_the_owner_switches_the_dashboard_between_branches(served, browser) -> None:  # type: ignore[no-untyped-def]
    """The data of `tests/test_miniapp_branches.py`: 7 days, the chain ₽7,200, Test Store
    ₽1,200, Tartu ₽6,000; 30 days, Tartu ₽8,000, Test Store ₽2,700."""
    app, base = served
    await seed_sales(app.sessionmaker, await seed_chain(app, managers_a=[MANAGER_A]))
    page = await opened(browser, app, base, OWNER_ID, "Oleg")
    revenue = page.locator('.tile[data-key="revenue"] .value')
    switch = page.locator("select#branch")
    await expect(revenue).to_have_text(money(app, 720_000), timeout=WAIT_MS)
    await expect(switch.locator("option")).to_have_text(["All branches", "Test Store", BRANCH_B])
    await expect(switch).to_have_value("0")

    await switch.select_option(label=BRANCH_B)
    await expect(revenue).to_have_text(money(app, 600_000), timeout=WAIT_MS)
    await expect(page.locator('.tile[data-key="purchases"] .value')).to_have_text("3")
    await shot(page, "dashboard-branch")
    await page.get_by_role("button", name="30 days").click()  # the period keeps the branch
    await expect(revenue).to_have_text(money(app, 800_000), timeout=WAIT_MS)
    await expect(page.locator("select#branch option:checked")).to_have_text(BRANCH_B)
    await switch.select_option(label="Test Store")  # the branch keeps the period
    await expect(revenue).to_have_text(money(app, 270_000), timeout=WAIT_MS)
    await expect(page.locator(".period.active")).to_have_text("30 days")
    await switch.select_option(label="All branches")
    await expect(revenue).to_have_text(money(app, 1_070_000), timeout=WAIT_MS)
    await expect(page.locator("#export")).to_be_visible()
    assert page.errors == []  # type: ignore[attr-defined]


async def test_a_manager_is_offered_their_branch_only(served, browser) -> None:  # type: ignore[no-untyped-def]
    app, base = served
    await seed_sales(app.sessionmaker, await seed_chain(app, managers_a=[MANAGER_A]))
    page = await opened(browser, app, base, MANAGER_A, "Mari")
    revenue = page.locator('.tile[data-key="revenue"] .value')
    await expect(revenue).to_have_text(money(app, 120_000), timeout=WAIT_MS)
    await expect(page.locator("#tabs button")).to_have_text(["Dashboard", "Till", "My card"])
    await expect(page.locator("select#branch option")).to_have_text(["Test Store"])
    await expect(page.locator("#export")).to_have_count(0)  # the export is the owner's
    assert BRANCH_B not in await page.locator("#view").inner_text()
    await page.get_by_role("button", name="30 days").click()
    await expect(revenue).to_have_text(money(app, 270_000), timeout=WAIT_MS)
    await page.get_by_role("button", name="Till").click()
    await expect(page.locator("#till-input")).to_be_visible()
    assert page.errors == []  # type: ignore[attr-defined]


def money(app: App, minor: int) -> str:
    return fmt.money(minor, app.settings, "en")


def kpi_json(db_url: str, first: str, last: str) -> dict[str, Any]:
    if on_postgres():
        pytest.skip("compared on the SQLite file")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "kpi", "--from", first, "--to", last, "--json"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


async def test_the_page_weighs_under_150_kb(served, browser) -> None:  # type: ignore[no-untyped-def]
    app, base = served
    await seed_bound(app.sessionmaker)
    page = await opened(browser, app, base, CUSTOMER_ID, "Anna")
    await expect(page.locator(".qr svg")).to_be_visible(timeout=WAIT_MS)
    loaded = await page.evaluate(
        "performance.getEntries().filter(e => 'transferSize' in e)"
        ".map(e => [e.name, e.transferSize || e.encodedBodySize])"
    )
    total = sum(size for _name, size in loaded)
    assert 0 < total <= 150 * 1024, loaded
    assert not [name for name, _ in loaded if not name.startswith("http://127.0.0.1")]
