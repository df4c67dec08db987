"""Owners: happy hours in Telegram — `/promos` lists the running ones with an ⏹ End button
each; `/promos add NAME PCT DAYS HH:MM-HH:MM [YYYY-MM-DD]` starts one (the CLI's
`promos add`, in one line).

In a chain of shops the command may end with a shop's name (`… 10:00-12:00 Tartu`, the name
may have spaces): the happy hour runs in that open shop only, else in every shop; the listing
says where each one runs. A one-shop install reads none of this."""

from __future__ import annotations

import html
import re
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
from services.branches import BranchError, BranchService
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

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class PromoCb(CallbackData, prefix="promo"):
    id: int


def _usage(shop: str | None = None) -> str:
    """How to start one; in a chain (`shop`: a shop's name for the example) with the shop."""
    if shop is None:
        return _(
            "Start a happy hour: <code>/promos add NAME PCT DAYS HH:MM-HH:MM [YYYY-MM-DD]</code>, "
            "e.g. <code>/promos add Morning 3 mon,tue 10:00-12:00</code> (days: mon…sun, "
            "mon-fri, all; the last day is optional)."
        )
    return _(
        "Start a happy hour: <code>/promos add NAME PCT DAYS HH:MM-HH:MM [YYYY-MM-DD] "
        "[SHOP]</code>, e.g. <code>/promos add Morning 3 mon,tue 10:00-12:00 {shop}</code> "
        "(days: mon…sun, mon-fri, all; the last day is optional; without a shop it runs in "
        "every shop)."
    ).format(shop=html.escape(shop))


async def _example_shop(branches: BranchService) -> str | None:
    """A shop's name for the usage's example in a chain (None: one shop, no word of shops)."""
    if not await branches.is_chain():
        return None
    listed = await branches.listed()
    return next((b.name for b in listed if b.is_open and not b.is_main), listed[0].name)


def _line(view: PromotionView, settings: Settings, names: dict[int, str]) -> str:
    """A promotion's line; in a chain (`names`: the shops' names) with where it runs."""
    locale = formatting.current_locale()
    day_names = get_day_names("abbreviated", locale=locale)
    days = ", ".join(day_names[i] for i in range(7) if view.weekdays & (1 << i))
    text = _("<b>{name}</b>: +{pct}, {days}, {start}–{end}").format(
        name=html.escape(view.name),
        pct=formatting.pct(view.bonus_pct),
        days=days,
        start=format_time(view.starts),
        end=format_time(view.ends),
    )
    if view.until is not None:
        text += _(", until {day}").format(day=formatting.day(view.until, settings))
    if names and view.branch_id is None:
        text += _(", in every shop")
    elif names and view.branch_id is not None:
        shop = names.get(view.branch_id, f"#{view.branch_id}")
        text += _(", in {shop}").format(shop=html.escape(shop))
    return text


async def _names(branches: BranchService) -> dict[int, str]:
    """The shops' names in a chain; empty for one shop."""
    return await branches.names() if await branches.is_chain() else {}


async def _listing(
    service: PromotionService, settings: Settings, branches: BranchService
) -> tuple[str, InlineKeyboardMarkup | None]:
    views = await service.listed()
    usage = _usage(await _example_shop(branches))
    if not views:
        return _("No happy hours are running.") + "\n\n" + usage, None
    names = await _names(branches)
    lines = [_("<b>Happy hours</b> (store time):")]
    lines += [f"• {_line(view, settings, names)}" for view in views]
    lines += ["", usage]
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
    branches: BranchService,
) -> None:
    service = PromotionService(db, settings, lambda: now)
    words = (command.args or "").split()
    shop = await _example_shop(branches)
    if words and words[0].lower() == "add":
        if len(words) < 5 or (shop is None and len(words) > 6):
            await owner_chat.send(_usage(shop))
            return
        try:
            view = await _add(message, service, branches, words, chain=shop is not None)
        except InvalidPromotion as exc:
            await owner_chat.send(_problem(exc) + "\n" + _usage(shop))
            return
        line = _line(view, settings, await _names(branches))
        await owner_chat.send(_("Happy hour started: {line}").format(line=line))
        return
    if words:
        await owner_chat.send(_usage(shop))
        return
    text, markup = await _listing(service, settings, branches)
    await owner_chat.send(text, reply_markup=markup)


async def _add(
    message: Message,
    service: PromotionService,
    branches: BranchService,
    words: list[str],
    *,
    chain: bool,
) -> PromotionView:
    """`add NAME PCT DAYS HH:MM-HH:MM [YYYY-MM-DD]`, in a chain `[SHOP]` after them."""
    _keyword, name, pct, days, hours, *rest = words
    start, _dash, end = hours.partition("-")
    if not pct.isdigit():
        raise InvalidPromotion("bonus", pct)
    until = rest.pop(0) if rest and (not chain or _DATE.fullmatch(rest[0])) else None
    try:
        last = date.fromisoformat(until) if until else None
    except ValueError:
        raise InvalidPromotion("until", until or "") from None
    branch_id = None
    if rest:  # a chain's shop (a one-shop install has no more words: see the caller)
        try:
            branch_id = (await branches.named(" ".join(rest))).id
        except BranchError:
            raise InvalidPromotion("branch", " ".join(rest)) from None  # a closed one: add()
    return await service.add(
        name,
        bonus_pct=int(pct),
        weekdays=parse_days(days),
        starts=parse_time(start),
        ends=parse_time(end),
        until=last,
        branch_id=branch_id,
        actor_id=message.from_user.id if message.from_user else None,
    )


async def end_promo(
    cq: CallbackQuery,
    callback_data: PromoCb,
    db: Database,
    settings: Settings,
    now: datetime,
    owner_chat: OwnerChat,
    branches: BranchService,
) -> None:
    service = PromotionService(db, settings, lambda: now)
    try:
        await service.end(callback_data.id, actor_id=cq.from_user.id)
    except PromotionNotFound:  # ended meanwhile, or a forged id
        await cq.answer(_("That happy hour is not running."), show_alert=True)
    else:
        await cq.answer(_("Ended."))
    text, markup = await _listing(service, settings, branches)
    await owner_chat.show(text, reply_markup=markup)


def _problem(exc: InvalidPromotion) -> str:
    shop = html.escape(exc.text)
    texts = {
        "name": _("A happy hour needs a name of 1 to 64 characters."),
        "bonus": _("The bonus must be a whole number from 1 to 99."),
        "days": _("Days are mon…sun, separated by commas, a range like mon-fri, or all."),
        "time": _("Times are store times like 10:00."),
        "window": _("The hours must start before they end, within one day."),
        "until": _("The last day must be today or later, written YYYY-MM-DD."),
        "branch": _("There is no shop named {shop}.").format(shop=shop),
        "closed": _("The shop {shop} is closed.").format(shop=shop),
    }
    return texts[exc.field]


@renders(InvalidPromotion)
def _invalid(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, InvalidPromotion)
    return _problem(exc) + "\n" + _usage()


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
