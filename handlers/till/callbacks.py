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
from handlers.roles import Role, StaffDirectory
from handlers.till.base import TillCb
from handlers.till.branch import log_groups, oversight, shop_name
from handlers.till.receipts import ReceiptLocks, after_commit, show_receipt
from handlers.till.views import _who, render_receipt, render_voided, void_keyboard
from services.branches import BranchService
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
    staff: StaffDirectory,
    branches: BranchService,
    settings: Settings,
    now: datetime,
) -> None:
    message = cq.message if isinstance(cq.message, Message) else None
    where = (message.chat.id, message.message_id) if message else (None, None)
    async with receipt_locks.hold(*where):
        await _confirm(
            cq, callback_data, bot, message, outbox, sales, role, staff, branches, settings, now
        )


async def _confirm(
    cq: CallbackQuery,
    callback_data: TillCb,
    bot: Bot,
    message: Message | None,
    outbox: Outbox,
    sales: SalesService,
    role: Role,
    staff: StaffDirectory,
    branches: BranchService,
    settings: Settings,
    now: datetime,
) -> None:
    private = message is None or message.chat.type == "private"
    done = await sales.confirm(
        callback_data.ref,
        cq.from_user.id,
        await oversight(role, cq.from_user.id, staff),
        now,
        message_id=message.message_id if message else None,
        # A sale made outside its branch's group is logged there (the receipt is the log in it).
        log_chats=await log_groups(branches),
        here_chat_id=None if private or message is None else message.chat.id,
        cashier_name=_who(cq.from_user),
    )
    if not done.already:
        outbox.notify()
    # From here on the sale is recorded: whatever Telegram does, the cashier is told so.
    if done.voided:  # a late tap on a purchase voided since: show what the ledger says
        note, text, markup = _("This purchase was voided."), render_voided(done, settings), None
    else:
        note = _("Already confirmed.") if done.already else _("Recorded.")
        shop = await shop_name(branches, done.branch_id, private)
        text, markup = render_receipt(done, settings, shop), void_keyboard(done.purchase_id)
    # The answer and the receipt go out at once: the cashier waits one Bot API round trip.
    answering = after_commit(lambda: cq.answer(note), "answering ✅")
    if message is None:
        await answering
    else:
        await asyncio.gather(answering, show_receipt(bot, message, text, markup))


async def cancel_sale(
    cq: CallbackQuery,
    callback_data: TillCb,
    sales: SalesService,
    role: Role,
    staff: StaffDirectory,
    now: datetime,
) -> None:
    allowed = await oversight(role, cq.from_user.id, staff)
    number = await sales.cancel(callback_data.ref, cq.from_user.id, allowed, now)
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
    staff: StaffDirectory,
    branches: BranchService,
    settings: Settings,
    now: datetime,
) -> None:
    if not callback_data.ref.isdigit() or len(callback_data.ref) > 12:
        await cq.answer(_("Not allowed."), show_alert=True)
        return
    message = cq.message if isinstance(cq.message, Message) else None
    here = message.chat.id if message is not None and message.chat.type != "private" else None
    where = (message.chat.id, message.message_id) if message else (None, None)
    async with receipt_locks.hold(*where):
        result = await sales.void(
            int(callback_data.ref),
            cq.from_user.id,
            await oversight(role, cq.from_user.id, staff),
            now,
            log_chats=await log_groups(branches),
            here_chat_id=here,
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
