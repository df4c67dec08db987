"""Which shop a till update sells for, and /branch (only in a chain).

In a branch's staff group the shop is that branch (`TillChat` hands it to the handlers as
`shop`). In a private chat it is one of the branches the person works in (`choices`: the open
branches whose group they are a member of, plus those they manage; an owner's: every open
branch): one → it; several → the one they chose last, if it is still among them; otherwise the
till asks once ("Which shop are you selling in?") and, after the answer, shows the card that was
scanned. `/branch` shows the shop and switches it.

The choice is kept in the private conversation's data (`CHOSEN`, shared by every worker like
the till's steps) and recorded in the database (`BranchService.choose`), which is read only when
the conversation has forgotten it (after /cancel, say). A chain of one never asks and never
shows a word of this: its one shop is the shop, with no lookup beyond the branch cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiogram import Bot
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from aiogram.utils.i18n import gettext as _

from bot.fsm_storage import set_step
from handlers.roles import Role, StaffDirectory
from handlers.till.base import TillStates
from services.branches import BranchInfo, BranchService
from services.sales import Oversight

CHOSEN = "till_branch"  # the private conversation's data: the shop the cashier chose


class SellForCb(CallbackData, prefix="sellfor"):
    id: int  # a branch id: re-checked against the presser's own shops


async def choices(
    bot: Bot, user_id: int, role: Role, staff: StaffDirectory, branches: BranchService
) -> list[BranchInfo]:
    """The open branches `user_id` may sell for in a private chat, in the chain's order."""
    found = await branches.open()
    if len(found) <= 1 or role >= Role.OWNER:
        return found
    mine = {b.id for b in await staff.workplaces(bot, user_id)}
    mine.update(b.id for b in await staff.managed(user_id))
    return [b for b in found if b.id in mine]


async def private_shop(
    bot: Bot,
    user_id: int,
    role: Role,
    staff: StaffDirectory,
    branches: BranchService,
    state: FSMContext,
) -> BranchInfo | list[BranchInfo]:
    """The shop a sale in `user_id`'s private chat is for, or the shops to choose from."""
    found = await choices(bot, user_id, role, staff, branches)
    if len(found) == 1:
        return found[0]
    chosen = (await state.get_data()).get(CHOSEN)
    if chosen is None and found:
        chosen = await branches.chosen(user_id)
    return next((b for b in found if b.id == chosen), found)


async def oversight(role: Role, user_id: int, staff: StaffDirectory) -> Oversight:
    """Whose sales besides their own the person may confirm, cancel and void: an owner's
    every branch's, a manager's their branches', a cashier's none."""
    if role >= Role.OWNER:
        return True
    if role >= Role.MANAGER:
        return frozenset(b.id for b in await staff.managed(user_id))
    return False


async def log_groups(branches: BranchService) -> dict[int, int | None]:
    """Each open branch's staff group: where a sale made elsewhere is logged."""
    return {b.id: b.staff_chat_id for b in await branches.open()}


async def shop_name(branches: BranchService, branch_id: int, private: bool) -> str | None:
    """The shop's name, for a receipt or a quote in a private chat of a chain; else None."""
    if not private or not await branches.is_chain():
        return None
    branch = await branches.get(branch_id)
    return None if branch is None else branch.name


def shop_keyboard(found: Sequence[BranchInfo], current: int | None) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=("✓ " if b.id == current else "") + b.name,
                    callback_data=SellForCb(id=b.id).pack(),
                )
            ]
            for b in found
        ]
    )


async def ask_shop(
    message: Message, found: Sequence[BranchInfo], state: FSMContext, number: str | None
) -> None:
    """Ask which shop the cashier sells in; the scanned card (`number`) waits for the answer."""
    pending: dict[str, Any] = {} if number is None else {"number": number}
    await set_step(state, TillStates.branch, pending)
    await message.answer(
        _("Which shop are you selling in?"), reply_markup=shop_keyboard(found, None)
    )
