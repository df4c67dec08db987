"""/store: where the shop is; in a chain every open branch, nearest first once the customer
shares a location.

A one-shop install answers as it always did: the shop's block (from the settings) and its
venue. A chain (`BranchService.is_chain`) lists the open branches, one block each, with a
reply-keyboard button that shares the customer's location (when some branch is on the map);
the location, sent in a private chat outside any conversation step, gets the list sorted by
distance and the nearest branch's venue, and takes the keyboard away. Outside a chain a
location is left to the routers after the wallet, as before.
"""

from __future__ import annotations

import html

from aiogram.types import KeyboardButton, Message, ReplyKeyboardMarkup, ReplyKeyboardRemove
from aiogram.utils.i18n import gettext as _
from babel.numbers import format_decimal

from config import Settings
from handlers import formatting
from services.branches import BranchInfo, BranchService, distance_km

# Telegram's limit for a message's text; a chain of a hundred shops takes several messages.
MESSAGE_LIMIT = 4096


def _block(
    name: str, address: str, hours: str, phone: str, distance: float | None = None
) -> list[str]:
    title = f"<b>{html.escape(name)}</b>"
    if distance is not None:
        title += " — " + _distance(distance)
    lines = [title]
    if address:
        lines.append(_("📍 Address: {address}").format(address=html.escape(address)))
    if hours:
        lines.append(_("🕒 Opening hours: {hours}").format(hours=html.escape(hours)))
    if phone:
        lines.append(_("📞 Phone: {phone}").format(phone=html.escape(phone)))
    return lines


def _distance(km: float) -> str:
    """`0.4 km`, `12 km` in the customer's language (`0,4 км`)."""
    shape = "#,##0.0" if km < 10 else "#,##0"
    value = format_decimal(round(km, 1), format=shape, locale=formatting.current_locale())
    return _("{distance} km").format(distance=value)


def _messages(blocks: list[list[str]], head: str, tail: str | None) -> list[str]:
    """The blocks, a blank line apart, cut into messages Telegram accepts."""
    parts = [head, *("\n".join(block) for block in blocks)]
    if tail:
        parts.append(tail)
    messages: list[str] = []
    current = ""
    for part in parts:
        if current and len(current) + 2 + len(part) > MESSAGE_LIMIT:
            messages.append(current)
            current = part
        else:
            current = f"{current}\n\n{part}" if current else part
    messages.append(current)
    return messages


def _location_keyboard() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=_("📍 Share my location"), request_location=True)]],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


async def store(message: Message, settings: Settings, branches: BranchService) -> None:
    if not await branches.is_chain():
        await _one_shop(message, settings)
        return
    shops = await branches.open()
    located = any(b.located for b in shops)
    blocks = [_block(b.name, b.address, b.hours, b.phone) for b in shops]
    tail = _("Share your location and I will sort them by distance.") if located else None
    texts = _messages(blocks, _("<b>Our shops</b>"), tail)
    for i, text in enumerate(texts):
        last = i == len(texts) - 1
        await message.answer(text, reply_markup=_location_keyboard() if last and located else None)


async def _one_shop(message: Message, settings: Settings) -> None:
    store = settings.store
    await message.answer("\n".join(_block(store.name, store.address, store.hours, store.phone)))
    if store.latitude is not None and store.longitude is not None:
        await message.answer_venue(
            latitude=store.latitude,
            longitude=store.longitude,
            title=store.name,
            address=store.address or store.name,
        )


def by_distance(
    shops: list[BranchInfo], latitude: float, longitude: float
) -> list[tuple[BranchInfo, float | None]]:
    """The shops nearest first; those without a map location after them, in their order."""
    found = [
        (b, distance_km(latitude, longitude, b.latitude, b.longitude))
        for b in shops
        if b.latitude is not None and b.longitude is not None
    ]
    found.sort(key=lambda pair: (pair[1], pair[0].id))
    return [*found, *((b, None) for b in shops if not b.located)]


async def shared_location(message: Message, branches: BranchService) -> None:
    """A location shared in a chain (the /store button): the open branches nearest first and
    the nearest one's venue; the reply keyboard goes away."""
    assert message.location is not None
    shops = await branches.open()
    ordered = by_distance(shops, message.location.latitude, message.location.longitude)
    nearest = ordered[0][0] if ordered and ordered[0][1] is not None else None
    if nearest is None:  # no branch is on the map: the plain list
        blocks = [_block(b.name, b.address, b.hours, b.phone) for b in shops]
        head = _("<b>Our shops</b>")
    else:
        blocks = [_block(b.name, b.address, b.hours, b.phone, km) for b, km in ordered]
        head = _("<b>Our shops</b>, nearest first:")
    texts = _messages(blocks, head, None)
    for i, text in enumerate(texts):
        last = i == len(texts) - 1
        await message.answer(text, reply_markup=ReplyKeyboardRemove() if last else None)
    if nearest is not None:
        assert nearest.latitude is not None and nearest.longitude is not None
        await message.answer_venue(
            latitude=nearest.latitude,
            longitude=nearest.longitude,
            title=nearest.name,
            address=nearest.address or nearest.name,
        )
