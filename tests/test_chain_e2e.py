"""A chain of two shops from start to end, through the fake Bot API, in ru, en and et: the owner
adds a branch from the command line, a cashier of each shop sells on the same card in their own
staff group, each sale lands in its branch's group and its branch's figures, and each manager
sees their own branch only; the customer's history names the shop of each purchase."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeMessage, FakeTelegram
from handlers import formatting as fmt
from services.branches import MAIN_BRANCH_ID, BranchChanges, BranchDraft
from tests.branch_helpers import (
    BRANCH_B,
    BRANCH_B_CHAT,
    CASHIER_B,
    MANAGER_A,
    MANAGER_B,
    branch_service,
    cashier_of,
    group_of,
    heading,
    sell_in_group,
    tr,
)
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
from tests.miniapp_helpers import Client, init_data, miniapp_server
from tests.till_helpers import purchases, seed_bound

# Two groups' receipts in a few seconds: not paced like Telegram's 20 a minute per group.
FAST_GROUPS = {"delivery_rate_group_per_min": 1200}


@pytest.fixture
async def app(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> AsyncIterator[App]:
    settings = make_settings(db_url, **FAST_GROUPS)
    async with running_app(tg, settings, sessionmaker, clock) as application:
        yield application


def _line(message: FakeMessage, label: str) -> str:
    found = [x for x in (message.text or "").splitlines() if x.startswith(label + ":")]
    assert found, (label, message.text)
    return found[0]


def _figures(message: FakeMessage, language: str, app: App, purchases: int, revenue: int) -> None:
    """The /stats message shows these purchases and this revenue."""
    bought = _line(message, tr(language, "Purchases"))
    assert bought.startswith(f"{tr(language, 'Purchases')}: {fmt.number(purchases, language)}")
    label = tr(language, "Revenue through cards")
    money = fmt.money(revenue, app.settings, language)
    assert _line(message, label).startswith(f"{label}: {money}")


@pytest.mark.parametrize("language", ["ru", "en", "et"])
async def test_two_shops_sell_one_card_and_each_sees_its_own(app: App, language: str) -> None:
    await seed_bound(app.sessionmaker, "100045", 5)
    # What `python -m bot branches add` and `edit` do (tests/test_cli_branches.py drives them).
    tartu = await branch_service(app).add(
        BranchDraft(name=BRANCH_B, staff_chat_id=BRANCH_B_CHAT, managers=(MANAGER_B,))
    )
    main = await branch_service(app).edit("Test Store", BranchChanges(managers=(MANAGER_A,)))
    olga = cashier_of(app, main, CASHIER_ID, "Olga", language)
    bert = cashier_of(app, tartu, CASHIER_B, "Bert", language)

    # The same card at each shop's till: the card's own 5 % in both.
    receipt_a = await sell_in_group(app, main, olga, "100045", "2500")
    receipt_b = await sell_in_group(app, tartu, bert, "100045", "1000")
    assert receipt_a.chat_id == STAFF_CHAT_ID and receipt_b.chat_id == BRANCH_B_CHAT
    assert group_of(app, main).messages() and group_of(app, tartu).messages()
    assert not any("Bert" in (m.text or "") for m in group_of(app, main).messages())
    assert not any("Olga" in (m.text or "") for m in group_of(app, tartu).messages())
    ledger = [(p.branch_id, p.amount, p.discount_amount) for p in await purchases(app.sessionmaker)]
    assert ledger == [(MAIN_BRANCH_ID, 250_000, 12_500), (tartu.id, 100_000, 5_000)]

    # The owner: the whole chain, then each shop with the switch.
    owner = app.tg.user(OWNER_ID, "Ivan", language_code=language)
    await owner.send("/stats")
    stats = await owner.wait_message(heading(language, "<b>Program KPIs</b> for {period}"))
    _figures(stats, language, app, 2, 350_000)
    await owner.press(stats, BRANCH_B)
    edited = await owner.wait_message(lambda m: m.edited and BRANCH_B in (m.text or ""))
    assert edited.message_id == stats.message_id
    _figures(edited, language, app, 1, 100_000)
    await owner.press(edited, "Test Store")
    edited = await owner.wait_message(lambda m: m.edited and "Test Store" in (m.text or ""))
    _figures(edited, language, app, 1, 250_000)

    # Each manager: their own shop's figures, nothing of the other's.
    for manager_id, own, other, revenue in (
        (MANAGER_A, "Test Store", BRANCH_B, 250_000),
        (MANAGER_B, BRANCH_B, "Test Store", 100_000),
    ):
        manager = app.tg.user(manager_id, "Mari", language_code=language)
        await manager.send("/stats")
        mine = await manager.wait_message(heading(language, "<b>Program KPIs</b> for {period}"))
        assert own in (mine.text or "") and other not in (mine.text or "")
        _figures(mine, language, app, 1, revenue)
        assert other not in [b["text"] for b in mine.buttons]

    # The customer's history says where each purchase was made, in the chat and the Mini App.
    customer = app.tg.user(CUSTOMER_ID, "Anna", language_code=language)
    await customer.send("/history")
    history = await customer.wait_message(lambda m: "📍" in (m.text or ""))
    assert [x.split("📍 ")[-1] for x in history.text.splitlines() if "📍" in x] == [
        BRANCH_B,
        "Test Store",
    ]
    async with miniapp_server(app) as base, aiohttp.ClientSession() as http:
        status, card = await Client(http, base, init_data(app, CUSTOMER_ID, "Anna")).get("card")
    assert status == 200
    assert [p["shop"] for p in card["recent"]] == [BRANCH_B, "Test Store"]
