"""The quote's ✅ and ❌ and the receipt's ↩️; any other till press is refused."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
)
from aiogram.types import (
    CallbackQuery,
    Message,
)
from aiogram.utils.i18n import gettext as _

from config import Settings
from handlers.roles import Role
from handlers.till.base import TillCb
from handlers.till.commands import _log_chat
from handlers.till.receipts import ReceiptLocks, after_commit, show_receipt
from handlers.till.views import _who, render_receipt, render_voided, void_keyboard
from services.cards import group_number
from services.delivery import Outbox
from services.sales import (
    SalesService,
)


async def confirm_sale(
    cq: CallbackQuery,
    callback_data: TillCb,
    bot: Bot,
    outbox: Outbox,
    sales: SalesService,
    receipt_locks: ReceiptLocks,
    role: Role,
    settings: Settings,
    now: datetime,
) -> None:
    message = cq.message if isinstance(cq.message, Message) else None
    where = (message.chat.id, message.message_id) if message else (None, None)
    async with receipt_locks.hold(*where):
        await _confirm(cq, callback_data, bot, message, outbox, sales, role, settings, now)


async def _confirm(
    cq: CallbackQuery,
    callback_data: TillCb,
    bot: Bot,
    message: Message | None,
    outbox: Outbox,
    sales: SalesService,
    role: Role,
    settings: Settings,
    now: datetime,
) -> None:
    done = await sales.confirm(
        callback_data.ref,
        cq.from_user.id,
        role >= Role.OWNER,
        now,
        message_id=message.message_id if message else None,
        log_chat_id=_log_chat(message.chat.type if message else "private", settings),
        cashier_name=_who(cq.from_user),
    )
    if not done.already:
        outbox.notify()
    # From here on the sale is recorded: whatever Telegram does, the cashier is told so.
    if done.voided:  # a late tap on a purchase voided since: show what the ledger says
        note, text, markup = _("This purchase was voided."), render_voided(done, settings), None
    else:
        note = _("Already confirmed.") if done.already else _("Recorded.")
        text, markup = render_receipt(done, settings), void_keyboard(done.purchase_id)
    # The answer and the receipt go out at once: the cashier waits one Bot API round trip.
    answering = after_commit(lambda: cq.answer(note), "answering ✅")
    if message is None:
        await answering
    else:
        await asyncio.gather(answering, show_receipt(bot, message, text, markup))


async def cancel_sale(
    cq: CallbackQuery, callback_data: TillCb, sales: SalesService, role: Role, now: datetime
) -> None:
    number = await sales.cancel(callback_data.ref, cq.from_user.id, role >= Role.OWNER, now)
    await cq.answer(_("Cancelled."))
    if isinstance(cq.message, Message):
        with contextlib.suppress(TelegramBadRequest):
            await cq.message.edit_text(
                _("❌ Quote cancelled: card {number}.").format(number=group_number(number))
            )


async def void_sale(
    cq: CallbackQuery,
    callback_data: TillCb,
    outbox: Outbox,
    sales: SalesService,
    receipt_locks: ReceiptLocks,
    role: Role,
    settings: Settings,
    now: datetime,
) -> None:
    if not callback_data.ref.isdigit() or len(callback_data.ref) > 12:
        await cq.answer(_("Not allowed."), show_alert=True)
        return
    message = cq.message if isinstance(cq.message, Message) else None
    chat_type = message.chat.type if message is not None else "private"
    where = (message.chat.id, message.message_id) if message else (None, None)
    async with receipt_locks.hold(*where):
        result = await sales.void(
            int(callback_data.ref),
            cq.from_user.id,
            role >= Role.OWNER,
            now,
            log_chat_id=_log_chat(chat_type, settings),
            cashier_name=_who(cq.from_user),
        )
        outbox.notify()
        await after_commit(lambda: cq.answer(_("Voided.")), "answering ↩️")
        if message is not None:
            text = render_voided(result, settings)
            await after_commit(lambda: message.edit_text(text), "marking the receipt voided")


async def refuse_callback(cq: CallbackQuery) -> None:
    """Anyone else pressing (or forging) a till button: refused, nothing changes."""
    await cq.answer(_("Not allowed."), show_alert=True)
