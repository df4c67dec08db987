"""`my_chat_member` in private chats: a user blocked the bot (unreachable) or came back."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import KICKED, MEMBER, ChatMemberUpdatedFilter
from aiogram.types import ChatMemberUpdated

from handlers.filters import Match
from services.wallet import WalletService

router = Router(name=__name__)
router.my_chat_member.filter(Match(F.chat.type == "private"))


@router.my_chat_member(ChatMemberUpdatedFilter(member_status_changed=KICKED))
async def blocked(event: ChatMemberUpdated, wallet: WalletService) -> None:
    await wallet.set_reachable(event.from_user.id, False)


@router.my_chat_member(ChatMemberUpdatedFilter(member_status_changed=MEMBER))
async def unblocked(event: ChatMemberUpdated, wallet: WalletService) -> None:
    await wallet.set_reachable(event.from_user.id, True)
