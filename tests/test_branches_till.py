"""The till in a chain (end to end, fake Bot API): each sale belongs to its branch, its staff-log
line goes to that branch's group, a cashier of several shops is asked once and switches with
/branch, managers void their branches' sales only; a one-shop install never hears of branches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.commands.run import warn_about_missing_roles
from bot.demo.emulator import Call, FakeMessage, FakeTelegram, FakeUser
from bot.menus import register_commands
from db.models import Purchase, SaleDraft, StaffBranch
from handlers import roles
from services.branches import MAIN_BRANCH_ID
from services.sales import NotYourDraft, SalesService, VoidNotAllowed
from tests.branch_helpers import (
    BRANCH_B,
    CASHIER_AB,
    CASHIER_B,
    MANAGER_A,
    MANAGER_B,
    Chain,
    branch_service,
    button_with,
    cashier_of,
    group_of,
    is_branch_choice,
    is_prompt,
    is_quote,
    is_receipt,
    quote_in_group,
    seed_chain,
    sell_in_group,
    sell_in_private,
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
from tests.till_helpers import purchases, seed_bound, seed_card

LANGUAGES = ["ru", "en", "et"]
# Two groups' receipts and log lines in a few seconds: Telegram's 20 a minute per group would
# make the log lines wait for their slots (the delivery's pacing is tested elsewhere).
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


BRANCH_WORDS = ("branch", "филиал", "filiaal", "🏪")  # 🏪: the shop line of a chain


def _log_lines(app: App, chat_id: int) -> list[str]:
    """The staff-log lines (a sale's 🧾, a void's ↩️) the bot posted in a group."""
    return [
        line
        for m in app.tg.messages_in(chat_id)
        for line in (m.text or "").splitlines()
        if line.startswith(("🧾", "↩️ #", "↩️ №"))
    ]


async def _seen_in(app: App, chain: Chain, user: FakeUser) -> None:
    """The cashier writes once in branch B's group: from then on the bot knows they work
    there (the first shop's group is always asked)."""
    await group_of(app, chain.b).send(user, "👋")
    await app.tg.wait_for_idle(quiet=0.1)


async def _purchase_branches(app: App) -> list[tuple[int, int]]:
    return [(p.branch_id, p.amount) for p in await purchases(app.sessionmaker)]


# ---------------------------------------------------------------- the main flow, three languages


@pytest.mark.parametrize("language", LANGUAGES)
async def test_one_card_sells_in_both_groups_each_sale_logged_in_its_own(
    app: App, language: str
) -> None:
    await seed_bound(app.sessionmaker, "100045", 5)
    chain = await seed_chain(app)
    olga = cashier_of(app, chain.a, CASHIER_ID, "Olga", language)
    bert = cashier_of(app, chain.b, CASHIER_B, "Bert", language)

    receipt_a = await sell_in_group(app, chain.a, olga, "100045", "2500")
    receipt_b = await sell_in_group(app, chain.b, bert, "100045", "1000")
    assert receipt_a.chat_id == STAFF_CHAT_ID and receipt_b.chat_id == chain.b.staff_chat_id
    assert "100 045" in receipt_a.text and "100 045" in receipt_b.text
    # A sale made in its branch's group: the receipt there is the log, nothing posted elsewhere.
    assert await _purchase_branches(app) == [(MAIN_BRANCH_ID, 250000), (chain.b.id, 100000)]

    # Olga in her private chat sells for her one shop: the line goes to her branch's group.
    receipt = await sell_in_private(olga, "100045", "700")
    assert is_receipt(receipt)
    line = await group_of(app, chain.a).wait_message(lambda m: "Olga" in (m.text or ""))
    assert "100 045" in line.text
    await app.tg.wait_for_idle(quiet=0.1)
    assert [x for x in _log_lines(app, chain.a.staff_chat_id or 0) if "Olga" in x]
    assert _log_lines(app, chain.b.staff_chat_id or 0) == []
    assert (await _purchase_branches(app))[-1] == (MAIN_BRANCH_ID, 70000)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_cashier_of_two_shops_is_asked_once_then_switches_with_branch(
    app: App, language: str
) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    chain = await seed_chain(app)
    anna = cashier_of(app, [chain.a, chain.b], CASHIER_AB, "Anna", language)
    await _seen_in(app, chain, anna)

    # The first sale in private: which shop? Then the scanned card, without scanning again.
    await anna.send("/sale 100045")
    question = await anna.wait_message(is_branch_choice)
    assert [b["text"] for b in question.buttons] == ["Test Store", BRANCH_B]
    await anna.press(question, button_with(f"sellfor:{chain.b.id}"))
    prompt = await anna.wait_message(is_prompt)
    assert "100 045" in prompt.text and BRANCH_B in prompt.text
    await anna.send("1200")
    quote = await anna.wait_message(is_quote)
    assert BRANCH_B in quote.text
    await anna.press(quote, button_with("till:ok:"))
    receipt = await anna.wait_message(is_receipt)
    assert BRANCH_B in receipt.text
    await group_of(app, chain.b).wait_message(lambda m: "Anna" in (m.text or ""))

    # Asked once: the next sale goes straight to the card.
    await sell_in_private(anna, "100045", "1300")
    assert sum(is_branch_choice(m) for m in anna.messages()) == 1

    # /branch shows the shop and switches it; the next sale is the other shop's.
    await anna.send("/branch")
    shown = await anna.wait_message(is_branch_choice)
    assert BRANCH_B in shown.text
    await anna.press(shown, button_with(f"sellfor:{MAIN_BRANCH_ID}"))
    switched = await anna.wait_message(lambda m: "Test Store" in (m.text or ""))
    assert switched.message_id == shown.message_id
    await sell_in_private(anna, "100045", "1400")
    await app.tg.wait_for_idle(quiet=0.1)
    assert await _purchase_branches(app) == [
        (chain.b.id, 120000),
        (chain.b.id, 130000),
        (MAIN_BRANCH_ID, 140000),
    ]
    assert len([x for x in _log_lines(app, STAFF_CHAT_ID) if "Anna" in x]) == 1
    assert len([x for x in _log_lines(app, chain.b.staff_chat_id or 0) if "Anna" in x]) == 2
    # Her private chat's menu now has /branch.
    names = [c["command"] for c in app.tg.commands_for(CASHIER_AB, language)]
    assert "branch" in names and "sale" in names


async def test_the_shop_chosen_survives_cancel_and_a_restart_of_the_conversation(
    app: App,
) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    chain = await seed_chain(app)
    anna = cashier_of(app, [chain.a, chain.b], CASHIER_AB, "Anna")
    await _seen_in(app, chain, anna)
    await anna.send("/sale 100045")
    await anna.press(await anna.wait_message(is_branch_choice), button_with("sellfor:2"))
    await anna.wait_message(is_prompt)
    await anna.send("/cancel")  # the conversation forgets everything; the database does not
    await anna.wait_message()
    await sell_in_private(anna, "100045", "500")
    assert await _purchase_branches(app) == [(chain.b.id, 50000)]
    assert sum(is_branch_choice(m) for m in anna.messages()) == 1


async def test_forged_closed_or_foreign_shop_buttons_are_refused(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    chain = await seed_chain(app)
    olga = cashier_of(app, chain.a, CASHIER_ID, "Olga")  # the first shop only
    anna = cashier_of(app, [chain.a, chain.b], CASHIER_AB, "Anna")
    await _seen_in(app, chain, anna)
    customer = app.tg.user(CUSTOMER_ID, language_code="en")

    answer = await olga.press_data(1, f"sellfor:{chain.b.id}")  # not her shop
    assert answer.params.get("show_alert") and "cannot sell for this shop" in answer.params["text"]
    answer = await anna.press_data(1, "sellfor:999")  # no such shop
    assert "cannot sell for this shop" in answer.params["text"]
    answer = await anna.press_data(1, "sellfor:x")  # not even a number
    assert "cannot sell for this shop" in answer.params["text"]
    answer = await customer.press_data(1, f"sellfor:{MAIN_BRANCH_ID}")  # not staff
    assert "cannot sell for this shop" in answer.params["text"]
    group = group_of(app, chain.a)  # a shop button is a private chat's
    answer = await group.press_data(anna, 1, f"sellfor:{chain.b.id}")
    assert "cannot sell for this shop" in answer.params["text"]

    await branch_service(app).close(BRANCH_B)
    answer = await anna.press_data(1, f"sellfor:{chain.b.id}")  # closed meanwhile
    assert "cannot sell for this shop" in answer.params["text"]

    async with app.sessionmaker() as session:
        chosen = await session.scalars(
            select(StaffBranch.tg_id).where(StaffBranch.chosen_at.is_not(None))
        )
        assert list(chosen) == []
    # Anna now works in one open shop: no question, the sale is the first shop's.
    await sell_in_private(anna, "100045", "900")
    assert await _purchase_branches(app) == [(MAIN_BRANCH_ID, 90000)]
    # A closed branch's group is no till any more.
    await group_of(app, chain.b).send(anna, "100045")
    await app.tg.wait_for_idle(quiet=0.1)
    assert not any(is_prompt(m) for m in app.tg.messages_in(chain.b.staff_chat_id or 0))


# ---------------------------------------------------------------- managers


async def test_a_manager_voids_and_cancels_their_branch_sales_only(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    chain = await seed_chain(app, managers_a=[MANAGER_A])
    olga = cashier_of(app, chain.a, CASHIER_ID, "Olga")
    bert = cashier_of(app, chain.b, CASHIER_B, "Bert")
    manager = app.tg.user(MANAGER_A, "Mia", language_code="en")
    await sell_in_group(app, chain.a, olga, "100045", "2500")
    await sell_in_group(app, chain.b, bert, "100045", "1000")
    sale_a, sale_b = await purchases(app.sessionmaker)
    app.clock.advance(minutes=app.settings.pricing.void_window_min + 5)  # past a cashier's window

    await manager.send(f"/void {sale_b.id}")
    refused = await manager.wait_message()
    assert "You can void only your own purchases" in refused.text
    await manager.send(f"/void {sale_a.id}")
    assert "voided" in (await manager.wait_message()).text
    line = await group_of(app, chain.a).wait_message(lambda m: "Mia" in (m.text or ""))
    assert line.text.startswith("↩️")
    voided = {p.id: p.voided_by for p in await purchases(app.sessionmaker)}
    assert voided == {sale_a.id: MANAGER_A, sale_b.id: None}
    await app.tg.wait_for_idle(quiet=0.1)
    assert not any("Mia" in x for x in _log_lines(app, chain.b.staff_chat_id or 0))

    # An open quote: the manager cancels one of their branch's, not one of another's.
    quote_a = await quote_in_group(group_of(app, chain.a), olga, "100045", "300")
    quote_b = await quote_in_group(group_of(app, chain.b), bert, "100045", "400")
    answer = await manager.press_data(
        quote_b.message_id,
        quote_b.find_button(button_with("till:no:"))["callback_data"],
        chat_id=chain.b.staff_chat_id,
    )
    assert "Only the cashier" in answer.params["text"]
    answer = await manager.press_data(
        quote_a.message_id,
        quote_a.find_button(button_with("till:no:"))["callback_data"],
        chat_id=STAFF_CHAT_ID,
    )
    assert answer.params["text"] == "Cancelled."
    async with app.sessionmaker() as session:
        drafts = {d.amount: d.status for d in await session.scalars(select(SaleDraft))}
    assert drafts[30000] == "cancelled" and drafts[40000] == "open"


async def test_void_and_cancel_scopes_in_the_service(app: App) -> None:
    """`oversight`: True every branch, a set of branch ids those branches, False none."""
    card_id, _ = await seed_card(app.sessionmaker, "100045", 5)
    chain = await seed_chain(app)
    sales = SalesService(app.db, app.settings, app.clock)
    now = app.clock()
    draft_a = await sales.quote(card_id, 1000, CASHIER_ID, CASHIER_ID, now)
    draft_b = await sales.quote(card_id, 2000, CASHIER_B, CASHIER_B, now, branch_id=chain.b.id)
    assert (draft_a.branch_id, draft_b.branch_id) == (MAIN_BRANCH_ID, chain.b.id)
    with pytest.raises(NotYourDraft):
        await sales.cancel(draft_b.id, MANAGER_A, {MAIN_BRANCH_ID}, now)
    with pytest.raises(NotYourDraft):
        await sales.confirm(draft_b.id, MANAGER_A, {MAIN_BRANCH_ID}, now)
    # A manager may confirm their branch's quote for its cashier; the purchase is the cashier's.
    done_a = await sales.confirm(draft_a.id, MANAGER_A, {MAIN_BRANCH_ID}, now)
    assert (done_a.branch_id, done_a.cashier_id) == (MAIN_BRANCH_ID, CASHIER_ID)
    again = await sales.confirm(draft_a.id, MANAGER_A, {MAIN_BRANCH_ID}, now)
    assert again.already and again.purchase_id == done_a.purchase_id
    done_b = await sales.confirm(draft_b.id, CASHIER_B, False, now, log_chats={2: -5, 1: -6})
    assert done_b.branch_id == chain.b.id
    with pytest.raises(VoidNotAllowed):
        await sales.void(done_b.purchase_id, MANAGER_A, {MAIN_BRANCH_ID}, now)
    voided = await sales.void(done_b.purchase_id, OWNER_ID, True, now)
    assert voided.branch_id == chain.b.id
    async with app.sessionmaker() as session:
        rows = (await session.scalars(select(Purchase).order_by(Purchase.id))).all()
        assert [(p.branch_id, p.voided_by) for p in rows] == [
            (MAIN_BRANCH_ID, None),
            (chain.b.id, OWNER_ID),
        ]


async def test_cumulative_tiers_count_spend_in_every_branch(app_with: Any) -> None:
    tiers = {"cumulative_tiers_enabled": True, "cumulative_tiers": "3000:7"}
    async with app_with(**tiers, **FAST_GROUPS) as app:
        await seed_bound(app.sessionmaker, "100045", 5)
        chain = await seed_chain(app)
        olga = cashier_of(app, chain.a, CASHIER_ID, "Olga")
        bert = cashier_of(app, chain.b, CASHIER_B, "Bert")
        await sell_in_group(app, chain.a, olga, "100045", "3000")  # reaches the 7 % tier
        quote = await quote_in_group(group_of(app, chain.b), bert, "100045", "1000")
        assert "Tier by total spend: 7 %" in quote.text
        await group_of(app, chain.b).press(bert, quote, button_with("till:ok:"))
        await group_of(app, chain.b).wait_message(is_receipt)
        rows = await purchases(app.sessionmaker)
        assert [(p.branch_id, p.discount_pct) for p in rows] == [
            (MAIN_BRANCH_ID, 5),
            (chain.b.id, 7),
        ]


# ---------------------------------------------------------------- menus, /staff, Mini App


async def test_menus_in_a_chain(app: App) -> None:
    chain = await seed_chain(app, managers_b=[MANAGER_B])
    await register_commands(app.bot, app.settings, branch_service(app))
    for chat_id in (STAFF_CHAT_ID, chain.b.staff_chat_id or 0):
        names = [c["command"] for c in app.tg.commands_for(chat_id, "en")]
        assert {"sale", "void", "issue"} <= set(names) and "stats" not in names
    manager = [c["command"] for c in app.tg.commands_for(MANAGER_B, "en")]
    assert {"sale", "stats", "digest", "branch"} <= set(manager)
    assert "export" not in manager and "block" not in manager
    owner = [c["command"] for c in app.tg.commands_for(OWNER_ID, "en")]
    assert {"branch", "export", "stats"} <= set(owner)
    customer = [c["command"] for c in app.tg.commands_for(CUSTOMER_ID, "en")]
    assert "branch" not in customer and "sale" not in customer


async def test_a_branch_added_while_the_bot_runs_gets_its_menus(app: App) -> None:
    """`branches add` from another process: the menu keeper sets the new group's cashier menu
    and the chain's menus (with /branch) without a restart; an unchanged chain sets nothing."""
    await app.tg.wait_for_idle(quiet=0.1)
    owner = [c["command"] for c in app.tg.commands_for(OWNER_ID, "en")]
    assert "branch" not in owner  # a chain of one at start-up
    chain = await seed_chain(app)
    assert app.tg.commands_for(chain.b.staff_chat_id or 0, "en") == []
    assert await app.dp["menus"].check(app.bot)
    names = [c["command"] for c in app.tg.commands_for(chain.b.staff_chat_id or 0, "en")]
    assert {"sale", "void", "issue"} <= set(names)
    assert "branch" in [c["command"] for c in app.tg.commands_for(OWNER_ID, "en")]
    calls = [c for c in app.tg.calls if c.method == "setMyCommands"]
    assert not await app.dp["menus"].check(app.bot)
    assert [c for c in app.tg.calls if c.method == "setMyCommands"] == calls


async def test_staff_lists_each_branch_group(app: App) -> None:
    chain = await seed_chain(app, managers_b=[MANAGER_B])

    async def administrators(call: Call) -> list[dict[str, Any]]:
        first = "Alice" if call.params["chat_id"] == chain.a.staff_chat_id else "Boris"
        return [
            {
                "status": "creator",
                "is_anonymous": False,
                "user": {
                    "id": 77 if first == "Alice" else 78,
                    "is_bot": False,
                    "first_name": first,
                },
            }
        ]

    app.tg._handlers["getchatadministrators"] = ("getChatAdministrators", administrators)
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/staff")
    text = (await owner.wait_message("Owners")).text
    assert "Test Store: administrators" in text and f"{BRANCH_B}: administrators" in text
    assert text.index("Alice") < text.index(BRANCH_B) < text.index("Boris")
    assert "Managers:" in text and str(MANAGER_B) in text


async def test_the_mini_app_till_sells_for_the_callers_shop(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    chain = await seed_chain(app)
    anna = cashier_of(app, [chain.a, chain.b], CASHIER_AB, "Anna")
    await _seen_in(app, chain, anna)
    async with miniapp_server(app) as base, aiohttp.ClientSession() as http:
        client = Client(http, base, init_data(app, CASHIER_AB, "Anna"))
        status, body = await client.post("till/identify", {"text": "100045"})
        assert status == 409 and body["error"] == "no_shop" and "/branch" in body["message"]
        await branch_service(app).choose(CASHIER_AB, chain.b.id)  # /branch in the chat
        status, card = await client.post("till/identify", {"text": "100045"})
        assert status == 200
        status, quote = await client.post(
            "till/quote", {"card_id": card["card_id"], "amount": "800"}
        )
        assert status == 200 and BRANCH_B in quote["html"]
        status, done = await client.post("till/confirm", {"draft_id": quote["draft_id"]})
        assert status == 200 and BRANCH_B in done["html"]
    await group_of(app, chain.b).wait_message(lambda m: "Anna" in (m.text or ""))
    assert await _purchase_branches(app) == [(chain.b.id, 80000)]
    await app.tg.wait_for_idle(quiet=0.1)
    assert _log_lines(app, STAFF_CHAT_ID) == []


# ---------------------------------------------------------------- a one-shop install


def _till_texts(messages: list[FakeMessage]) -> str:
    return "\n".join(
        [m.text or "" for m in messages]
        + [str(b.get("text", "")) for m in messages for b in m.buttons]
    ).casefold()


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_one_shop_install_never_asks_and_never_says_branch(app: App, language: str) -> None:
    await seed_bound(app.sessionmaker, "100045", 5)
    owner = app.tg.user(OWNER_ID, "Otto", language_code=language)  # would be asked in a chain
    olga = app.tg.user(CASHIER_ID, "Olga", language_code=language)
    receipt = await sell_in_private(owner, "100045", "1000")
    await owner.press(receipt, button_with("till:void:"))
    await owner.wait_message(lambda m: m.message_id == receipt.message_id and not m.buttons)
    await sell_in_private(olga, "100045", "1100")
    group = app.tg.group(STAFF_CHAT_ID)
    (only,) = await branch_service(app).listed()
    await sell_in_group(app, only, olga, "100045", "1200")
    await olga.send("/branch")  # no such command here
    unknown = await olga.wait_message()
    await app.tg.wait_for_idle(quiet=0.1)
    texts = _till_texts(owner.messages() + olga.messages() + group.messages())
    assert not [word for word in BRANCH_WORDS if word in texts]
    assert not any(is_branch_choice(m) for m in owner.messages() + olga.messages())
    assert unknown.text and "/help" in unknown.text
    assert [p.branch_id for p in await purchases(app.sessionmaker)] == [MAIN_BRANCH_ID] * 3
    names = [c["command"] for c in app.tg.commands_for(OWNER_ID, language)]
    assert "branch" not in names


def test_start_up_warns_about_a_first_shop_without_a_group_only_as_much_as_needed(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(db_url, staff_chat_id=None)
    with caplog.at_level("WARNING", logger="bot.commands.run"):
        warn_about_missing_roles(settings)  # one shop, no group: nobody sells
        warn_about_missing_roles(settings, [-1009200])  # the other shops have theirs
        warn_about_missing_roles(make_settings(db_url), [-1009200])  # all is well
    texts = [r.getMessage() for r in caplog.records if "STAFF_CHAT_ID" in r.getMessage()]
    assert len(texts) == 2
    assert "there are no cashiers" in texts[0]
    assert "the first shop (Test Store) has no staff group" in texts[1]


async def test_the_membership_cache_drops_expired_entries_when_full(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every customer who writes is checked against the staff groups: past `_CACHE_MAX`
    entries the expired ones go, so a long-running bot does not keep every visitor."""
    monkeypatch.setattr(roles, "_CACHE_MAX", 3)
    staff = roles.StaffDirectory(app.settings, ttl=0.0)  # every entry expires at once
    for user_id in range(7001, 7008):
        assert not await staff.in_group(app.bot, STAFF_CHAT_ID, user_id)
    assert len(staff._cache) <= 3
