"""Identifying the card: QR deep links, scanned or pasted payloads, photos, /sale N and
(in the staff group) bare numbers."""

from __future__ import annotations

import asyncio

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
from handlers.till.base import TillStates, payload_candidate
from handlers.till.views import render_card
from services.qr_decode import ImageRejected, QrReader
from services.sales import (
    SalesService,
    TillCard,
)


async def _show_card(
    message: Message, card: TillCard, state: FSMContext, settings: Settings
) -> None:
    markup = ForceReply(selective=True, input_field_placeholder="2500")
    text = render_card(card, settings)

    async def prompt() -> None:
        if message.chat.type == "private":
            await message.answer(text, reply_markup=markup)
        else:  # selective ForceReply targets the sender of the replied-to message
            await message.reply(text, reply_markup=markup)

    # The step is kept while the prompt travels (milliseconds against Telegram's round trip):
    # by the time the cashier sees it, another worker could take the amount (it may land on
    # any); waiting for the writes first cost the cashier their time on every scan. The card's
    # id only: quote() re-reads the card.
    await asyncio.gather(set_step(state, TillStates.amount, {"card_id": card.card_id}), prompt())


async def scan_deep_link(
    message: Message,
    command: CommandObject,
    sales: SalesService,
    state: FSMContext,
    settings: Settings,
) -> None:
    card = await sales.identify_payload(command.args or "")
    await _show_card(message, card, state, settings)


async def sale_by_number(
    message: Message,
    command: CommandObject,
    sales: SalesService,
    state: FSMContext,
    settings: Settings,
) -> None:
    if not command.args:
        await message.answer(_("Send the card number: /sale 100045"))
        return
    card = await sales.identify_number(command.args)
    await _show_card(message, card, state, settings)


async def scan_text(
    message: Message, sales: SalesService, state: FSMContext, settings: Settings
) -> None:
    card = await sales.identify_payload(payload_candidate(message.text) or "")
    await _show_card(message, card, state, settings)


async def scan_photo(
    message: Message,
    bot: Bot,
    sales: SalesService,
    qr_reader: QrReader,
    state: FSMContext,
    settings: Settings,
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
    await _show_card(message, card, state, settings)
