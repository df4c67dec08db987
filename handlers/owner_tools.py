"""Owners only: /block a lost card (after a confirmation) and /unblock it when it turns up,
/unbind a card from its account, /staff (who works here) and /audit (what happened lately).
Everyone else falls through to the next routers untouched. Answers go to the owner's private
chat, also when the owner types the command in the staff group (`handlers/owner_chat.py`)."""

from __future__ import annotations

import html
import logging
from datetime import datetime, timedelta
from enum import StrEnum

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, User
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from config import Settings
from db.database import Database
from handlers import formatting
from handlers.errors import renders
from handlers.outbox import CARD_NOTE_KIND
from handlers.owner_chat import OwnerChat, owner_router
from handlers.roles import StaffDirectory
from services import card_admin
from services.branches import BranchService
from services.card_admin import AuditLine, CannotUnblock, CardChange
from services.cards import group_number, normalize_number
from services.delivery import Outbox
from services.reports import ReportService

log = logging.getLogger(__name__)

CASHIER_LOOKBACK = timedelta(days=90)
# A block confirmation older than this is refused: the owner looks at the card again.
BLOCK_CONFIRM_TTL = timedelta(minutes=10)
AUDIT_LINES = 30


class BlockAction(StrEnum):
    BLOCK = "yes"
    KEEP = "no"


class BlockCb(CallbackData, prefix="blk"):
    action: BlockAction
    number: str
    asked: int  # when the question was asked, Unix seconds: the button expires


def _usage(command: str) -> str:
    return _("Send the card number after the command, e.g. /{command} 100045.").format(
        command=command
    )


@renders(CannotUnblock)
def _cannot_unblock(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, CannotUnblock)
    number = group_number(exc.number)
    if exc.reason in ("erased", "holder_erased"):
        return _(
            "Card {number} stays blocked: its holder erased their data. Hand out a new card "
            "instead."
        ).format(number=number)
    if exc.reason == "replaced":
        return _(
            "Card {number} stays blocked: its holder replaced it with another card, which they "
            "use now."
        ).format(number=number)
    if exc.reason == "holder_has_card":
        return _(
            "Card {number} stays blocked: its holder has linked card {other} since. To hand "
            "this card to someone else, /unbind {plain} first, then /unblock {plain}."
        ).format(number=number, other=group_number(exc.other_number or ""), plain=exc.number)
    return _("Card {number} stays blocked ({reason}).").format(number=number, reason=exc.reason)


async def _tell_holder(outbox: Outbox, change: CardChange, what: str, now: datetime) -> bool:
    """Queue a note to the card's holder (`what`: blocked | unblocked | unbound), sent by the
    delivery service in their own language; False when there is nobody to tell."""
    if change.notify_tg_id is None:
        return False
    return await outbox.post(
        key=f"card.{what}:{change.number}:{now:%Y%m%dT%H%M%S}",
        kind=CARD_NOTE_KIND,
        chat_id=change.notify_tg_id,
        payload={"number": change.number, "change": what},
    )


# ------------------------------------------------------------------------------ /block


def _block_keyboard(number: str, now: datetime) -> InlineKeyboardMarkup:
    asked = int(now.timestamp())
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("✅ Block"),
                    callback_data=BlockCb(
                        action=BlockAction.BLOCK, number=number, asked=asked
                    ).pack(),
                ),
                InlineKeyboardButton(
                    text=_("❌ Keep"),
                    callback_data=BlockCb(
                        action=BlockAction.KEEP, number=number, asked=asked
                    ).pack(),
                ),
            ]
        ]
    )


async def block(
    message: Message,
    command: CommandObject,
    reports: ReportService,
    settings: Settings,
    now: datetime,
    owner_chat: OwnerChat,
) -> None:
    if not command.args:
        await owner_chat.send(_usage("block"))
        return
    card = await reports.card(command.args, limit=0)  # the owner's one view of a card
    number = group_number(card.number)
    if card.status == "blocked":
        await owner_chat.send(_("Card {number} is already blocked.").format(number=number))
        return
    lines = [_("Block card {number}? The till will refuse it from now on.").format(number=number)]
    if card.holder or card.bound_at is not None:
        lines.append(_("It is linked to {holder}.").format(holder=html.escape(card.holder or "?")))
    lines.append(
        _("Purchases: {count}, total {total}").format(
            count=formatting.number(card.purchases),
            total=formatting.money(card.total, settings),
        )
    )
    await owner_chat.send("\n".join(lines), reply_markup=_block_keyboard(card.number, now))


async def block_answer(
    cq: CallbackQuery,
    callback_data: BlockCb,
    db: Database,
    now: datetime,
    outbox: Outbox,
    i18n: I18n,
    owner_chat: OwnerChat,
) -> None:
    plain = normalize_number(callback_data.number)  # button data may be forged
    number = group_number(plain)
    if callback_data.action is BlockAction.KEEP:
        await owner_chat.show(_("Card {number} stays active.").format(number=number))
        return
    # Compared as Unix seconds: forged button data can hold any integer.
    age = int(now.timestamp()) - callback_data.asked
    if not -60 <= age <= BLOCK_CONFIRM_TTL.total_seconds():
        owner_chat.toast = _("This button has expired.")
        await owner_chat.show(
            _("Nothing changed: that question is too old. Send /block {plain} again.").format(
                plain=plain
            )
        )
        return
    change = await card_admin.block_card(db, plain, actor_id=cq.from_user.id, now=now)
    if not change.changed:  # a second tap, or blocked meanwhile: nothing to do
        owner_chat.toast = _("Card {number} is already blocked.").format(number=number)
        return
    told = await _tell_holder(outbox, change, "blocked", now)
    text = _("Card {number} is blocked: the till will refuse it.").format(number=number)
    if told:
        text += "\n" + _("Its holder will be told.")
    text += "\n" + _("Found again? /unblock {plain}").format(plain=change.number)
    await owner_chat.show(text)


async def unblock(
    message: Message,
    command: CommandObject,
    db: Database,
    now: datetime,
    outbox: Outbox,
    i18n: I18n,
    owner_chat: OwnerChat,
) -> None:
    assert message.from_user is not None
    if not command.args:
        await owner_chat.send(_usage("unblock"))
        return
    change = await card_admin.unblock_card(db, command.args, actor_id=message.from_user.id, now=now)
    number = group_number(change.number)
    if not change.changed:
        await owner_chat.send(_("Card {number} is not blocked.").format(number=number))
        return
    told = await _tell_holder(outbox, change, "unblocked", now)
    text = _("Card {number} is unblocked: the till accepts it again.").format(number=number)
    if told:
        text += "\n" + _("Its holder will be told.")
    await owner_chat.send(text)


async def unbind(
    message: Message,
    command: CommandObject,
    db: Database,
    now: datetime,
    outbox: Outbox,
    i18n: I18n,
    owner_chat: OwnerChat,
) -> None:
    assert message.from_user is not None
    if not command.args:
        await owner_chat.send(_usage("unbind"))
        return
    change = await card_admin.unbind_card(db, command.args, actor_id=message.from_user.id, now=now)
    number = group_number(change.number)
    if not change.changed:
        await owner_chat.send(_("Card {number} is not linked to anyone.").format(number=number))
        return
    told = await _tell_holder(outbox, change, "unbound", now)
    text = _("Card {number} is unlinked from its Telegram account; it can be linked again.").format(
        number=number
    )
    if told:
        text += "\n" + _("Its holder will be told.")
    await owner_chat.send(text)


# ---------------------------------------------------------------------- /staff, /audit


def _person(user: User) -> str:
    name = html.escape(user.full_name)
    if user.username:
        name += f" (@{html.escape(user.username)})"
    return f"{name} — <code>{user.id}</code>"


def _named(tg_id: int, names: dict[int, str]) -> str:
    name = names.get(tg_id)
    if name is None:
        return f"<code>{tg_id}</code>"
    return f"{html.escape(name)} — <code>{tg_id}</code>"


def _action_names() -> dict[str, str]:
    return {
        "card.blocked": _("card blocked"),
        "card.unblocked": _("card unblocked"),
        "card.unbound": _("card unlinked"),
        "card.bound": _("card linked"),
        "card.replaced": _("card replaced by another"),
        "card.issued": _("card handed out"),
        "card.digital_issued": _("digital card issued"),
        "card.bind_locked": _("card locked after wrong attempts"),
        "cards.added": _("cards registered"),
        "cards.imported": _("cards imported"),
        "purchases.imported": _("purchase history imported"),
        "sale.confirmed": _("sale"),
        "sale.voided": _("sale voided"),
        "offer.redeemed": _("offer used"),
        "client.consent": _("agreed to the terms"),
        "client.phone": _("phone number added"),
        "client.birthday": _("birthday added"),
        "client.erased": _("data erased"),
        "marketing.on": _("offers turned on"),
        "marketing.off": _("offers turned off"),
    }


def _audit_lines(events: list[AuditLine], names: dict[int, str], settings: Settings) -> list[str]:
    actions = _action_names()
    lines = []
    for event in events:
        parts = [
            formatting.when(event.at, settings),
            html.escape(actions.get(event.action, event.action)),
        ]
        if event.actor_id is not None:
            parts.append(_("by {who}").format(who=_named(event.actor_id, names)))
        if event.card_number:
            parts.append(_("card {number}").format(number=group_number(event.card_number)))
        if event.purchase_id is not None:
            parts.append(_("purchase #{id}").format(id=event.purchase_id))
        lines.append("• " + " · ".join(parts))
    return lines or [_("none")]


async def _group_admins(bot: Bot, chat_id: int) -> list[str]:
    """A staff group's administrators, one line each (or why they could not be read)."""
    try:
        admins = await bot.get_chat_administrators(chat_id)
    except TelegramAPIError as exc:
        log.warning("getChatAdministrators(%s) failed: %s", chat_id, exc)
        return [_("Could not read the staff group (is the bot a member?).")]
    people = [a.user for a in admins if not a.user.is_bot]
    return [f"• {_person(user)}" for user in people] or [_("none")]


async def staff_list(
    message: Message,
    db: Database,
    settings: Settings,
    now: datetime,
    bot: Bot,
    staff: StaffDirectory,
    branches: BranchService,
    owner_chat: OwnerChat,
) -> None:
    overview = await card_admin.staff_overview(db, since=now - CASHIER_LOOKBACK)
    managers = {m for b in await branches.listed() for m in b.managers}
    names = await staff.names(
        bot,
        {
            *settings.telegram.owner_ids,
            *managers,
            *(c.tg_id for c in overview.cashiers),
            *(e.actor_id for e in overview.events if e.actor_id is not None),
        },
    )

    lines = [_("<b>Owners</b> (OWNER_IDS):")]
    lines += [f"• {_named(owner_id, names)}" for owner_id in settings.telegram.owner_ids]

    shops = await branches.listed()
    if len(shops) <= 1:  # one shop: its staff group, as STAFF_CHAT_ID says
        lines += ["", _("<b>Administrators of the staff group</b>:")]
        if settings.telegram.staff_chat_id is None:
            lines.append(_("STAFF_CHAT_ID is not set: nobody has cashier rights."))
        else:
            lines += await _group_admins(bot, settings.telegram.staff_chat_id)
            lines.append(_("Every member of the staff group may record sales."))
    else:  # a chain: each open branch's group and managers
        for shop in (b for b in shops if b.is_open):
            lines += [
                "",
                _("<b>{branch}</b>: administrators of its staff group").format(
                    branch=html.escape(shop.name)
                ),
            ]
            if shop.staff_chat_id is None:
                lines.append(_("No staff group: nobody sells for this branch."))
            else:
                lines += await _group_admins(bot, shop.staff_chat_id)
            if shop.managers:
                who = ", ".join(_named(m, names) for m in shop.managers)
                lines.append(_("Managers: {who}").format(who=who))
        lines.append("")
        lines.append(_("Every member of a branch's staff group may record sales for it."))

    lines += ["", _("<b>Recorded sales in the last 90 days</b>:")]
    lines += [
        ngettext(
            "• {who}: {count} sale, last {when}", "• {who}: {count} sales, last {when}", c.purchases
        ).format(
            who=_named(c.tg_id, names),
            count=formatting.number(c.purchases),
            when=formatting.when(c.last_at, settings),
        )
        for c in overview.cashiers
    ] or [_("none")]

    lines += ["", _("<b>Latest audit events</b> (store time):")]
    lines += _audit_lines(overview.events, names, settings)
    await owner_chat.send("\n".join(lines))


async def audit_view(
    message: Message,
    command: CommandObject,
    db: Database,
    settings: Settings,
    bot: Bot,
    staff: StaffDirectory,
    owner_chat: OwnerChat,
) -> None:
    events = await card_admin.audit_trail(db, card_text=command.args, limit=AUDIT_LINES)
    names = await staff.names(bot, {e.actor_id for e in events if e.actor_id is not None})
    if command.args:
        title = _("<b>Audit events of card {number}</b> (store time, newest first):").format(
            number=group_number(normalize_number(command.args))
        )
    else:
        title = _("<b>Latest audit events</b> (store time, newest first):")
    await owner_chat.send("\n".join([title, *_audit_lines(events, names, settings)]))


def setup() -> Router:
    """This feature's router, built anew for each dispatcher (handlers in routing order)."""
    router = owner_router(__name__)
    router.message.register(block, Command("block"))
    router.callback_query.register(block_answer, BlockCb.filter())
    router.message.register(unblock, Command("unblock"))
    router.message.register(unbind, Command("unbind"))
    router.message.register(staff_list, Command("staff"))
    router.message.register(audit_view, Command("audit"))
    return router
