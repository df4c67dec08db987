"""Benchmark: the Mini App's live card in headless Chromium on the loopback, against a floor.

    .venv/bin/python -m bench.miniapp_paint [--loads 20]

The real Mini App (bot/miniapp) of a real Bot and Dispatcher, over a migrated SQLite file with
one bound customer, is served by aiohttp on 127.0.0.1; Chromium (the Debian package, through
Playwright) opens the card page as Telegram would, with a stub `window.Telegram.WebApp`
carrying signed initData, in a fresh browser context each time (nothing cached). The floor is
a one-line HTML page served by the same server in the same process, loaded the same way.

Reported, median and max over the loads: the page's first contentful paint (the browser's own
`first-contentful-paint` entry; target ≤ 300 ms), the moment the card is usable (the number and
the live QR on screen: the page, its script, /api/me, /api/card and /api/card/qr), the floor's
first paint, and what the card page transfers in all (target ≤ 150 KB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from playwright.async_api import Browser, async_playwright
from sqlalchemy import update

from bench.sale_flow import FIRST_CUSTOMER, make_settings, seed
from bot.app import create_bot, create_dispatcher
from bot.demo.emulator import FakeTelegram
from bot.miniapp import mini_app
from bot.miniapp.auth import sign_init_data
from db.engine import create_engine, create_sessionmaker
from db.models import Client
from tests.servers import free_port

# Records when the card's QR first appears (a MutationObserver, not polling from outside).
_WATCH = """
new MutationObserver((_, observer) => {
  if (document.querySelector('.qr svg')) {
    window.__cardShown = performance.now();
    observer.disconnect();
  }
}).observe(document, {subtree: true, childList: true});
"""


def _stub(init_data: str) -> str:
    return (
        "window.Telegram = {WebApp: {"
        f"initData: {json.dumps(init_data)}, initDataUnsafe: {{}}, themeParams: {{}},"
        "ready() {}, expand() {}, onEvent() {}, isVersionAtLeast: () => false}};" + _WATCH
    )


async def _load(browser: Browser, url: str, script: str | None, ready: str) -> dict[str, float]:
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = await context.new_page()
        if script:
            await page.add_init_script(script)
        await page.goto(url)
        await page.wait_for_selector(ready)
        await page.wait_for_function(
            "performance.getEntriesByName('first-contentful-paint').length > 0"
        )
        return await page.evaluate(
            """() => ({
              fcp: performance.getEntriesByName('first-contentful-paint')[0].startTime,
              shown: window.__cardShown || 0,
              bytes: performance.getEntries().filter(e => 'transferSize' in e)
                .reduce((sum, e) => sum + (e.transferSize || e.encodedBodySize), 0),
            })"""
        )
    finally:
        await context.close()


async def main(loads: int) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("error: needs Chromium (apt install chromium)")
    with tempfile.TemporaryDirectory() as folder:
        db_url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        await seed(db_url, 1)
        async with FakeTelegram() as tg:
            settings = make_settings(db_url, tg.base_url).with_changes(
                miniapp_url="https://shop.example/app/"
            )
            engine = create_engine(db_url)
            async with engine.begin() as connection:  # the customer agreed to today's policy
                await connection.execute(
                    update(Client).values(consent_version=settings.privacy.policy_version)
                )
            bot = create_bot(settings)
            dp = create_dispatcher(settings, create_sessionmaker(engine))
            app = web.Application()
            mini_app(bot, dp, settings).install(app)
            app.router.add_get(
                "/floor", lambda _r: web.Response(text="<p>100 045</p>", content_type="text/html")
            )
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            base = f"http://127.0.0.1:{port}"
            user = {"id": FIRST_CUSTOMER, "first_name": "Bench", "language_code": "ru"}
            token = settings.telegram.bot_token.get_secret_value()
            card, floor = [], []
            try:
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(
                        executable_path=chromium, args=["--no-sandbox"]
                    )
                    stub = _stub(sign_init_data(token, user, datetime.now(UTC)))
                    await _load(browser, base + "/app/", stub, ".qr svg")  # warm-up
                    for _ in range(loads):  # alternated: a busy moment weighs on both
                        card.append(await _load(browser, base + "/app/", stub, ".qr svg"))
                        floor.append(await _load(browser, base + "/floor", None, "p"))
                    await browser.close()
            finally:
                await runner.cleanup()
                await bot.session.close()
                await engine.dispose()
    _report("card page: first paint", [m["fcp"] for m in card])
    _report("card page: number and QR shown", [m["shown"] for m in card])
    _report("floor (one-line page): first paint", [m["fcp"] for m in floor])
    ratio = statistics.median(m["fcp"] for m in card) / statistics.median(m["fcp"] for m in floor)
    print(f"first paint, card / floor (medians): {ratio:.2f}x")
    print(f"card page transfer: {max(m['bytes'] for m in card) / 1024:.1f} KB (target <= 150 KB)")


def _report(what: str, values: list[float]) -> None:
    print(f"{what}: median {statistics.median(values):.0f} ms, max {max(values):.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=20, help="page loads of each (20)")
    asyncio.run(main(parser.parse_args().loads))
