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
    chain_only: bool = False  # True: offered only in a chain (more than one branch)


COMMANDS: list[Command] = [
    Command("card", __("show my loyalty card")),
    Command("history", __("my purchases and savings")),
    Command("offers", __("my personal offers")),
    Command("invite", __("invite friends: you both get a bonus")),
    Command("store", __("address, hours and phone of the store")),
    Command("language", __("change the language")),
    Command("notifications", __("turn offers and surveys on or off")),
    Command("privacy", __("how we use your data")),
    Command("mydata", __("download everything stored about me")),
    Command("deletemydata", __("erase my data")),
    Command("help", __("what this bot can do"), private_only=False),
    Command("cancel", __("leave the current step"), private_only=False),
    Command("sale", __("record a purchase: /sale card number"), Role.CASHIER, private_only=False),
    Command("issue", __("hand out a card: /issue number [b2b]"), Role.CASHIER, private_only=False),
    Command("void", __("void a purchase: /void ID"), Role.CASHIER, private_only=False),
    Command("branch", __("the shop you sell in; switch shops"), Role.CASHIER, chain_only=True),
    Command("stats", __("program KPIs: /stats 30d, /stats month"), Role.MANAGER),
    Command("digest", __("the weekly digest now"), Role.MANAGER),
    Command("export", __("export the data as XLSX or CSV"), Role.OWNER),
    Command("cards", __("card inventory; /card N for one card"), Role.OWNER),
    Command("block", __("block a lost card: /block number"), Role.OWNER),
    Command("unblock", __("unblock a card that was found: /unblock number"), Role.OWNER),
    Command("unbind", __("unbind a card from its owner: /unbind number"), Role.OWNER),
    Command("staff", __("staff list and recent audit events"), Role.OWNER),
    Command("audit", __("audit log; /audit N for one card"), Role.OWNER),
    Command("promos", __("happy hours: /promos, /promos add …"), Role.OWNER),
    Command("campaign", __("a new campaign with a hold-out group"), Role.OWNER),
    Command("campaigns", __("campaigns and their results"), Role.OWNER),
]


def commands_for(role: Role, *, group: bool = False, chain: bool = False) -> list[Command]:
    """Commands a person with `role` may use, cumulative (owners can do what managers can,
    managers what cashiers can); `chain`: the install has more than one branch."""
    result = []
    for command in COMMANDS:
        if command.role > role:
            continue
        if group and command.private_only:
            continue
        if command.chain_only and not chain:
            continue
        result.append(command)
    return result
