"""The bot's commands per role: one list feeds `/help` and the menus registered with Telegram.

Feature modules append their commands here, in the order people should see them.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiogram.utils.i18n import lazy_gettext as __

from handlers.roles import Role


@dataclass(frozen=True)
class Command:
    name: str
    description: object  # a lazy gettext string, rendered in the reader's language
    role: Role = Role.CUSTOMER
    private_only: bool = True  # False: also offered in the staff group


COMMANDS: list[Command] = [
    Command("help", __("what this bot can do")),
    Command("cancel", __("leave the current step")),
]


def commands_for(role: Role, *, group: bool = False) -> list[Command]:
    """Commands a person with `role` may use, cumulative (owners can do what cashiers can)."""
    result = []
    for command in COMMANDS:
        if command.role > role:
            continue
        if group and command.private_only:
            continue
        result.append(command)
    return result
