"""How each kind of proactive message reads: the renderers the delivery service calls.

`create_renderer(i18n)` returns the `services.delivery.Renderer` the bot injects into the
sender. Each renderer runs in the recipient's language (the client's stored language, else the
store default) and returns `None` when the message is no longer wanted (a survey answered in
the meantime, an offer already used).
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from config import LANGUAGES, Settings
from db.database import Database
from db.models import OfferKind
from handlers import formatting
from handlers.surveys import MarketingCb, NpsCb
from services import offers, surveys, wallet
from services.cards import group_number
from services.delivery import Outgoing, Rendered, Renderer
from services.reports import ReportService

KindRenderer = Callable[[AsyncSession, Outgoing, Settings, datetime], Awaitable[Rendered | None]]
RENDERERS: dict[str, KindRenderer] = {}


def renders(kind: str) -> Callable[[KindRenderer], KindRenderer]:
    def register(func: KindRenderer) -> KindRenderer:
        RENDERERS[kind] = func
        return func

    return register


def nps_keyboard(survey_id: int) -> InlineKeyboardMarkup:
    buttons = [
        InlineKeyboardButton(
            text=str(score), callback_data=NpsCb(action="s", survey=survey_id, score=score).pack()
        )
        for score in range(11)
    ]
    return InlineKeyboardMarkup(inline_keyboard=[buttons[:6], buttons[6:]])


def opt_out_keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("🔕 No more offers"), callback_data=MarketingCb(action="out").pack()
                )
            ]
        ]
    )


@renders(surveys.SURVEY_KIND)
async def _survey(
    session: AsyncSession, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    survey = await session.run_sync(surveys.view, settings, int(item.payload["survey_id"]), now)
    if survey is None or not survey.open:
        return None
    text = _(
        "Thank you for shopping at {store}!\n\n"
        "How likely are you to recommend us to a friend? "
        "Tap a number: 0 = not at all, 10 = definitely."
    ).format(store=html.escape(settings.store.name))
    return Rendered(text, nps_keyboard(survey.id))


@renders(surveys.DETRACTOR_KIND)
async def _detractor(
    session: AsyncSession, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    survey = await session.run_sync(surveys.view, settings, int(item.payload["survey_id"]), now)
    if survey is None or survey.score is None:
        return None
    name = html.escape(survey.client_name or _("client"))
    client = (
        f'<a href="tg://user?id={survey.client_tg_id}">{name}</a>'
        if survey.client_tg_id
        else _("(data erased)")
    )
    comment = html.escape(survey.comment) if survey.comment else _("<i>no comment</i>")
    text = _(
        "⚠️ <b>Unhappy customer</b>: rated us {score} of 10.\nComment: {comment}\nClient: {client}"
    ).format(score=survey.score, comment=comment, client=client)
    return Rendered(text)


@renders(offers.OFFER_KIND)
async def _offer(
    session: AsyncSession, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    offer = await session.run_sync(offers.view, int(item.payload["offer_id"]), now)
    if offer is None or not offer.usable:
        return None
    until = formatting.day(offer.valid_until, settings)
    store = html.escape(settings.store.name)
    if offer.kind == OfferKind.BIRTHDAY:
        name = html.escape(offer.first_name or "")
        text = _(
            "🎂 Happy birthday{name}! {store} has a gift for you: <b>+{pct}</b> off your next "
            "purchase, valid until {until}. Just show your card at the till."
        ).format(
            name=f", {name}" if name else "",
            store=store,
            pct=formatting.pct(offer.bonus_pct),
            until=until,
        )
    else:
        text = _(
            "We miss you at {store}! Here is <b>+{pct}</b> off your next purchase, valid until "
            "{until}. Just show your card at the till — the discount applies automatically."
        ).format(store=store, pct=formatting.pct(offer.bonus_pct), until=until)
    return Rendered(text, opt_out_keyboard())


@renders(wallet.BIND_LOCK_ALERT)
async def _bind_lock_alert(
    session: AsyncSession, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    number = str(item.payload["number"])
    failures = int(item.payload["failures"])
    text = ngettext(
        "⚠️ Linking of card {number} is locked after {failures} failed attempt "
        "(someone may be guessing). See /card {plain}.",
        "⚠️ Linking of card {number} is locked after {failures} failed attempts "
        "(someone may be guessing). See /card {plain}.",
        failures,
    ).format(number=group_number(number), failures=formatting.number(failures), plain=number)
    return Rendered(text)


@renders("digest")
async def _digest(
    session: AsyncSession, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    from handlers import owner_reports  # the KPI feature's renderer

    reports = ReportService(Database.of(session.bind), settings)  # type: ignore[arg-type]
    return _as_rendered(await owner_reports.digest_message(reports, now))


def _as_rendered(result: Any) -> Rendered | None:
    """Accept the digest renderer's shapes: text, (text, photo), or an object with fields."""
    if result is None or isinstance(result, Rendered):
        return result
    if isinstance(result, str):
        return Rendered(result)
    if isinstance(result, tuple):
        text, photo = (*result, None)[:2]
        return Rendered(text, photo=photo)
    text = getattr(result, "text", None) or getattr(result, "caption", "")
    photo = getattr(result, "photo", None) or getattr(result, "chart", None)
    markup = getattr(result, "reply_markup", None)
    return Rendered(text, markup, photo=photo)


@renders("text")
@renders("receipt")  # a purchase or a void, told to the customer (rendered at the till)
@renders("staff_log")  # the sale's line in the staff chat
async def _text(
    session: AsyncSession, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    text = item.payload.get("text")
    return Rendered(str(text)) if text else None


def create_renderer(i18n: I18n, default_language: str) -> Renderer:
    """The renderer for `services.delivery`: kind → text, in the recipient's language."""

    async def render(
        session: AsyncSession, item: Outgoing, settings: Settings, now: datetime
    ) -> Rendered | None:
        func = RENDERERS.get(item.kind)
        if func is None:
            raise LookupError(f"no renderer for delivery kind {item.kind!r}")
        language = item.language
        if language not in LANGUAGES:
            language = default_language
        with i18n.context(), i18n.use_locale(language):
            return await func(session, item, settings, now)

    return render
