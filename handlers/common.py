"""/help and /cancel: always available, in every state."""

from __future__ import annotations

import html

from aiogram import Bot, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import Message, ReplyKeyboardRemove
from aiogram.utils.i18n import gettext as _

from config import Settings
from handlers.commands import commands_for
from handlers.roles import Role, StaffDirectory

# The "user" Telegram puts on messages of a group admin who writes anonymously, as the group.
ANONYMOUS_ADMIN_ID = 1087968824


def _anonymous(message: Message) -> bool:
    user = message.from_user
    return user is None or user.id == ANONYMOUS_ADMIN_ID or message.sender_chat is not None


async def show_help(message: Message, bot: Bot, staff: StaffDirectory, settings: Settings) -> None:
    in_group = message.chat.type != "private"
    anonymous = _anonymous(message)
    role = Role.CUSTOMER
    if not anonymous and message.from_user is not None:
        role = await staff.role(bot, message.from_user.id)
    store = html.escape(settings.store.name)
    lines = [_("<b>{store}</b> loyalty card bot.").format(store=store), ""]
    chain = staff.branches is not None and await staff.branches.is_chain()
    listed = commands_for(role, group=in_group, chain=chain)
    lines += [f"/{c.name} — {c.description}" for c in listed]
    if role >= Role.CASHIER:
        lines += ["", _("You are signed in as staff of {store}.").format(store=store)]
    if anonymous:
        lines += [
            "",
            _(
                "You are writing as the group, anonymously: I cannot tell who you are, so the "
                "till does not answer you. Turn off “Remain anonymous” in your admin rights to "
                "record sales here."
            ),
        ]
    await message.answer("\n".join(lines))


async def cancel(message: Message, state: FSMContext) -> None:
    had_state = await state.get_state() is not None
    await state.clear()
    text = _("Cancelled.") if had_state else _("Nothing to cancel.")
    await message.answer(text, reply_markup=ReplyKeyboardRemove())


def setup() -> Router:
    """This feature's router, built anew for each dispatcher (handlers in routing order)."""
    router = Router(name=__name__)
    router.message.register(show_help, Command("help"), StateFilter("*"))
    router.message.register(cancel, Command("cancel"), StateFilter("*"))
    return router
