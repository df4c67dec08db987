"""Identifying the card: QR deep links, scanned or pasted payloads, photos, /sale N and
(in a staff group) bare numbers. In a private chat of a chain the card waits, if need be, for
the answer to "which shop?" (branch.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiogram import Bot
from aiogram.filters import CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    ForceReply,
    Message,
)
from aiogram.utils.i18n import gettext as _

from bot.fsm_storage import set_step
from config import Settings
from handlers.photos import qr_texts
from handlers.roles import Role, StaffDirectory
from handlers.till.base import TillStates, payload_candidate
from handlers.till.branch import CHOSEN, ask_shop, private_shop
from handlers.till.views import render_card
from services.branches import BranchInfo, BranchService
from services.qr_decode import ImageRejected, QrReader
from services.sales import (
    SalesService,
    TillCard,
)


class Till:
    """Who scans and where: what showing a card needs to know the shop it is sold for."""

    __slots__ = ("bot", "branches", "role", "settings", "shop", "staff", "state")

    def __init__(
        self,
        bot: Bot,
        state: FSMContext,
        settings: Settings,
        role: Role,
        staff: StaffDirectory,
        branches: BranchService,
        shop: BranchInfo | None,
    ) -> None:
        self.bot, self.state, self.settings = bot, state, settings
        self.role, self.staff, self.branches, self.shop = role, staff, branches, shop


async def show_card(message: Message, card: TillCard, till: Till) -> None:
    """The card and the amount prompt, once the shop is known (asked first if need be)."""
    shop = till.shop
    chosen = False
    if shop is None:  # a private chat
        assert message.from_user is not None
        found = await private_shop(
            till.bot, message.from_user.id, till.role, till.staff, till.branches, till.state
        )
        if not isinstance(found, BranchInfo):
            if not found:  # works in no open shop any more (removed meanwhile)
                await message.answer(_("Not allowed."))
                return
            await ask_shop(message, found, till.state, card.number)
            return
        shop, chosen = found, len(await till.branches.open()) > 1
    await _show_card(message, card, till.state, till.settings, shop, chosen)


async def show_card_again(
    message: Message,
    number: str,
    shop: BranchInfo,
    state: FSMContext,
    sales: SalesService,
    settings: Settings,
) -> None:
    """After "which shop?": the card scanned before the question (its QR was checked then)."""
    card = await sales.identify_again(number)
    await _show_card(message, card, state, settings, shop, True)


async def _show_card(
    message: Message,
    card: TillCard,
    state: FSMContext,
    settings: Settings,
    shop: BranchInfo,
    chosen: bool,
) -> None:
    """`chosen`: a private chat of a chain (the shop is named, and remembered with the step)."""
    markup = ForceReply(selective=True, input_field_placeholder="2500")
    name = shop.name if chosen else None
    text = render_card(card, settings, shop=name)
    step: dict[str, Any] = {"card_id": card.card_id, "number": card.number, "branch_id": shop.id}
    if chosen:
        step[CHOSEN] = shop.id

    async def prompt() -> None:
        if message.chat.type == "private":
            await message.answer(text, reply_markup=markup)
        else:  # selective ForceReply targets the sender of the replied-to message
            await message.reply(text, reply_markup=markup)

    # The step is kept while the prompt travels (milliseconds against Telegram's round trip):
    # by the time the cashier sees it, another worker could take the amount (it may land on
    # any); waiting for the writes first cost the cashier their time on every scan. The card's
    # id and number only (quote() re-reads the card), and the shop the sale is for.
    await asyncio.gather(set_step(state, TillStates.amount, step), prompt())


async def scan_deep_link(
    message: Message,
    command: CommandObject,
    sales: SalesService,
    bot: Bot,
    state: FSMContext,
    settings: Settings,
    role: Role,
    staff: StaffDirectory,
    branches: BranchService,
    shop: BranchInfo | None = None,
) -> None:
    card = await sales.identify_payload(command.args or "")
    await show_card(message, card, Till(bot, state, settings, role, staff, branches, shop))


async def sale_by_number(
    message: Message,
    command: CommandObject,
    sales: SalesService,
    bot: Bot,
    state: FSMContext,
    settings: Settings,
    role: Role,
    staff: StaffDirectory,
    branches: BranchService,
    shop: BranchInfo | None = None,
) -> None:
    if not command.args:
        await message.answer(_("Send the card number: /sale 100045"))
        return
    card = await sales.identify_number(command.args)
    await show_card(message, card, Till(bot, state, settings, role, staff, branches, shop))


async def scan_text(
    message: Message,
    sales: SalesService,
    bot: Bot,
    state: FSMContext,
    settings: Settings,
    role: Role,
    staff: StaffDirectory,
    branches: BranchService,
    shop: BranchInfo | None = None,
) -> None:
    card = await sales.identify_payload(payload_candidate(message.text) or "")
    await show_card(message, card, Till(bot, state, settings, role, staff, branches, shop))


async def scan_photo(
    message: Message,
    bot: Bot,
    sales: SalesService,
    qr_reader: QrReader,
    state: FSMContext,
    settings: Settings,
    role: Role,
    staff: StaffDirectory,
    branches: BranchService,
    shop: BranchInfo | None = None,
) -> None:
    in_group = message.chat.type != "private"
    try:
        texts = await qr_texts(message, bot, qr_reader)
    except ImageRejected:
        if in_group:
            return  # any picture posted in the staff chat: not necessarily meant for the till
        raise
    candidate = next((c for t in texts if (c := payload_candidate(t))), None)
    if candidate is None:
        if not in_group:
            await message.answer(
                _("No card QR code found in the photo. Try again closer, or type /sale 100045.")
            )
        return
    card = await sales.identify_payload(candidate)
    await show_card(message, card, Till(bot, state, settings, role, staff, branches, shop))
