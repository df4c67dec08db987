"""The Mini App's API: Telegram's signed initData on every call (401 without a valid, fresh
one, and nothing read or written), the chat's roles (403), a till that records a sale exactly
once through the chat till's own service, and the menu button and live-card link the bot sets
up when MINIAPP_URL is set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeTelegram
from bot.miniapp.auth import sign_init_data
from db.models import Purchase, SaleDraft
from tests.conftest import (
    CASHIER_ID,
    CUSTOMER_ID,
    OWNER_ID,
    STAFF_CHAT_ID,
    App,
    FrozenClock,
    make_settings,
    running_app,
)
from tests.miniapp_helpers import MINIAPP_URL, Client, init_data, miniapp_server
from tests.test_webhook import running_hook
from tests.till_helpers import count, seed_bound, staff_log_lines
from tests.wallet_helpers import eventually

STRANGER = 4242


@pytest.fixture
async def miniapp(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> AsyncIterator[tuple[App, str, aiohttp.ClientSession]]:
    settings = make_settings(db_url, miniapp_url=MINIAPP_URL)
    async with (
        running_app(tg, settings, sessionmaker, clock) as app,
        miniapp_server(app) as base,
        aiohttp.ClientSession() as http,
    ):
        yield app, base, http


def client(env: tuple[App, str, aiohttp.ClientSession], user_id: int, **kwargs: object) -> Client:
    app, base, http = env
    return Client(http, base, init_data(app, user_id, **kwargs))  # type: ignore[arg-type]


async def test_without_valid_fresh_init_data_nothing_is_read_or_written(miniapp) -> None:  # type: ignore[no-untyped-def]
    app, base, http = miniapp
    await seed_bound(app.sessionmaker)
    token = app.settings.telegram.bot_token.get_secret_value()
    user = {"id": OWNER_ID, "first_name": "Owner"}
    stale = app.clock() - timedelta(seconds=app.settings.miniapp.auth_ttl_sec + 1)
    genuine = init_data(app, OWNER_ID)
    callers = {
        "missing": Client(http, base, None),
        "forged": Client(http, base, sign_init_data("999:OTHER", user, app.clock())),
        "stale": Client(http, base, sign_init_data(token, user, stale)),
        "tampered": Client(http, base, genuine.replace(f"%22id%22%3A{OWNER_ID}", "%22id%22%3A7")),
        "not tma": Client(http, base, None),
    }
    callers["not tma"].headers = {"Authorization": f"Bearer {genuine}"}
    for name, caller in callers.items():
        for path in ("me", "card", "card/qr", "dashboard", "export"):
            assert (await caller.get(path))[0] == 401, (name, path)
        status, body = await caller.post("till/identify", {"text": "100045"})
        assert (status, body["error"]) == (401, "unauthorized"), name
        assert body["message"] == "Откройте эту страницу из меню бота в Telegram."
        assert (await caller.post("till/quote", {"card_id": 1, "amount": "2500"}))[0] == 401
    assert await count(app.sessionmaker, SaleDraft) == 0
    # The genuine one works.
    assert (await Client(http, base, genuine).get("me"))[1]["role"] == "owner"


async def test_roles_are_the_chats(miniapp) -> None:  # type: ignore[no-untyped-def]
    await seed_bound(miniapp[0].sessionmaker)
    customer, cashier, owner = (
        client(miniapp, CUSTOMER_ID, language="et"),
        client(miniapp, CASHIER_ID),
        client(miniapp, OWNER_ID),
    )
    me = (await customer.get("me"))[1]
    assert (me["role"], me["language"]) == ("customer", "et")  # the client's stored language
    assert me["texts"]["tab_card"] != "My card"  # in Estonian
    assert (await cashier.get("me"))[1]["role"] == "cashier"
    for path in ("dashboard", "export"):
        assert (await customer.get(path))[0] == 403
        assert (await cashier.get(path))[0] == 403
        assert (await owner.get(path))[0] == 200
    for path, body in (("till/identify", {"text": "100045"}), ("till/void", {"purchase_id": 1})):
        status, answer = await customer.post(path, body)
        assert (status, answer["message"]) == (403, "See pole sulle saadaval.")
    assert (await client(miniapp, STRANGER).get("card"))[0] == 404  # not a member yet
    assert await count(miniapp[0].sessionmaker, SaleDraft) == 0


async def test_the_till_records_a_sale_exactly_once(miniapp) -> None:  # type: ignore[no-untyped-def]
    app, _base, _http = miniapp
    await seed_bound(app.sessionmaker)
    cashier = client(miniapp, CASHIER_ID, name="Kate")
    status, card = await cashier.post("till/identify", {"text": "100 045"})
    assert status == 200 and "100 045" in card["html"]
    status, refused = await cashier.post(
        "till/quote", {"card_id": card["card_id"], "amount": "lots"}
    )
    assert status == 409 and refused["message"].startswith("That is not an amount")
    status, draft = await cashier.post("till/quote", {"card_id": card["card_id"], "amount": "2500"})
    assert status == 200 and "2,375" in draft["html"]  # 5 %: to pay ₽2,375

    # Two devices (or a double tap) confirm the same quote at once: one purchase.
    answers = await asyncio.gather(
        *(cashier.post("till/confirm", {"draft_id": draft["draft_id"]}) for _ in range(3))
    )
    assert all(status == 200 for status, _ in answers)
    assert sorted(body["already"] for _, body in answers) == [False, True, True]
    assert len({body["purchase_id"] for _, body in answers}) == 1
    async with app.sessionmaker() as session:
        (purchase,) = (await session.scalars(select(Purchase))).all()
    assert (purchase.amount, purchase.paid_amount, purchase.cashier_id) == (
        250000,
        237500,
        CASHIER_ID,
    )

    # The staff group hears of it, as of a sale rung up in a private chat.
    group = app.tg.group(STAFF_CHAT_ID)

    async def logged() -> bool:
        return any("100 045" in line and "Kate" in line for line in staff_log_lines(group))

    await eventually(logged)

    status, voided = await cashier.post("till/void", {"purchase_id": purchase.id})
    assert status == 200 and voided["note"] == "Voided."
    status, again = await cashier.post("till/void", {"purchase_id": purchase.id})
    assert status == 409 and "already voided" in again["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("till/identify", {"text": ""}),
        ("till/identify", {"text": 100045}),
        ("till/identify", ["100045"]),
        ("till/quote", {"card_id": "1", "amount": "2500"}),
        ("till/quote", {"card_id": True, "amount": "2500"}),
        ("till/confirm", {"draft_id": 5}),
        ("till/void", {"purchase_id": -1}),
    ],
)
async def test_malformed_till_calls_are_refused_and_write_nothing(miniapp, path, body) -> None:  # type: ignore[no-untyped-def]
    await seed_bound(miniapp[0].sessionmaker)
    status, answer = await client(miniapp, CASHIER_ID).post(path, body)
    assert status == 400 and answer["error"] == "bad_request"
    assert await count(miniapp[0].sessionmaker, SaleDraft) == 0


async def test_the_bot_offers_the_mini_app_in_private_chats(miniapp) -> None:  # type: ignore[no-untyped-def]
    app, base, http = miniapp
    assert app.tg.menu_button(None) == {
        "type": "web_app",
        "text": "Моя карта",
        "web_app": {"url": MINIAPP_URL},
    }
    await seed_bound(app.sessionmaker)
    customer = app.tg.user(CUSTOMER_ID)
    await customer.send("/card")
    card = await customer.wait_message(lambda m: m.method == "sendPhoto")
    (live,) = [button for button in card.buttons if "web_app" in button]
    assert live["web_app"] == {"url": MINIAPP_URL + "?view=card"}
    async with http.get(base) as response:  # the page itself needs no initData
        assert response.status == 200 and "static/app.js" in await response.text()


async def test_webhook_mode_serves_the_mini_app_on_the_webhooks_server(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> None:
    async with running_hook(tg, db_url, sessionmaker, clock, miniapp_url=MINIAPP_URL) as hook:
        page = await hook.get("/app/")
        assert page.status == 200 and page.content_type == "text/html"
        assert (await hook.get("/app/static/app.js")).status == 200
        assert (await hook.get("/app/api/me")).status == 401  # no initData
    async with running_hook(tg, db_url, sessionmaker, clock) as hook:  # no MINIAPP_URL
        assert (await hook.get("/app/")).status == 404
