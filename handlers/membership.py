"""`my_chat_member` in private chats: a user blocked the bot (unreachable) or came back."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import KICKED, MEMBER, ChatMemberUpdatedFilter
from aiogram.types import ChatMemberUpdated

from handlers.filters import Match
from services.wallet import WalletService


async def blocked(event: ChatMemberUpdated, wallet: WalletService) -> None:
    await wallet.set_reachable(event.from_user.id, False)


async def unblocked(event: ChatMemberUpdated, wallet: WalletService) -> None:
    await wallet.set_reachable(event.from_user.id, True)


def setup() -> Router:
    """This feature's router, built anew for each dispatcher (handlers in routing order)."""
    router = Router(name=__name__)
    router.my_chat_member.filter(Match(F.chat.type == "private"))
    router.my_chat_member.register(blocked, ChatMemberUpdatedFilter(member_status_changed=KICKED))
    router.my_chat_member.register(unblocked, ChatMemberUpdatedFilter(member_status_changed=MEMBER))
    return router
