"""/help and /cancel: always available, in every state."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import Message, ReplyKeyboardRemove
from aiogram.utils.i18n import gettext as _

from bot.config import Settings
from handlers.commands import commands_for
from handlers.roles import Role, StaffDirectory

router = Router(name=__name__)


@router.message(Command("help"), StateFilter("*"))
async def show_help(message: Message, bot: Bot, staff: StaffDirectory, settings: Settings) -> None:
    assert message.from_user is not None
    role = await staff.role(bot, message.from_user.id)
    in_group = message.chat.type != "private"
    lines = [_("<b>{store}</b> loyalty card bot.").format(store=settings.store_name), ""]
    lines += [f"/{c.name} — {c.description}" for c in commands_for(role, group=in_group)]
    if role >= Role.CASHIER:
        lines += ["", _("You are signed in as staff of {store}.").format(store=settings.store_name)]
    await message.answer("\n".join(lines))


@router.message(Command("cancel"), StateFilter("*"))
async def cancel(message: Message, state: FSMContext) -> None:
    had_state = await state.get_state() is not None
    await state.clear()
    text = _("Cancelled.") if had_state else _("Nothing to cancel.")
    await message.answer(text, reply_markup=ReplyKeyboardRemove())
