"""The command menus Telegram shows next to the input field, per language and per scope:
customers in private chats, cashiers in every open branch's staff group, owners and branch
managers in their own chats (in a chain, with /branch).

Runs at start-up (`dp.startup`); a failure (a chat that does not exist yet, a network error) is
logged and the bot starts anyway. A cashier of a chain gets their private chat's menu (the
till's commands and /branch) when they choose the shop they sell in (handlers/till/shops.py).

The chain changes while the bot runs (`python -m bot branches add` from another process): the
`MenuKeeper` looks at the branches every `BranchService` cache period and registers the menus
again when what they depend on changed — a branch opened or closed, its staff group, its
managers — so a new branch's group gets the cashier menu within a minute or two, no restart.
"""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    BotCommandScopeUnion,
)
from aiogram.utils.i18n import I18n

from bot.i18n import create_i18n
from config import LANGUAGES, Settings
from handlers.commands import commands_for
from handlers.roles import Role
from services.branches import BranchInfo, BranchService, main_branch

log = logging.getLogger(__name__)


def _scopes(
    settings: Settings, branches: list[BranchInfo]
) -> list[tuple[BotCommandScopeUnion, Role, bool]]:
    scopes: list[tuple[BotCommandScopeUnion, Role, bool]] = [
        (BotCommandScopeAllPrivateChats(), Role.CUSTOMER, False)
    ]
    for branch in branches:
        if branch.is_open and branch.staff_chat_id is not None:
            scopes.append((BotCommandScopeChat(chat_id=branch.staff_chat_id), Role.CASHIER, True))
    owners = settings.telegram.owner_ids
    scopes += [(BotCommandScopeChat(chat_id=owner), Role.OWNER, False) for owner in owners]
    managers = sorted({m for b in branches if b.is_open for m in b.managers} - set(owners))
    scopes += [(BotCommandScopeChat(chat_id=tg_id), Role.MANAGER, False) for tg_id in managers]
    return scopes


def menu(
    role: Role,
    *,
    group: bool,
    language: str,
    i18n: I18n | None = None,
    chain: bool = False,
) -> list[BotCommand]:
    i18n = i18n or create_i18n(language)
    with i18n.context(), i18n.use_locale(language):
        return [
            BotCommand(command=c.name, description=str(c.description)[:256])
            for c in commands_for(role, group=group, chain=chain)
        ]


async def register_commands(
    bot: Bot, settings: Settings, branches: BranchService | None = None
) -> None:
    i18n = create_i18n(settings.store.default_language)
    found = [main_branch(settings)] if branches is None else await branches.listed()
    chain = len(found) > 1
    # `None` is the menu for clients whose language has no menu of its own: the store default.
    for language in (None, *LANGUAGES):
        for scope, role, group in _scopes(settings, found):
            commands = menu(
                role,
                group=group,
                language=language or settings.store.default_language,
                i18n=i18n,
                chain=chain,
            )
            try:
                await bot.set_my_commands(commands, scope=scope, language_code=language)
            except TelegramAPIError as exc:
                log.warning(
                    "setMyCommands(%s, %s) failed: %s", scope.type, language or "default", exc
                )
            except Exception:  # start-up must not die on a menu
                log.exception("setMyCommands(%s, %s) failed", scope.type, language or "default")
                return


def _shape(branches: list[BranchInfo]) -> tuple[object, ...]:
    """What the menus depend on: each branch's id, whether it is open, its group, its managers."""
    return tuple((b.id, b.is_open, b.staff_chat_id, b.managers) for b in branches)


class MenuKeeper:
    """Registers the menus at start-up and again whenever the chain's shape changes."""

    def __init__(self, settings: Settings, branches: BranchService) -> None:
        self.settings = settings
        self.branches = branches
        self._shown: tuple[object, ...] | None = None

    async def register(self, bot: Bot) -> None:
        """The menus for the chain as it is now (start-up, and after a change)."""
        shape = _shape(await self.branches.listed())
        await register_commands(bot, self.settings, self.branches)
        self._shown = shape

    async def check(self, bot: Bot) -> bool:
        """Register again if the chain changed since the menus were last set; True if it did."""
        if self._shown == _shape(await self.branches.listed()):
            return False
        await self.register(bot)
        return True

    async def run(self, bot: Bot) -> None:
        """`check` every cache period of the branch list (runs until cancelled)."""
        while True:
            await asyncio.sleep(self.branches.ttl)
            try:
                await self.check(bot)
            except Exception:  # a database hiccup: the next period tries again
                log.exception("refreshing the command menus failed")
