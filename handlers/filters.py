"""Filters that are checked on the event loop.

aiogram runs a filter that is a plain callable — a bare `F` expression or a `State` — in a
worker thread (`asyncio.to_thread` in `CallableObject.call`): two thread switches and a GIL
hand-off for what is an attribute lookup. At the till that was two thread round trips per
update (README, the till's benchmark). So the routers write

    router.message.register(take_text, Match(F.text), ~Match(F.text.startswith("/")))
    router.message.register(take_amount, StateFilter(TillStates.amount))  # aiogram's own

and `tests/test_routing.py` checks that no router is left with a filter or handler that aiogram
would hand to a thread.
"""

from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from aiogram.types import TelegramObject
from magic_filter import MagicFilter

from services.branches import BranchService


class Match(Filter):
    """A magic filter (`F.…`) as an async filter: the same result as the bare expression (a
    falsy value rejects, a dict from `.as_()` goes to the handler), without the thread."""

    def __init__(self, magic: MagicFilter) -> None:
        self.magic = magic

    async def __call__(self, event: TelegramObject) -> Any:
        return self.magic.resolve(event)

    def __str__(self) -> str:
        return f"Match({self.magic!r})"


class InChain(Filter):
    """More than one branch (closed ones included): only then do users see branches — the
    till's /branch, the shops sorted by distance (`BranchService.is_chain`)."""

    async def __call__(self, event: TelegramObject, branches: BranchService) -> bool:
        return await branches.is_chain()
