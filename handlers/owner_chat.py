"""Owner answers go to the owner's private chat with the bot, wherever the owner asked.

An owner may type /stats or /export in the staff group, where every cashier reads along. The
owner routers therefore hand their handlers an `OwnerChat` (built by `OwnerChatMiddleware`)
instead of replying to the message: it sends to the owner's private chat, and after the handler
the group gets one short note that the answer went there. When the bot may not write to the
owner (they never pressed Start, or blocked the bot) the group is only told to open a private
chat with the bot first, and the command is not carried out. A button pressed (or forged) on a
group message never edits that message: its answer, too, arrives privately.

In the owner's private chat nothing changes: answers arrive where they always did, buttons
edit their own message.

Branch managers see their branches' figures (/stats, /digest): `reports_router` lets owners and
managers in (`HasRole(Role.MANAGER)`, the handlers get `role` and narrow what a manager sees)
and treats a manager's answers the same way — privately, never in a staff group. Everything
else stays on `owner_router`: owners only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramForbiddenError
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    TelegramObject,
)
from aiogram.utils.i18n import gettext as _

from config import Settings
from handlers.errors import render_error
from handlers.roles import HasRole, IsOwner, Role
from services.errors import DomainError

log = logging.getLogger(__name__)


class OwnerUnreachable(Exception):
    """The bot may not write to the owner's private chat (403: never started, or blocked)."""


def _unreachable(exc: TelegramAPIError) -> bool:
    if isinstance(exc, TelegramForbiddenError):
        return True
    # A user who never talked to the bot can also be unknown to it.
    return isinstance(exc, TelegramBadRequest) and "chat not found" in str(exc).lower()


class OwnerChat:
    """Where an owner's answer goes: their private chat with the bot.

    `chat_id` is the chat the command or button came from (`message` the message itself, if
    the bot can still see it); when that is not the owner's private chat, every answer is sent
    privately instead and `redirected` says that something was. `toast` is the text of the
    answer to a button press (the middleware answers it).
    """

    def __init__(
        self, bot: Bot, owner_id: int, chat_id: int | None, message: Message | None = None
    ) -> None:
        self.bot = bot
        self.owner_id = owner_id
        self.chat_id = chat_id
        self.message = message
        self.redirected = False
        self.toast: str | None = None

    @property
    def in_private(self) -> bool:
        return self.chat_id == self.owner_id

    async def _send(self, send: Callable[[], Awaitable[Message]]) -> Message:
        try:
            message = await send()
        except TelegramAPIError as exc:
            if _unreachable(exc):
                raise OwnerUnreachable from exc
            raise
        if not self.in_private:
            self.redirected = True
        return message

    async def send(self, text: str, reply_markup: InlineKeyboardMarkup | None = None) -> Message:
        return await self._send(
            lambda: self.bot.send_message(self.owner_id, text, reply_markup=reply_markup)
        )

    async def send_document(self, document: InputFile, caption: str | None = None) -> Message:
        return await self._send(
            lambda: self.bot.send_document(self.owner_id, document, caption=caption)
        )

    async def send_photo(self, photo: InputFile, caption: str | None = None) -> Message:
        return await self._send(lambda: self.bot.send_photo(self.owner_id, photo, caption=caption))

    async def show(self, text: str, reply_markup: InlineKeyboardMarkup | None = None) -> None:
        """The answer to a button: the pressed message is edited when it is in the owner's
        private chat, otherwise (a group, a message that is gone) a new private message."""
        if self.in_private and self.message is not None:
            try:
                await self.message.edit_text(text, reply_markup=reply_markup)
            except TelegramBadRequest as exc:
                # Pressing what is already shown changes nothing: Telegram says so.
                if "not modified" not in str(exc):
                    raise
            return
        await self.send(text, reply_markup=reply_markup)

    async def reachable(self) -> bool:
        """Whether the bot may write to the owner privately (asked before a group command
        runs, so that a command whose answer cannot arrive changes nothing)."""
        try:
            await self.bot.send_chat_action(self.owner_id, "typing")
        except TelegramAPIError as exc:
            if _unreachable(exc):
                return False
            log.warning("sendChatAction(%s) failed: %s", self.owner_id, exc)
        return True


def _sent_privately() -> str:
    return _("📬 Sent to you in a private chat with me.")


async def _open_private_chat(bot: Bot) -> str:
    me = await bot.me()
    return _(
        "I cannot write to you privately yet: open https://t.me/{bot} and press Start, then "
        "send the command again."
    ).format(bot=me.username)


class OwnerChatMiddleware(BaseMiddleware):
    """Inner middleware of the owner routers (it runs only for the owner's handlers): gives
    them `owner_chat` and keeps owner data out of groups."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        bot: Bot = data["bot"]
        if isinstance(event, CallbackQuery):
            pressed = event.message  # None, or inaccessible (too old) when Telegram says so
            owner_chat = OwnerChat(
                bot,
                event.from_user.id,
                pressed.chat.id if pressed is not None else None,
                pressed if isinstance(pressed, Message) else None,
            )
            data["owner_chat"] = owner_chat
            return await self._button(handler, event, data, owner_chat)
        assert isinstance(event, Message) and event.from_user is not None
        owner_chat = OwnerChat(bot, event.from_user.id, event.chat.id, event)
        data["owner_chat"] = owner_chat
        if owner_chat.in_private:
            return await handler(event, data)
        return await self._group_command(handler, event, data, owner_chat)

    async def _group_command(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        message: Message,
        data: dict[str, Any],
        owner_chat: OwnerChat,
    ) -> Any:
        bot: Bot = data["bot"]
        settings: Settings = data["settings"]
        result = None
        try:
            if not await owner_chat.reachable():
                raise OwnerUnreachable
            try:
                result = await handler(message, data)
            except DomainError as exc:
                # A refusal can name owner data too ("blocked because its holder erased
                # their data"): it goes where the answer would have gone.
                text = render_error(exc, settings)
                if text is None:
                    raise
                await owner_chat.send(text)
        except OwnerUnreachable:
            await message.reply(await _open_private_chat(bot))
            return None
        if owner_chat.redirected:
            await message.reply(_sent_privately())
        return result

    async def _button(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        query: CallbackQuery,
        data: dict[str, Any],
        owner_chat: OwnerChat,
    ) -> Any:
        bot: Bot = data["bot"]
        # A refusal (DomainError) propagates: the error handler answers the button with it,
        # as an alert only the presser sees.
        try:
            if not owner_chat.in_private and not await owner_chat.reachable():
                raise OwnerUnreachable
            result = await handler(query, data)
        except OwnerUnreachable:
            await query.answer(await _open_private_chat(bot), show_alert=True)
            return None
        toast = owner_chat.toast
        if toast is None and owner_chat.redirected:
            toast = _sent_privately()
        await query.answer(toast)
        return result


def owner_router(name: str) -> Router:
    """A router of owner commands and buttons: owners only, and every answer goes through
    `OwnerChat` (privately, when asked in the staff group)."""
    router = Router(name=name)
    router.message.filter(IsOwner())
    router.callback_query.filter(IsOwner())
    router.message.middleware(OwnerChatMiddleware())
    router.callback_query.middleware(OwnerChatMiddleware())
    return router


def reports_router(name: str) -> Router:
    """A router of the figures' commands and buttons for owners and branch managers (a
    handler that is the owner's alone adds `IsOwner()`); answers go through `OwnerChat`."""
    router = Router(name=name)
    router.message.filter(HasRole(Role.MANAGER))
    router.callback_query.filter(HasRole(Role.MANAGER))
    router.message.middleware(OwnerChatMiddleware())
    router.callback_query.middleware(OwnerChatMiddleware())
    return router
