"""Owners: campaigns measured against a hold-out group (`services.campaigns`).

`/campaign [name]` (private chat) walks through the audience (everyone, an RFM segment,
inactive for N days, a birthday month; in a chain of shops also the regulars of one branch),
the offer (+N % for D days), the message (one text for every language, optionally a version per
language), the hold-out share (default `CAMPAIGN_HOLDOUT_PCT`), then a preview with the
audience and hold-out sizes and the message as customers will read it, written as a draft, with
✅ Send and ✖ Cancel. The steps live in the FSM (`CampaignFlow`: durable, in the database or
Redis), so a restart mid-way keeps them; the preview's buttons carry the draft's id, re-checked
by the service (a second ✅, a forged id or a cancelled draft sends nothing).

`/campaigns` lists the sent campaigns with their figures (return rates offered vs hold-out,
redemption, revenue, the lift with its 95 % confidence interval), a 📊 button each for the
full report. `digest_section` is the weekly digest's campaigns section.
"""

from __future__ import annotations

import html
import random
from datetime import date, datetime, timedelta

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import get_i18n, ngettext
from aiogram.utils.i18n import gettext as _
from babel.dates import get_month_names

from config import LANGUAGES, Settings
from db.database import Database
from handlers import experiments
from handlers import formatting as fmt
from handlers.errors import renders
from handlers.filters import Match
from handlers.owner_chat import OwnerChat, owner_router
from handlers.wallet.base import LANGUAGE_NAMES
from services import campaigns
from services.branches import BranchService
from services.branches import load as load_branches
from services.campaigns import (
    DEFAULT_TEXT,
    Audience,
    CampaignDraft,
    CampaignNotDraft,
    CampaignNotFound,
    CampaignResult,
    CampaignView,
    EmptyAudience,
    InvalidCampaign,
)
from services.clock import store_day_bounds
from services.delivery import Outbox
from services.kpi import RFM_SEGMENTS

LIST_LIMIT = 10


class CampaignCb(CallbackData, prefix="cmp"):
    action: str  # aud | rfm | month | shop | lang | next | hold | send | drop | rep
    value: str = ""


class CampaignFlow(StatesGroup):
    audience = State()
    inactive_days = State()
    offer = State()
    text = State()
    more_texts = State()
    language_text = State()
    holdout = State()


def _button(text: str, action: str, value: str = "") -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text=text, callback_data=CampaignCb(action=action, value=value).pack()
    )


def _rows(buttons: list[InlineKeyboardButton], per_row: int) -> InlineKeyboardMarkup:
    rows = [buttons[i : i + per_row] for i in range(0, len(buttons), per_row)]
    return InlineKeyboardMarkup(inline_keyboard=rows)


# ------------------------------------------------------------------------------- texts


def segment_names() -> dict[str, str]:
    from handlers.owner_reports import rfm_names  # the KPI feature's names of the segments

    return rfm_names()


def _month_name(month: int) -> str:
    names = get_month_names("wide", context="stand-alone", locale=fmt.current_locale())
    return str(names[month])


def audience_label(audience: Audience, shops: dict[int, str] | None = None) -> str:
    """The audience in words; a branch audience by its name (`shops`: branch id → name)."""
    if audience.kind == "branch":
        branch_id = int(audience.arg or 0)
        name = (shops or {}).get(branch_id, f"#{branch_id}")
        return _("members whose usual shop is {name}").format(name=html.escape(name))
    if audience.kind == "rfm":
        name = segment_names().get(audience.arg or "", audience.arg or "")
        return _("RFM segment “{segment}”").format(segment=name)
    if audience.kind == "inactive":
        days = int(audience.arg or 0)
        return ngettext("no purchase for {days} day", "no purchase for {days} days", days).format(
            days=fmt.number(days)
        )
    if audience.kind == "birthday":
        return _("birthday in {month}").format(month=_month_name(int(audience.arg or 1)))
    return _("everyone")


def campaign_message(
    texts: dict[str, str],
    language: str | None,
    bonus_pct: int,
    valid_until: datetime,
    settings: Settings,
) -> str:
    """The campaign's message in the current locale: the owner's text for `language` (else
    the one text) and the offer's line."""
    text = html.escape(campaigns.text_for(texts, language))
    offer = _(
        "🎁 <b>+{pct}</b> off your next purchase, valid until {until}. Just show your card at "
        "the till — the discount applies automatically."
    ).format(pct=fmt.pct(bonus_pct), until=fmt.day(valid_until, settings))
    return f"{text}\n\n{offer}"


def _preview_text(
    view: CampaignView, settings: Settings, now: datetime, shops: dict[int, str] | None = None
) -> str:
    until = now + timedelta(days=view.valid_days)
    lines = [
        _("<b>Campaign preview: {name}</b>").format(name=html.escape(view.name)),
        _("Audience: {audience} — {size} members").format(
            audience=audience_label(view.audience, shops), size=fmt.number(view.audience_size)
        ),
        _("Hold-out ({pct}): {holdout} members get nothing; {offered} get the offer").format(
            pct=fmt.pct(view.holdout_pct),
            holdout=fmt.number(view.holdout_size),
            offered=fmt.number(view.offered_size),
        ),
        ngettext(
            "Offer: +{pct} for {days} day", "Offer: +{pct} for {days} days", view.valid_days
        ).format(pct=fmt.pct(view.bonus_pct), days=fmt.number(view.valid_days)),
        "",
        _("The message as customers will see it (with a 🔕 button to turn offers off):"),
    ]
    i18n = get_i18n()
    for language in LANGUAGES:
        with i18n.use_locale(language):
            body = campaign_message(view.texts, language, view.bonus_pct, until, settings)
        lines += ["", f"<b>{LANGUAGE_NAMES[language]}</b>", body]
    lines += ["", _("Send it now?")]
    return "\n".join(lines)


def _preview_keyboard(campaign_id: int) -> InlineKeyboardMarkup:
    return _rows(
        [
            _button(_("✅ Send"), "send", str(campaign_id)),
            _button(_("✖ Cancel"), "drop", str(campaign_id)),
        ],
        2,
    )


def result_lines(
    result: CampaignResult, settings: Settings, shops: dict[int, str] | None = None
) -> list[str]:
    """One campaign's figures, a few lines (the list, the report and the digest)."""
    view = result.campaign
    head = _("<b>{name}</b> ({audience}), +{pct} for {days} d").format(
        name=html.escape(view.name),
        audience=audience_label(view.audience, shops),
        pct=fmt.pct(view.bonus_pct),
        days=fmt.number(view.valid_days),
    )
    if view.sent_at is None or view.window_until is None:
        status = _("cancelled") if view.status == "cancelled" else _("draft, not sent")
        return [f"{head}: {status}"]
    per_offered = None if result.revenue_per_offered is None else round(result.revenue_per_offered)
    per_control = None if result.revenue_per_control is None else round(result.revenue_per_control)
    return [
        head,
        _("   sent {sent}, window until {until}").format(
            sent=fmt.day(view.sent_at, settings), until=fmt.day(view.window_until, settings)
        ),
        _(
            "   came back: offered {offered_rate} of {offered}, hold-out {control_rate} of "
            "{control}"
        ).format(
            offered_rate=experiments.share(result.return_rate_offered),
            offered=fmt.number(result.offered),
            control_rate=experiments.share(result.return_rate_control),
            control=fmt.number(result.control),
        ),
        _("   lift: {lift}").format(
            lift=experiments.lift_text(result.lift.lift, result.lift.low, result.lift.high)
        ),
        _("   redeemed: {redeemed} of {offered} ({rate})").format(
            redeemed=fmt.number(result.redeemed),
            offered=fmt.number(result.offered),
            rate=experiments.share(result.redemption_rate),
        ),
        _(
            "   revenue in the window: offered {offered} ({per_offered} per member), hold-out "
            "{control} ({per_control} per member)"
        ).format(
            offered=fmt.money(result.revenue_offered, settings),
            per_offered="—" if per_offered is None else fmt.money(per_offered, settings),
            control=fmt.money(result.revenue_control, settings),
            per_control="—" if per_control is None else fmt.money(per_control, settings),
        ),
    ]


def _how_to_read() -> str:
    return _(
        "<i>The hold-out is drawn at random, so the lift (offered minus hold-out return rate) "
        "is what the campaign caused; when its 95 % CI includes 0, the effect is not clear "
        "yet.</i>"
    )


async def digest_section(
    db: Database, settings: Settings, first: date, last: date
) -> tuple[str, list[str], str | None] | None:
    """The weekly digest's campaigns (store days `first`…`last`): those whose window
    overlaps the week or ended in the 14 days before it, one item each; None when none."""
    start, end = store_day_bounds(first, last, settings.store.tz)
    found = await db.report(
        campaigns.results, since=start - timedelta(days=14), until=end, limit=LIST_LIMIT
    )
    if not found:
        return None
    shops = None
    if any(result.campaign.audience.kind == "branch" for result in found):
        shops = {b.id: b.name for b in await db.read(load_branches, settings)}
    items = ["\n".join(result_lines(result, settings, shops)) for result in found]
    return (_("<b>Campaigns</b> (offered vs hold-out)"), items, None)


# ------------------------------------------------------------------------------ wizard


def _audience_keyboard(chain: bool = False) -> InlineKeyboardMarkup:
    buttons = [
        _button(_("Everyone"), "aud", "all"),
        _button(_("RFM segment"), "aud", "rfm"),
        _button(_("Inactive for N days"), "aud", "inactive"),
        _button(_("Birthday month"), "aud", "birthday"),
    ]
    if chain:  # a chain of shops: the regulars of one of them
        buttons.append(_button(_("Usual shop"), "aud", "branch"))
    return _rows(buttons, 2)


def _audience_question() -> str:
    return _("<b>New campaign.</b> Who should get it? (/cancel stops at any step)")


async def start(
    message: Message,
    command: CommandObject,
    state: FSMContext,
    now: datetime,
    branches: BranchService,
) -> None:
    name = (command.args or "").strip() or _("Campaign {day}").format(day=f"{now:%Y-%m-%d}")
    if len(name) > 64:
        raise InvalidCampaign("name")
    await state.clear()
    await state.set_state(CampaignFlow.audience)
    await state.update_data(name=name)
    await message.answer(
        _audience_question(), reply_markup=_audience_keyboard(await branches.is_chain())
    )


async def choose_audience(
    cq: CallbackQuery,
    callback_data: CampaignCb,
    state: FSMContext,
    db: Database,
    now: datetime,
    owner_chat: OwnerChat,
    branches: BranchService,
) -> None:
    kind = callback_data.value
    if kind == "rfm":
        names = segment_names()
        buttons = [_button(names[key], "rfm", key) for key in RFM_SEGMENTS]
        await owner_chat.show(_("Which RFM segment?"), reply_markup=_rows(buttons, 2))
    elif kind == "birthday":
        buttons = [_button(_month_name(m), "month", str(m)) for m in range(1, 13)]
        await owner_chat.show(_("Birthday in which month?"), reply_markup=_rows(buttons, 3))
    elif kind == "inactive":
        await state.set_state(CampaignFlow.inactive_days)
        await owner_chat.show(
            _("Members with no purchase for how many days? Send a number, e.g. 60.")
        )
    elif kind == "branch" and await branches.is_chain():
        buttons = [_button(b.name[:40], "shop", str(b.id)) for b in await branches.listed()]
        await owner_chat.show(
            _("Members whose usual shop (where they buy most) is which one?"),
            reply_markup=_rows(buttons, 2),
        )
    elif kind == "all":
        await _audience_chosen(Audience("all"), state, db, now, owner_chat, branches)
    else:
        await _forged(cq)


async def choose_segment(
    cq: CallbackQuery,
    callback_data: CampaignCb,
    state: FSMContext,
    db: Database,
    now: datetime,
    owner_chat: OwnerChat,
    branches: BranchService,
) -> None:
    if callback_data.value not in RFM_SEGMENTS:
        await _forged(cq)
        return
    audience = Audience("rfm", callback_data.value)
    await _audience_chosen(audience, state, db, now, owner_chat, branches)


async def choose_month(
    cq: CallbackQuery,
    callback_data: CampaignCb,
    state: FSMContext,
    db: Database,
    now: datetime,
    owner_chat: OwnerChat,
    branches: BranchService,
) -> None:
    value = callback_data.value
    if not value.isdigit() or not 1 <= int(value) <= 12:
        await _forged(cq)
        return
    await _audience_chosen(Audience("birthday", value), state, db, now, owner_chat, branches)


async def choose_shop(
    cq: CallbackQuery,
    callback_data: CampaignCb,
    state: FSMContext,
    db: Database,
    now: datetime,
    owner_chat: OwnerChat,
    branches: BranchService,
) -> None:
    value = callback_data.value
    branch = await branches.get(int(value)) if value.isdigit() and len(value) < 10 else None
    if branch is None or not await branches.is_chain():
        await _forged(cq)
        return
    audience = Audience("branch", str(branch.id))
    await _audience_chosen(audience, state, db, now, owner_chat, branches)


async def inactive_days(
    message: Message,
    state: FSMContext,
    db: Database,
    now: datetime,
    owner_chat: OwnerChat,
    branches: BranchService,
) -> None:
    text = (message.text or "").strip()
    if not text.isdigit():
        await owner_chat.send(_("Send the number of days as a whole number, e.g. 60."))
        return
    audience = campaigns.check_audience("inactive", text)
    await _audience_chosen(audience, state, db, now, owner_chat, branches, edit=False)


async def _audience_chosen(
    audience: Audience,
    state: FSMContext,
    db: Database,
    now: datetime,
    owner_chat: OwnerChat,
    branches: BranchService,
    *,
    edit: bool = True,
) -> None:
    size = await db.read(campaigns.audience_size, audience, now)
    answer = owner_chat.show if edit else owner_chat.send
    chain = await branches.is_chain()
    if size == 0:
        await state.set_state(CampaignFlow.audience)
        await answer(
            _empty_audience() + "\n\n" + _audience_question(),
            reply_markup=_audience_keyboard(chain),
        )
        return
    await state.update_data(audience=audience.kind, audience_arg=audience.arg)
    await state.set_state(CampaignFlow.offer)
    await answer(
        ngettext(
            "Audience: {audience} — {size} member.",
            "Audience: {audience} — {size} members.",
            size,
        ).format(
            audience=audience_label(audience, await branches.names() if chain else None),
            size=fmt.number(size),
        )
        + "\n\n"
        + _offer_question()
    )


def _offer_question() -> str:
    return _(
        "The offer: send the bonus in % and the days it is valid, e.g. <code>10 14</code> "
        "(a bonus of 10 % valid 14 days)."
    )


def _empty_audience() -> str:
    return _(
        "Nobody in this audience can receive offers right now (members who agreed to the "
        "terms, did not turn offers off and hold a usable card). Choose another audience."
    )


async def offer(message: Message, state: FSMContext, owner_chat: OwnerChat) -> None:
    words = (message.text or "").replace("%", " ").split()
    if len(words) != 2 or not all(word.isdigit() for word in words):
        await owner_chat.send(_("Send two whole numbers: the bonus in % and the days, e.g. 10 14."))
        return
    bonus, days = (int(word) for word in words)
    if not 1 <= bonus <= 99:
        raise InvalidCampaign("bonus", bonus)
    if not 1 <= days <= campaigns.MAX_DAYS:
        raise InvalidCampaign("days", days)
    await state.update_data(bonus_pct=bonus, valid_days=days, texts={})
    await state.set_state(CampaignFlow.text)
    await owner_chat.send(
        _(
            "The message: send its text. It goes to everyone; you can add a version per "
            "language next. The offer's line is added below it."
        )
    )


def _texts_keyboard(texts: dict[str, str]) -> InlineKeyboardMarkup:
    buttons = [
        _button(("✏️ " if code in texts else "➕ ") + LANGUAGE_NAMES[code], "lang", code)
        for code in LANGUAGES
    ]
    buttons.append(_button(_("➡️ Next"), "next"))
    return _rows(buttons, 3)


async def message_text(message: Message, state: FSMContext, owner_chat: OwnerChat) -> None:
    if not message.text:
        await owner_chat.send(_("Send the message as text."))
        return
    text = campaigns.check_text(message.text)
    data = await state.get_data()
    texts = dict(data.get("texts") or {})
    language = data.get("language")
    for_language = await state.get_state() == CampaignFlow.language_text.state and language
    texts[language if for_language else DEFAULT_TEXT] = text
    await state.update_data(texts=texts, language=None)
    await state.set_state(CampaignFlow.more_texts)
    versions = ", ".join(LANGUAGE_NAMES[code] for code in LANGUAGES if code in texts)
    note = _(
        "Saved. Each customer gets the version in their language if there is one "
        "({versions}), else the common text. Add a version or press Next."
    ).format(versions=versions or "—")
    await owner_chat.send(note, reply_markup=_texts_keyboard(texts))


async def choose_language(
    cq: CallbackQuery, callback_data: CampaignCb, state: FSMContext, owner_chat: OwnerChat
) -> None:
    if callback_data.value not in LANGUAGES:
        await _forged(cq)
        return
    await state.update_data(language=callback_data.value)
    await state.set_state(CampaignFlow.language_text)
    await owner_chat.show(
        _("Send the text for {language}.").format(language=LANGUAGE_NAMES[callback_data.value])
    )


def _holdout_keyboard(default: int) -> InlineKeyboardMarkup:
    return _rows(
        [_button(_("{pct} (default)").format(pct=fmt.pct(default)), "hold", str(default))], 1
    )


async def texts_done(
    cq: CallbackQuery, state: FSMContext, settings: Settings, owner_chat: OwnerChat
) -> None:
    await state.set_state(CampaignFlow.holdout)
    default = settings.growth.campaign_holdout_pct
    await owner_chat.show(
        _(
            "Hold-out: what share of the audience gets nothing, so that the campaign's effect "
            "can be measured? Send a number from 0 to 50, or press the button."
        ),
        reply_markup=_holdout_keyboard(default),
    )


async def holdout_text(
    message: Message,
    state: FSMContext,
    db: Database,
    settings: Settings,
    now: datetime,
    owner_chat: OwnerChat,
    branches: BranchService,
) -> None:
    text = (message.text or "").strip().rstrip("%").strip()
    if not text.isdigit():
        await owner_chat.send(_("Send the hold-out share as a whole number from 0 to 50."))
        return
    await _preview(
        int(text),
        message.from_user.id if message.from_user else None,
        state,
        db,
        settings,
        now,
        owner_chat,
        branches,
    )


async def holdout_button(
    cq: CallbackQuery,
    callback_data: CampaignCb,
    state: FSMContext,
    db: Database,
    settings: Settings,
    now: datetime,
    owner_chat: OwnerChat,
    branches: BranchService,
) -> None:
    if not callback_data.value.isdigit():
        await _forged(cq)
        return
    await _preview(
        int(callback_data.value), cq.from_user.id, state, db, settings, now, owner_chat, branches
    )


async def _preview(
    holdout_pct: int,
    owner_id: int | None,
    state: FSMContext,
    db: Database,
    settings: Settings,
    now: datetime,
    owner_chat: OwnerChat,
    branches: BranchService,
) -> None:
    if not 0 <= holdout_pct <= 50:
        raise InvalidCampaign("holdout", holdout_pct)
    data = await state.get_data()
    draft = CampaignDraft(
        name=str(data["name"]),
        audience=Audience(str(data["audience"]), data.get("audience_arg")),
        bonus_pct=int(data["bonus_pct"]),
        valid_days=int(data["valid_days"]),
        holdout_pct=holdout_pct,
        texts=dict(data.get("texts") or {}),
    )
    try:
        view = await campaigns.create(db, draft, now, created_by=owner_id)
    except EmptyAudience:  # the audience emptied meanwhile: choose again
        await state.set_state(CampaignFlow.audience)
        await owner_chat.send(
            _empty_audience() + "\n\n" + _audience_question(),
            reply_markup=_audience_keyboard(await branches.is_chain()),
        )
        return
    await state.clear()
    shops = await branches.names()
    await owner_chat.send(
        _preview_text(view, settings, now, shops), reply_markup=_preview_keyboard(view.id)
    )


# ------------------------------------------------------------------------ send, cancel


def _campaign_id(callback_data: CampaignCb) -> int | None:
    value = callback_data.value
    return int(value) if value.isdigit() and len(value) < 10 else None


async def send(
    cq: CallbackQuery,
    callback_data: CampaignCb,
    db: Database,
    settings: Settings,
    now: datetime,
    outbox: Outbox,
    owner_chat: OwnerChat,
) -> None:
    campaign_id = _campaign_id(callback_data)
    if campaign_id is None:
        await _forged(cq)
        return
    pace = settings.delivery.rate_global
    result = await campaigns.send(db, campaign_id, now, random.Random(), pace=pace)
    outbox.notify()
    if not result.sent_now:
        if result.queued:  # an interrupted send, finished now
            owner_chat.toast = _("Finished sending.")
        else:
            await cq.answer(_("This campaign was sent already."), show_alert=True)
        return
    view = result.campaign
    await owner_chat.show(
        _(
            "✅ <b>{name}</b> sent: {offered} offers are on their way (quiet hours and "
            "Telegram's limits permitting); {holdout} members are in the hold-out and get "
            "nothing. See /campaigns for the results."
        ).format(
            name=html.escape(view.name),
            offered=fmt.number(view.offered_size),
            holdout=fmt.number(view.holdout_size),
        )
    )


async def drop(
    cq: CallbackQuery, callback_data: CampaignCb, db: Database, owner_chat: OwnerChat
) -> None:
    campaign_id = _campaign_id(callback_data)
    if campaign_id is None:
        await _forged(cq)
        return
    view = await campaigns.cancel(db, campaign_id)
    await owner_chat.show(
        _("✖ Campaign {name} cancelled; nothing was sent.").format(name=html.escape(view.name))
    )


async def _forged(cq: CallbackQuery) -> None:
    await cq.answer(
        _("This button is no longer valid. Start again with /campaign."), show_alert=True
    )


async def stale(cq: CallbackQuery) -> None:
    """A wizard button of a step that is over (or forged data): nothing changes."""
    await _forged(cq)


# -------------------------------------------------------------------------- /campaigns


async def listing(
    message: Message,
    db: Database,
    settings: Settings,
    now: datetime,
    outbox: Outbox,
    owner_chat: OwnerChat,
    branches: BranchService,
) -> None:
    # A send cut short by a restart is finished here (nothing when none was).
    if await campaigns.finish_interrupted(db, now, settings.delivery.rate_global):
        outbox.notify()
    found = await db.report(campaigns.results, sent_only=True, limit=LIST_LIMIT)
    if not found:
        await owner_chat.send(_("No campaigns sent yet. Start one with /campaign."))
        return
    lines = [_("<b>Campaigns</b> (newest first; offered vs hold-out)")]
    for result in found:
        lines += ["", *result_lines(result, settings, await branches.names())]
    lines += ["", _how_to_read()]
    buttons = [
        _button(f"📊 {result.campaign.name[:40]}", "rep", str(result.campaign.id))
        for result in found
    ]
    await owner_chat.send("\n".join(lines), reply_markup=_rows(buttons, 1))


async def report(
    cq: CallbackQuery,
    callback_data: CampaignCb,
    db: Database,
    settings: Settings,
    owner_chat: OwnerChat,
    branches: BranchService,
) -> None:
    campaign_id = _campaign_id(callback_data)
    if campaign_id is None:
        await _forged(cq)
        return
    result = await db.report(campaigns.result, campaign_id)
    lines = result_lines(result, settings, await branches.names())
    view = result.campaign
    lines += [
        _("   audience {size}, hold-out {holdout} ({pct})").format(
            size=fmt.number(view.audience_size),
            holdout=fmt.number(view.holdout_size),
            pct=fmt.pct(view.holdout_pct),
        ),
        "",
        _how_to_read(),
    ]
    await owner_chat.send("\n".join(lines))


# ----------------------------------------------------------------------------- refusals


@renders(InvalidCampaign)
def _invalid(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, InvalidCampaign)
    texts = {
        "name": _("A campaign needs a name of 1 to 64 characters."),
        "audience": _("Unknown audience."),
        "segment": _("Unknown RFM segment."),
        "inactive": _("The number of days must be a whole number from 1 to 3650."),
        "month": _("The month must be 1 to 12."),
        "branch": _("Unknown shop."),
        "bonus": _("The bonus must be a whole number from 1 to 99."),
        "days": _("The offer must be valid from 1 to 365 days."),
        "holdout": _("The hold-out share must be a whole number from 0 to 50."),
        "text": _("The message must be 1 to 3000 characters."),
        "language": _("Unknown language."),
    }
    return texts[exc.field]


@renders(EmptyAudience)
def _empty(exc: Exception, settings: Settings) -> str:
    return _empty_audience()


@renders(CampaignNotFound)
def _not_found(exc: Exception, settings: Settings) -> str:
    return _("This button is no longer valid. Start again with /campaign.")


@renders(CampaignNotDraft)
def _not_draft(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, CampaignNotDraft)
    if exc.status == "sent":
        return _("This campaign was sent already.")
    return _("This campaign was cancelled.")


def setup() -> Router:
    router = owner_router(__name__)
    router.message.filter(Match(F.chat.type == "private"))
    not_a_command = Match(~F.text.startswith("/"))
    router.message.register(start, Command("campaign"))
    router.message.register(listing, Command("campaigns"))
    router.message.register(inactive_days, StateFilter(CampaignFlow.inactive_days), not_a_command)
    router.message.register(offer, StateFilter(CampaignFlow.offer), not_a_command)
    router.message.register(
        message_text, StateFilter(CampaignFlow.text, CampaignFlow.language_text), not_a_command
    )
    router.message.register(holdout_text, StateFilter(CampaignFlow.holdout), not_a_command)
    on = router.callback_query.register
    audience, more, holdout = (
        StateFilter(CampaignFlow.audience),
        StateFilter(CampaignFlow.more_texts),
        StateFilter(CampaignFlow.holdout),
    )
    on(choose_audience, CampaignCb.filter(F.action == "aud"), audience)
    on(choose_segment, CampaignCb.filter(F.action == "rfm"), audience)
    on(choose_month, CampaignCb.filter(F.action == "month"), audience)
    on(choose_shop, CampaignCb.filter(F.action == "shop"), audience)
    on(choose_language, CampaignCb.filter(F.action == "lang"), more)
    on(texts_done, CampaignCb.filter(F.action == "next"), more)
    on(holdout_button, CampaignCb.filter(F.action == "hold"), holdout)
    on(send, CampaignCb.filter(F.action == "send"))
    on(drop, CampaignCb.filter(F.action == "drop"))
    on(report, CampaignCb.filter(F.action == "rep"))
    on(stale, CampaignCb.filter())
    return router
