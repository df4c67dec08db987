"""/branch and the shop buttons (a chain only; which shop a sale is for: branch.py)."""

from __future__ import annotations

import contextlib
import html
import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import BotCommand, BotCommandScopeChat, CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot.fsm_storage import set_step
from config import Settings
from handlers.commands import commands_for
from handlers.roles import Role, StaffDirectory
from handlers.till.base import TillStates
from handlers.till.branch import CHOSEN, SellForCb, choices, private_shop, shop_keyboard
from handlers.till.identify import show_card_again
from services.branches import BranchInfo, BranchService
from services.sales import SalesService

log = logging.getLogger(__name__)


async def branch_command(
    message: Message,
    bot: Bot,
    role: Role,
    staff: StaffDirectory,
    branches: BranchService,
    state: FSMContext,
    shop: BranchInfo | None = None,
) -> None:
    """/branch: the shop this chat sells for; in a private chat, buttons to switch."""
    assert message.from_user is not None
    if shop is not None:  # a staff group sells for its own branch
        await message.answer(_("This group sells for {shop}.").format(shop=html.escape(shop.name)))
        return
    found = await choices(bot, message.from_user.id, role, staff, branches)
    current = await private_shop(bot, message.from_user.id, role, staff, branches, state)
    if isinstance(current, BranchInfo):
        text = _("You sell for {shop}.").format(shop=html.escape(current.name))
        if len(found) > 1:
            text += "\n" + _("Switch to another shop:")
        markup = shop_keyboard(found, current.id) if len(found) > 1 else None
    else:
        text, markup = _("Which shop are you selling in?"), shop_keyboard(found, None)
    await message.answer(text, reply_markup=markup)


async def choose_shop(
    cq: CallbackQuery,
    callback_data: SellForCb,
    bot: Bot,
    role: Role,
    staff: StaffDirectory,
    branches: BranchService,
    state: FSMContext,
    sales: SalesService,
    settings: Settings,
) -> None:
    """A shop's button: checked against the presser's own shops, then remembered; a card that
    waited for the answer is shown with the amount prompt."""
    message = cq.message if isinstance(cq.message, Message) else None
    if message is None or message.chat.type != "private":
        await refuse_choice(cq)
        return
    found = await choices(bot, cq.from_user.id, role, staff, branches)
    branch = next((b for b in found if b.id == callback_data.id), None)
    if branch is None:
        await refuse_choice(cq)
        return
    await branches.choose(cq.from_user.id, branch.id)
    pending = None
    if await state.get_state() == TillStates.branch.state:
        pending = (await state.get_data()).get("number")
    await set_step(state, None, {CHOSEN: branch.id})
    await cq.answer()
    with contextlib.suppress(TelegramBadRequest):
        await message.edit_text(
            _("You sell for {shop}.").format(shop=html.escape(branch.name)),
            reply_markup=shop_keyboard(found, branch.id) if len(found) > 1 else None,
        )
    if pending is not None:  # the card scanned before the question
        await show_card_again(message, pending, branch, state, sales, settings)
    # Their private chat's menu: the till's commands and /branch.
    await _staff_menu(bot, cq.from_user.id, role)


async def _staff_menu(bot: Bot, chat_id: int, role: Role) -> None:
    """A chain's staff member's private chat menu: their role's commands with /branch, in
    their language (for every client language: the chat is theirs alone)."""
    commands = [
        BotCommand(command=c.name, description=str(c.description)[:256])
        for c in commands_for(role, chain=True)
    ]
    try:
        await bot.set_my_commands(commands, scope=BotCommandScopeChat(chat_id=chat_id))
    except TelegramAPIError as exc:
        log.warning("setMyCommands(chat %s) failed: %s", chat_id, exc)


async def refuse_choice(cq: CallbackQuery) -> None:
    """A shop button that is not the presser's (forged, closed, another's): nothing changes."""
    await cq.answer(_("You cannot sell for this shop."), show_alert=True)
