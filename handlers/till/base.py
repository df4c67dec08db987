"""The till's callback data, amount step, chat filters and what counts as a payload or an amount."""

from __future__ import annotations

import logging
import re

from aiogram import Bot
from aiogram.filters import Filter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    Message,
)
from aiogram.utils.i18n import lazy_gettext as __

from services import qr_payload
from services.branches import BranchInfo, BranchService

log = logging.getLogger(__name__)

# A card number as a cashier types it in the staff group (digits, spaces, dashes).
NUMBER_TEXT = re.compile(r"\s*\d[\d \-]{3,30}\s*")
# What a cashier types as an amount: digits and separators, maybe a currency word or sign.
_CURRENCY_WORDS = re.compile(r"(?i)₽|€|\$|руб\.?|р\.?|rub|eur")
_AMOUNT_TEXT = re.compile(r"[\d\s.,'’\u00a0\u202f]*\d[\d\s.,'’\u00a0\u202f]*")
# A scanner that dropped or changed characters still produced something payload-shaped
# (static `c…_…` or live `l…_…_…`).
_LOOSE_PAYLOAD = re.compile(r"(?:c\d{1,25}|l\d{1,25}_\d{0,15})_\S{0,40}")

PROMPT = __("Enter the purchase amount in reply to this message.")


class TillStates(StatesGroup):
    amount = State()
    branch = State()  # a cashier of several shops asked which one they sell in


class TillCb(CallbackData, prefix="till"):
    action: str  # ok | no | void
    ref: str  # draft id or purchase id: a lookup key, re-validated by the service


class TillChat(Filter):
    """A private chat with the bot or an open branch's staff group; other groups are not a till.
    The handlers get the group's branch as `shop` (None in a private chat: see branch.py)."""

    async def __call__(
        self, message: Message, branches: BranchService
    ) -> bool | dict[str, BranchInfo | None]:
        if message.chat.type == "private":
            return _PRIVATE
        shop = await branches.by_chat(message.chat.id)  # in memory (the branch cache)
        return False if shop is None else {"shop": shop}


_PRIVATE: dict[str, BranchInfo | None] = {"shop": None}


class InStaffGroup(Filter):
    """An open branch's staff group (`TillChat` found its branch)."""

    async def __call__(self, message: Message, shop: BranchInfo | None = None) -> bool:
        return shop is not None


class AmountAnswer(Filter):
    """In a private chat any text in the amount state. In a group a reply to the bot, or —
    from the cashier the bot is waiting for (the state is theirs in this chat) — a bare amount:
    on a desktop ForceReply does not force, and `1500` typed under the prompt is the amount."""

    async def __call__(self, message: Message, bot: Bot) -> bool:
        if message.chat.type == "private" or _is_reply_to_bot(message, bot):
            return True
        text = message.text or ""
        return len(text) <= 32 and bool(_AMOUNT_TEXT.fullmatch(_CURRENCY_WORDS.sub("", text)))


def _is_reply_to_bot(message: Message, bot: Bot) -> bool:
    reply = message.reply_to_message
    return reply is not None and reply.from_user is not None and reply.from_user.id == bot.id


def payload_candidate(text: str | None) -> str | None:
    """What looks like a card payload in scanned or pasted text (valid or not)."""
    if not text or len(text) > 512:
        return None
    candidate = qr_payload.extract(text)
    if candidate is None and _LOOSE_PAYLOAD.fullmatch(text.strip()):
        candidate = text.strip()
    return candidate if candidate and qr_payload.starts_like_payload(candidate) else None
