"""Owners: happy hours in Telegram — `/promos` lists the running ones with an ⏹ End button
each; `/promos add NAME PCT DAYS HH:MM-HH:MM [YYYY-MM-DD]` starts one (the CLI's
`promos add`, in one line)."""

from __future__ import annotations

import html
from datetime import date, datetime

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from babel.dates import get_day_names

from config import Settings
from db.database import Database
from handlers import formatting
from handlers.errors import renders
from handlers.owner_chat import OwnerChat, owner_router
from services.promotions import (
    InvalidPromotion,
    PromotionExists,
    PromotionNotFound,
    PromotionService,
    PromotionView,
    format_time,
    parse_days,
    parse_time,
)


class PromoCb(CallbackData, prefix="promo"):
    id: int


def _usage() -> str:
    return _(
        "Start a happy hour: <code>/promos add NAME PCT DAYS HH:MM-HH:MM [YYYY-MM-DD]</code>, "
        "e.g. <code>/promos add Morning 3 mon,tue 10:00-12:00</code> (days: mon…sun, "
        "mon-fri, all; the last day is optional)."
    )


def _line(view: PromotionView, settings: Settings) -> str:
    locale = formatting.current_locale()
    names = get_day_names("abbreviated", locale=locale)
    days = ", ".join(names[i] for i in range(7) if view.weekdays & (1 << i))
    text = _("<b>{name}</b>: +{pct}, {days}, {start}–{end}").format(
        name=html.escape(view.name),
        pct=formatting.pct(view.bonus_pct),
        days=days,
        start=format_time(view.starts),
        end=format_time(view.ends),
    )
    if view.until is not None:
        text += _(", until {day}").format(day=formatting.day(view.until, settings))
    return text


async def _listing(
    service: PromotionService, settings: Settings
) -> tuple[str, InlineKeyboardMarkup | None]:
    views = await service.listed()
    if not views:
        return _("No happy hours are running.") + "\n\n" + _usage(), None
    lines = [_("<b>Happy hours</b> (store time):")]
    lines += [f"• {_line(view, settings)}" for view in views]
    lines += ["", _usage()]
    buttons = [
        [
            InlineKeyboardButton(
                text=_("⏹ End {name}").format(name=view.name[:40]),
                callback_data=PromoCb(id=view.id).pack(),
            )
        ]
        for view in views
    ]
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=buttons)


async def promos(
    message: Message,
    command: CommandObject,
    db: Database,
    settings: Settings,
    now: datetime,
    owner_chat: OwnerChat,
) -> None:
    service = PromotionService(db, settings, lambda: now)
    words = (command.args or "").split()
    if words and words[0].lower() == "add":
        if len(words) not in (5, 6):
            await owner_chat.send(_usage())
            return
        _keyword, name, pct, days, hours, *until = words
        start, _dash, end = hours.partition("-")
        if not pct.isdigit():
            raise InvalidPromotion("bonus", pct)
        try:
            last = date.fromisoformat(until[0]) if until else None
        except ValueError:
            raise InvalidPromotion("until", until[0]) from None
        view = await service.add(
            name,
            bonus_pct=int(pct),
            weekdays=parse_days(days),
            starts=parse_time(start),
            ends=parse_time(end),
            until=last,
            actor_id=message.from_user.id if message.from_user else None,
        )
        await owner_chat.send(_("Happy hour started: {line}").format(line=_line(view, settings)))
        return
    if words:
        await owner_chat.send(_usage())
        return
    text, markup = await _listing(service, settings)
    await owner_chat.send(text, reply_markup=markup)


async def end_promo(
    cq: CallbackQuery,
    callback_data: PromoCb,
    db: Database,
    settings: Settings,
    now: datetime,
    owner_chat: OwnerChat,
) -> None:
    service = PromotionService(db, settings, lambda: now)
    try:
        await service.end(callback_data.id, actor_id=cq.from_user.id)
    except PromotionNotFound:  # ended meanwhile, or a forged id
        await cq.answer(_("That happy hour is not running."), show_alert=True)
    else:
        await cq.answer(_("Ended."))
    text, markup = await _listing(service, settings)
    await owner_chat.show(text, reply_markup=markup)


@renders(InvalidPromotion)
def _invalid(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, InvalidPromotion)
    texts = {
        "name": _("A happy hour needs a name of 1 to 64 characters."),
        "bonus": _("The bonus must be a whole number from 1 to 99."),
        "days": _("Days are mon…sun, separated by commas, a range like mon-fri, or all."),
        "time": _("Times are store times like 10:00."),
        "window": _("The hours must start before they end, within one day."),
        "until": _("The last day must be today or later, written YYYY-MM-DD."),
    }
    return texts[exc.field] + "\n" + _usage()


@renders(PromotionExists)
def _exists(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, PromotionExists)
    return _("A happy hour named {name} exists already: pick another name.").format(
        name=html.escape(exc.name)
    )


@renders(PromotionNotFound)
def _not_found(exc: Exception, settings: Settings) -> str:
    return _("That happy hour is not running.")


def setup() -> Router:
    router = owner_router(__name__)
    router.message.register(promos, Command("promos"))
    router.callback_query.register(end_promo, PromoCb.filter(F.id > 0))
    return router
