"""The amount typed under the prompt becomes a quote with the discount."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

from aiogram import Bot
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    ForceReply,
    Message,
)
from aiogram.utils.i18n import gettext as _

from bot.fsm_storage import set_step
from config import Settings
from handlers.errors import render_error
from handlers.roles import Role, StaffDirectory
from handlers.till.base import PROMPT, _is_reply_to_bot
from handlers.till.branch import CHOSEN, ask_shop, private_shop
from handlers.till.identify import Till, show_card
from handlers.till.views import quote_keyboard, render_quote
from services.branches import BranchInfo, BranchService
from services.cards import group_number
from services.errors import CardNotFound, InvalidAmount, InvalidCardNumber
from services.money import parse_amount
from services.sales import (
    SalesService,
)


async def take_amount(
    message: Message,
    bot: Bot,
    sales: SalesService,
    state: FSMContext,
    settings: Settings,
    now: datetime,
    role: Role,
    staff: StaffDirectory,
    branches: BranchService,
    shop: BranchInfo | None = None,
) -> None:
    assert message.text is not None and message.from_user is not None
    if message.chat.type != "private" and not _is_reply_to_bot(message, bot):
        # A bare number in the staff group stays what it always was there, a card, when it is
        # one (the cashier moved on to the next customer); anything else is the amount.
        with contextlib.suppress(CardNotFound, InvalidCardNumber):
            card = await sales.identify_number(message.text.strip())
            await show_card(message, card, Till(bot, state, settings, role, staff, branches, shop))
            return
    data = await state.get_data()
    try:
        amount = parse_amount(
            message.text, settings.store.currency_exponent, settings.pricing.max_purchase
        )
    except InvalidAmount as exc:
        # The reason and a fresh prompt: in a group the next answer must reply to a prompt.
        reason = render_error(exc, settings) or ""
        markup = ForceReply(selective=True, input_field_placeholder="2500")
        if message.chat.type == "private":
            await message.answer(f"{reason}\n{PROMPT}", reply_markup=markup)
        else:
            await message.reply(f"{reason}\n{PROMPT}", reply_markup=markup)
        return
    if shop is None:  # a private chat: the shop the card was shown for, if it is still open
        shop = await branches.get(int(data.get("branch_id", 0)))
        if shop is None or not shop.is_open:
            found = await private_shop(bot, message.from_user.id, role, staff, branches, state)
            if not isinstance(found, BranchInfo):
                await ask_shop(message, found, state, data.get("number"))
                return
            shop = found
    draft = await sales.quote(
        int(data["card_id"]), amount, message.from_user.id, message.chat.id, now, branch_id=shop.id
    )
    # The finished step is forgotten while the quote travels (the draft holds the sale now);
    # the shop a cashier of several chose stays with the conversation.
    name = shop.name if CHOSEN in data else None
    text, markup = render_quote(draft, settings, shop=name), quote_keyboard(draft.id)

    async def show_quote() -> None:
        await message.answer(text, reply_markup=markup)

    kept = {CHOSEN: data[CHOSEN]} if CHOSEN in data else None
    await asyncio.gather(set_step(state, None, kept), show_quote())


async def number_in_staff_group(
    message: Message,
    bot: Bot,
    sales: SalesService,
    state: FSMContext,
    settings: Settings,
    role: Role,
    staff: StaffDirectory,
    branches: BranchService,
    shop: BranchInfo | None = None,
) -> None:
    if _is_reply_to_bot(message, bot):
        return  # an answer to someone else's prompt, not a card number
    assert message.text is not None
    try:
        card = await sales.identify_number(message.text.strip())
    except CardNotFound as exc:
        # A bare number in the staff chat is as likely an amount typed before any card was
        # scanned as a mistyped card: say how a sale goes.
        await message.reply(
            _(
                "No card {number} in our program. To record a sale, first scan the card's QR "
                "or send its number; then answer my message with the amount."
            ).format(number=group_number(exc.number))
        )
        return
    await show_card(message, card, Till(bot, state, settings, role, staff, branches, shop))
