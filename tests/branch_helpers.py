"""Shared seeding for the branch tests: a chain of two shops with their own staff groups, and
a cashier selling in a given group or in their private chat (language-independent: the steps
are recognised by their keyboards, not by their words).

    chain = await seed_chain(app)                       # branch 1 (the settings' shop) + "Tartu"
    olga = cashier_of(app, chain.a, CASHIER_ID, "Olga", "en")
    receipt = await sell_in_group(app, chain.a, olga, "100045", "2500")
    receipt = await sell_in_private(olga, "100045", "2500")

`add_branch` goes through the running bot's own `BranchService` (the dispatcher's workflow
data), so the bot sees the new branch at once (its cache is dropped on a change).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiogram.utils.i18n import I18n
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeGroup, FakeMessage, FakeUser
from bot.i18n import create_i18n
from db.models import Card, Purchase
from services.branches import BranchChanges, BranchDraft, BranchInfo, BranchService
from services.cards import refresh_totals
from tests.conftest import STAFF_CHAT_ID, App
from tests.kpi_helpers import Data, msk

BRANCH_B = "Tartu"
BRANCH_B_CHAT = -1009200
CASHIER_B = 2102  # works in branch B only
CASHIER_AB = 2103  # works in both groups
MANAGER_A = 4001  # manages branch A (the first shop)
MANAGER_B = 4002  # manages branch B


@dataclass(frozen=True)
class Chain:
    a: BranchInfo  # branch 1: the settings' shop, STAFF_CHAT_ID
    b: BranchInfo  # the second shop, BRANCH_B_CHAT


def branch_service(app: App) -> BranchService:
    """The running bot's branch service (the one its handlers read)."""
    service: BranchService = app.dp["branches"]
    return service


async def add_branch(
    app: App,
    name: str,
    staff_chat_id: int,
    *,
    managers: Sequence[int] = (),
    **fields: Any,
) -> BranchInfo:
    """A new branch through the bot's own `BranchService` (address, hours, phone, latitude,
    longitude as keyword arguments)."""
    return await branch_service(app).add(
        BranchDraft(name=name, staff_chat_id=staff_chat_id, managers=tuple(managers), **fields)
    )


async def set_managers(app: App, name: str, managers: Sequence[int]) -> BranchInfo:
    return await branch_service(app).edit(name, BranchChanges(managers=tuple(managers)))


async def seed_chain(
    app: App,
    *,
    name_b: str = BRANCH_B,
    chat_b: int = BRANCH_B_CHAT,
    managers_a: Sequence[int] = (),
    managers_b: Sequence[int] = (),
    **fields_b: Any,
) -> Chain:
    """Branch 1 (the settings' shop, its group STAFF_CHAT_ID) and a second one with its own
    group; managers as given (a manager is also made a member of their branch's group)."""
    service = branch_service(app)
    if managers_a:
        await set_managers(app, (await service.listed())[0].name, managers_a)
    b = await add_branch(app, name_b, chat_b, managers=managers_b, **fields_b)
    for tg_id in managers_a:
        app.tg.set_member(STAFF_CHAT_ID, tg_id, "member")
    for tg_id in managers_b:
        app.tg.set_member(chat_b, tg_id, "member")
    a = await service.get(1)
    assert a is not None
    return Chain(a=a, b=b)


def group_of(app: App, branch: BranchInfo) -> FakeGroup:
    assert branch.staff_chat_id is not None
    return app.tg.group(branch.staff_chat_id, title=f"Staff {branch.name}")


def cashier_of(
    app: App,
    branches: BranchInfo | Sequence[BranchInfo],
    user_id: int,
    name: str = "Olga",
    language: str = "en",
) -> FakeUser:
    """A member of each branch's staff group."""
    for branch in [branches] if isinstance(branches, BranchInfo) else branches:
        assert branch.staff_chat_id is not None
        app.tg.set_member(branch.staff_chat_id, user_id, "member")
    return app.tg.user(user_id, name, language_code=language)


# ------------------------------------------------------------------ recognising the till's steps


def is_prompt(message: FakeMessage) -> bool:
    """The amount prompt (a ForceReply)."""
    return bool((message.reply_markup or {}).get("force_reply"))


def _has_data(prefix: str) -> Any:
    def check(message: FakeMessage) -> bool:
        return any(str(b.get("callback_data", "")).startswith(prefix) for b in message.buttons)

    return check


is_quote = _has_data("till:ok:")  # the quote with ✅ and ❌
is_receipt = _has_data("till:void:")  # the receipt with ↩️
is_branch_choice = _has_data("sellfor:")  # "which shop are you selling in?"


def button_with(prefix: str) -> Any:
    """A `find_button` selector: the button whose callback data starts with `prefix`."""
    return lambda b: str(b.get("callback_data", "")).startswith(prefix)


def staff_lines(group: FakeGroup, number_grouped: str = "100 045") -> list[str]:
    """The lines of the group's messages that name the card (staff-log lines and receipts)."""
    return [
        line
        for m in group.messages()
        for line in (m.text or "").splitlines()
        if number_grouped in line
    ]


# ------------------------------------------------------------------ selling


async def quote_in_group(
    group: FakeGroup, cashier: FakeUser, number: str = "100045", amount: str = "2500"
) -> FakeMessage:
    await group.send(cashier, number)
    prompt = await group.wait_message(is_prompt)
    await group.send(cashier, amount, reply_to=prompt)
    return await group.wait_message(is_quote)


async def sell_in_group(
    app: App,
    branch: BranchInfo,
    cashier: FakeUser,
    number: str = "100045",
    amount: str = "2500",
) -> FakeMessage:
    """A sale rung up in the branch's staff group; returns the receipt."""
    group = group_of(app, branch)
    quote = await quote_in_group(group, cashier, number, amount)
    await group.press(cashier, quote, button_with("till:ok:"))
    return await group.wait_message(is_receipt)


async def quote_in_private(
    cashier: FakeUser, number: str = "100045", amount: str = "2500"
) -> FakeMessage:
    """`/sale N`, the amount: the quote (when the bot does not first ask for the shop)."""
    await cashier.send(f"/sale {number}")
    await cashier.wait_message(is_prompt)
    await cashier.send(amount)
    return await cashier.wait_message(is_quote)


async def sell_in_private(
    cashier: FakeUser, number: str = "100045", amount: str = "2500"
) -> FakeMessage:
    """A sale rung up in the cashier's private chat; returns the receipt."""
    quote = await quote_in_private(cashier, number, amount)
    await cashier.press(quote, button_with("till:ok:"))
    return await cashier.wait_message(is_receipt)


# ------------------------------------------------------------------ texts and seeded sales


def tr(language: str, msgid: str) -> str:
    """The catalog's text of `msgid` in `language` (what the bot shows)."""
    i18n: I18n = create_i18n("ru")
    with i18n.context(), i18n.use_locale(language):
        return i18n.gettext(msgid)


def heading(language: str, msgid: str) -> str:
    """A title's words before its first placeholder, tags out: what a message starts with."""
    return re.sub("<[^>]+>", "", tr(language, msgid)).split("{")[0].strip()


async def buy(
    session: AsyncSession,
    card: Card,
    at: datetime,
    amount: int,
    branch_id: int,
    *,
    cashier: int | None = None,
    pct: int | None = None,
) -> None:
    """A purchase of `card` in `branch_id`, its card's figures recounted as the till does."""
    pct = card.base_pct if pct is None else pct
    discount = amount * pct // 100
    session.add(
        Purchase(
            card_id=card.id,
            amount=amount,
            discount_pct=pct,
            discount_amount=discount,
            paid_amount=amount - discount,
            cashier_id=cashier,
            branch_id=branch_id,
            source="bot",
            created_at=at,
        )
    )
    await session.flush()
    await session.run_sync(refresh_totals, card.id)


async def seed_sales(sessionmaker: async_sessionmaker[AsyncSession], chain: Chain) -> None:
    """Seven purchases in two shops (tests/test_branches_owner.py's docstring has the table)."""
    a, b = chain.a.id, chain.b.id
    async with sessionmaker() as session:
        d = Data(session)
        anna = await d.client(username="anna")
        c45 = await d.card("100045", issued_at=msk(2026, 9, 1), client=anna, pct=7)
        c46 = await d.card("100046", issued_at=msk(2026, 9, 1))
        c48 = await d.card("100048", issued_at=msk(2026, 9, 1))
        await buy(session, c45, msk(2026, 11, 3), 150_000, a, cashier=2001)
        await buy(session, c45, msk(2026, 11, 10), 100_000, a, cashier=2001)
        await buy(session, c46, msk(2026, 11, 11), 20_000, a, cashier=2001)
        await buy(session, c48, msk(2026, 11, 5), 200_000, b, cashier=2102)
        await buy(session, c45, msk(2026, 11, 12), 300_000, b, cashier=2102)
        await buy(session, c48, msk(2026, 11, 13), 100_000, b, cashier=2102)
        await buy(session, c48, msk(2026, 11, 14), 200_000, b, cashier=2102)
        await session.commit()
