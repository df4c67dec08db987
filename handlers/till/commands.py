"""/issue and /void."""

from __future__ import annotations

from datetime import datetime

from aiogram import Bot
from aiogram.filters import CommandObject
from aiogram.types import (
    Message,
)
from aiogram.utils.i18n import gettext as _

from config import Settings
from handlers import formatting
from handlers.roles import Role, StaffDirectory
from handlers.till.branch import log_groups, oversight
from handlers.till.receipts import ReceiptLocks, after_commit
from handlers.till.views import _who, render_voided
from services.branches import BranchService
from services.cards import group_number
from services.delivery import Outbox
from services.sales import (
    SalesService,
)


async def issue_card(
    message: Message, command: CommandObject, sales: SalesService, now: datetime
) -> None:
    assert message.from_user is not None
    parts = (command.args or "").split()
    segment = None
    if parts and parts[-1].lower() in ("b2b", "b2c"):
        segment = parts.pop().lower()
    if not parts:
        await message.answer(_("Usage: /issue 100045 [b2b]"))
        return
    result = await sales.issue(" ".join(parts), segment, message.from_user.id, now)
    await message.answer(
        _("Card {number} ({pct}, {segment}) is now issued.").format(
            number=group_number(result.number),
            pct=formatting.pct(result.base_pct),
            segment=result.segment.upper(),
        )
    )


async def void_command(
    message: Message,
    command: CommandObject,
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
    assert message.from_user is not None
    ref = (command.args or "").strip().lstrip("#")
    if not ref.isdigit() or len(ref) > 12:
        await message.answer(_("Usage: /void purchase number, e.g. /void 123"))
        return
    result = await sales.void(
        int(ref),
        message.from_user.id,
        await oversight(role, message.from_user.id, staff),
        now,
        # Logged in the purchase's branch's group, unless it is this chat.
        log_chats=await log_groups(branches),
        here_chat_id=None if message.chat.type == "private" else message.chat.id,
        cashier_name=_who(message.from_user),
    )
    outbox.notify()
    text = render_voided(result, settings)
    await after_commit(lambda: message.answer(text), "answering /void")
    if result.chat_id is not None and result.message_id is not None:
        # The receipt's edit comes after the void's commit, under the receipt's lock: a ✅
        # pressed meanwhile has either shown its receipt already or will read the void.
        async with receipt_locks.hold(result.chat_id, result.message_id):
            await after_commit(
                lambda: bot.edit_message_text(
                    text, chat_id=result.chat_id, message_id=result.message_id
                ),
                "marking the receipt voided",
            )
