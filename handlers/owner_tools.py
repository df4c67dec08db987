"""Owners only: /block a lost card, /unbind a card from its account, /staff (who works here and
the latest audit events). Everyone else falls through to the next routers untouched."""

from __future__ import annotations

import html
import logging
from datetime import datetime, timedelta

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import Message, User
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from handlers import formatting
from handlers.roles import IsOwner
from services import card_admin
from services.card_admin import CardChange
from services.cards import group_number
from services.delivery import Outbox

log = logging.getLogger(__name__)
router = Router(name=__name__)
router.message.filter(IsOwner())
router.callback_query.filter(IsOwner())

CASHIER_LOOKBACK = timedelta(days=90)


def _usage(command: str) -> str:
    return _("Send the card number after the command, e.g. /{command} 100045.").format(
        command=command
    )


async def _tell_holder(
    outbox: Outbox, i18n: I18n, change: CardChange, text_for: str, now: datetime
) -> bool:
    """Queue a note to the card's holder in their own language (through the delivery
    service); False when there is nobody to tell."""
    if change.notify_tg_id is None:
        return False
    with i18n.use_locale(change.notify_language or i18n.default_locale):
        if text_for == "blocked":
            text = _(
                "Your loyalty card {number} was blocked by the store. If you did not ask for "
                "this, please contact the store."
            )
        else:
            text = _(
                "Your loyalty card {number} was unlinked from your Telegram account by the "
                "store. Send /start to link a card again."
            )
        text = text.format(number=group_number(change.number))
    return await outbox.post(
        key=f"card.{text_for}:{change.number}:{now:%Y%m%dT%H%M%S}",
        kind="text",
        chat_id=change.notify_tg_id,
        payload={"text": text},
    )


@router.message(Command("block"))
async def block(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    now: datetime,
    outbox: Outbox,
    i18n: I18n,
) -> None:
    assert message.from_user is not None
    if not command.args:
        await message.answer(_usage("block"))
        return
    change = await card_admin.block_card(
        session, command.args, actor_id=message.from_user.id, now=now
    )
    number = group_number(change.number)
    if not change.changed:
        await message.answer(_("Card {number} is already blocked.").format(number=number))
        return
    told = await _tell_holder(outbox, i18n, change, "blocked", now)
    text = _("Card {number} is blocked: the till will refuse it.").format(number=number)
    if told:
        text += "\n" + _("Its holder will be told.")
    await message.answer(text)


@router.message(Command("unbind"))
async def unbind(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    now: datetime,
    outbox: Outbox,
    i18n: I18n,
) -> None:
    assert message.from_user is not None
    if not command.args:
        await message.answer(_usage("unbind"))
        return
    change = await card_admin.unbind_card(
        session, command.args, actor_id=message.from_user.id, now=now
    )
    number = group_number(change.number)
    if not change.changed:
        await message.answer(_("Card {number} is not linked to anyone.").format(number=number))
        return
    told = await _tell_holder(outbox, i18n, change, "unbound", now)
    text = _("Card {number} is unlinked from its Telegram account; it can be linked again.").format(
        number=number
    )
    if told:
        text += "\n" + _("Its holder will be told.")
    await message.answer(text)


def _person(user: User) -> str:
    name = html.escape(user.full_name)
    if user.username:
        name += f" (@{html.escape(user.username)})"
    return f"{name} — <code>{user.id}</code>"


@router.message(Command("staff"))
async def staff_list(
    message: Message, session: AsyncSession, settings: Settings, now: datetime, bot: Bot
) -> None:
    lines = [_("<b>Owners</b> (OWNER_IDS):")]
    lines += [f"• <code>{owner_id}</code>" for owner_id in settings.owner_ids]

    lines += ["", _("<b>Administrators of the staff group</b>:")]
    if settings.staff_chat_id is None:
        lines.append(_("STAFF_CHAT_ID is not set: nobody has cashier rights."))
    else:
        try:
            admins = await bot.get_chat_administrators(settings.staff_chat_id)
            people = [a.user for a in admins if not a.user.is_bot]
            lines += [f"• {_person(user)}" for user in people] or [_("none")]
        except TelegramAPIError as exc:
            log.warning("getChatAdministrators(%s) failed: %s", settings.staff_chat_id, exc)
            lines.append(_("Could not read the staff group (is the bot a member?)."))
        lines.append(_("Every member of the staff group may record sales."))

    overview = await card_admin.staff_overview(session, since=now - CASHIER_LOOKBACK)
    lines += ["", _("<b>Recorded sales in the last 90 days</b>:")]
    lines += [
        _("• <code>{id}</code>: {count} sales, last {when}").format(
            id=c.tg_id,
            count=formatting.number(c.purchases),
            when=formatting.when(c.last_at, settings),
        )
        for c in overview.cashiers
    ] or [_("none")]

    lines += ["", _("<b>Latest audit events</b> (store time):")]
    for event in overview.events:
        parts = [formatting.when(event.at, settings), html.escape(event.action)]
        if event.actor_id is not None:
            parts.append(_("by {id}").format(id=event.actor_id))
        if event.card_number:
            parts.append(_("card {number}").format(number=group_number(event.card_number)))
        if event.purchase_id is not None:
            parts.append(_("purchase #{id}").format(id=event.purchase_id))
        lines.append("• " + " · ".join(parts))
    if not overview.events:
        lines.append(_("none"))
    await message.answer("\n".join(lines))
