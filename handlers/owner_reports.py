"""Owners: /stats, /digest, /export, /card N, /cards — the program's numbers in Telegram.

Everything is read-only: the figures come from `services.reports.ReportService` (`reports`, one
unit of work per call), the text is made here. Answers go through `OwnerChat` to the owner's
private chat, also when the owner asks in the staff group (`handlers/owner_chat.py`).
`digest_message` and `digest_chart` are also what the scheduled weekly digest sends, as two
messages (the caller sets the i18n locale first).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    FSInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.i18n import ngettext

from config import Settings
from db.database import Database
from handlers import experiments
from handlers import formatting as fmt
from handlers.campaigns import digest_section as campaign_section
from handlers.errors import renders
from handlers.motivation import motivation_lines
from handlers.owner_chat import OwnerChat, owner_router
from handlers.referrals import ambassador_section, stats_lines
from handlers.roles import StaffDirectory
from services import export, kpi
from services.cards import group_number
from services.inventory import inventory_counts
from services.kpi import InvalidPeriod, Kpis
from services.reports import (
    DIGEST_WEEKS,
    ChartLabels,
    ReportService,
    digest_week,
    render_chart,
)

PRESETS = ("7d", "30d", "90d", "month")


class StatsCb(CallbackData, prefix="st"):
    period: str


# Periods as the owner would type them: the dates the way people in the store's countries write
# them (`kpi.parse_period` reads DD.MM.YYYY as well as ISO dates).
_PERIOD_EXAMPLES = ("30d", "month", "01.10.2026 31.10.2026")


def period_error(exc: InvalidPeriod, command: str | None = None) -> str:
    """Why a period was refused, with examples for the command the owner typed."""
    if exc.reason == "order":
        return _("The first date must not be after the second one.")
    if exc.reason == "too_long":
        return ngettext(
            "A period can be at most {days} day long.",
            "A period can be at most {days} days long.",
            kpi.MAX_PERIOD_DAYS,
        ).format(days=fmt.number(kpi.MAX_PERIOD_DAYS))
    prefix = f"/{command} " if command else ""
    examples = ", ".join(prefix + example for example in _PERIOD_EXAMPLES)
    return _(
        "I did not understand the period. Examples: {examples} (two dates: from and to, both "
        "included)."
    ).format(examples=examples)


@renders(InvalidPeriod)
def _invalid_period(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, InvalidPeriod)
    return period_error(exc)


# ------------------------------------------------------------------------- rendering


def _today(now: datetime, settings: Settings) -> date:
    return now.astimezone(settings.store.tz).date()


def _span(first: date, last: date, settings: Settings) -> str:
    if first == last:
        return fmt.day(first, settings)
    return f"{fmt.day(first, settings)} – {fmt.day(last, settings)}"


def _change(current: float | int | None, previous: float | int | None) -> str:
    change = kpi.change_pct(current, previous)
    if change is None:
        return ""
    if abs(change) < 0.05:
        return "  = 0 %"
    arrow = "▲" if change > 0 else "▼"
    return f"  {arrow} {fmt.pct(abs(round(change, 1)))}"


Render = Callable[[Any, Settings], str]


def _money(value: Any, settings: Settings) -> str:
    return "—" if value is None else fmt.money(round(value), settings)


def _int(value: Any, settings: Settings) -> str:
    return "—" if value is None else fmt.number(value)


def _share(value: Any, settings: Settings) -> str:
    return "—" if value is None else fmt.pct(round(value * 100, 1))


def _pct(value: Any, settings: Settings) -> str:
    return "—" if value is None else fmt.pct(round(value, 1))


def _decimal(value: Any, settings: Settings) -> str:
    return "—" if value is None else fmt.number(round(value, 2))


# (label, attribute of Kpis, renderer) in the order the owner reads them.
STATS_LINES: list[tuple[Any, str, Render]] = [
    (__("Cards issued"), "cards_issued", _int),
    (__("issued in the period"), "cards_issued_in_period", _int),
    (__("bound to Telegram"), "cards_bound", _int),
    (__("Active cards"), "active_cards", _int),
    (__("Activity rate"), "activity_rate", _share),
    (__("Purchases"), "purchases", _int),
    (__("Revenue through cards"), "revenue", _money),
    (__("Discounts given"), "discount_total", _money),
    (__("Average check"), "average_check", _money),
    (__("Average discount"), "average_discount_pct", _pct),
    (__("Purchases per active card"), "frequency", _decimal),
    (__("Repeat rate"), "repeat_rate", _share),
    (__("Retention"), "retention_rate", _share),
    (__("Spend per active card"), "spend_per_active_card", _money),
    (__("New buyers"), "new_buyers", _int),
    (__("LTV (lifetime spend per card)"), "ltv", _money),
    (__("ROI"), "roi_pct", _pct),
]
_INDENTED = {"cards_issued_in_period", "cards_bound"}


def rfm_names() -> dict[str, str]:
    return {
        "champions": _("champions"),
        "loyal": _("loyal"),
        "potential": _("potential"),
        "new": _("new"),
        "at_risk": _("at risk"),
        "hibernating": _("hibernating"),
        "lost": _("lost"),
    }


# ---------------------------------------------------------------------------- export

# Excel's date formats per language (Excel shows the rest of a number the reader's way).
_EXCEL_DATES = {"en": ("yyyy-mm-dd", "yyyy-mm-dd hh:mm")}
_EXCEL_DATES_DEFAULT = ("dd.mm.yyyy", "dd.mm.yyyy hh:mm")
# Excel in these languages expects `;` between CSV fields and a decimal comma.
_DECIMAL_COMMA = frozenset({"ru", "et"})


def _group_names() -> dict[str, str]:
    return {
        "by_segment.b2c": "B2C",
        "by_segment.b2b": "B2B",
        "digital_vs_paper.digital": _("Telegram wallet"),
        "digital_vs_paper.paper": _("Paper only"),
    }


def _kpi_labels() -> dict[str, str]:
    """The KPI summary's rows, named as /stats names them."""
    figures = {key: str(label) for label, key, _render in STATS_LINES}
    labels = dict(figures)
    labels |= {
        "first": _("Period: first day"),
        "last": _("Period: last day"),
        "program_costs": _("Program costs"),
        "cards_total": _("Cards registered"),
        "nps.score": _("NPS"),
        "nps.answers": _("NPS: answers"),
        "nps.promoters": _("NPS: promoters"),
        "nps.passives": _("NPS: passives"),
        "nps.detractors": _("NPS: detractors"),
        "promotions.purchases": _("Happy hours: purchases"),
        "promotions.revenue": _("Happy hours: revenue"),
        "promotions.discount_total": _("Happy hours: discounts"),
        "referrals.joined": _("Referrals: friends joined"),
        "referrals.first_purchases": _("Referrals: first purchases"),
        "referrals.revenue": _("Referrals: friends' purchases"),
        "referrals.ambassadors": _("Referrals: members rewarded"),
    }
    for trial, name in (("winback", _("Win-back")), ("birthday", _("Birthday gifts"))):
        labels |= {
            f"{trial}.offered": _("{name}: offered").format(name=name),
            f"{trial}.control": _("{name}: control group").format(name=name),
            f"{trial}.redeemed": _("{name}: redeemed").format(name=name),
            f"{trial}.redemption_rate": _("{name}: redemption rate").format(name=name),
            f"{trial}.return_rate_offered": _("{name}: came back, offered").format(name=name),
            f"{trial}.return_rate_control": _("{name}: came back, control group").format(name=name),
            f"{trial}.lift": _("{name}: lift").format(name=name),
            f"{trial}.lift_low": _("{name}: lift, 95 % CI from").format(name=name),
            f"{trial}.lift_high": _("{name}: lift, 95 % CI to").format(name=name),
        }
    labels |= {
        f"rfm.{key}": _("RFM: {segment}").format(segment=name) for key, name in rfm_names().items()
    }
    for group, name in _group_names().items():
        for key in ("active_cards", "purchases", "revenue", "average_check"):
            labels[f"{group}.{key}"] = f"{name}: {figures[key]}"
    return labels


def export_labels(language: str, people: dict[int, str]) -> export.ExportLabels:
    """Every word of an export in the current locale; `people` names cashiers."""
    date_format, datetime_format = _EXCEL_DATES.get(language, _EXCEL_DATES_DEFAULT)
    comma = language in _DECIMAL_COMMA
    card, client, purchase, offer = _("Card"), _("Client no."), _("Purchase no."), _("Offer no.")
    created = _("Created at")
    return export.ExportLabels(
        sheets={
            export.SUMMARY: _("KPIs"),
            "purchases": _("Purchases"),
            "cards": _("Cards"),
            "clients": _("Clients"),
            "surveys": _("Surveys"),
            "offers": _("Offers"),
        },
        headers={
            "kpi_summary.kpi": _("Figure"),
            "kpi_summary.value": _("Value"),
            "client_id": client,
            "purchases.id": purchase,
            "card_number": card,
            "purchases.created_at": _("Date and time"),
            "amount": _("Amount"),
            "discount_pct": _("Discount, %"),
            "discount_amount": _("Discount"),
            "paid_amount": _("Paid"),
            "offer_id": offer,
            "cashier_id": _("Cashier"),
            "source": _("Source"),
            "voided_at": _("Voided at"),
            "cards.number": card,
            "base_pct": _("Printed discount, %"),
            "segment": _("Segment"),
            "cards.kind": _("Card type"),
            "status": _("Status"),
            "issued_at": _("Handed out at"),
            "bound_at": _("Linked at"),
            "blocked_at": _("Blocked at"),
            "block_reason": _("Why blocked"),
            "clients.id": client,
            "tg_id": _("Telegram ID"),
            "first_name": _("First name"),
            "last_name": _("Last name"),
            "username": _("Telegram username"),
            "language": _("Language"),
            "consent_at": _("Agreed to the terms at"),
            "consent_version": _("Privacy policy version"),
            "reachable": _("Reachable in Telegram"),
            "marketing_opt_out": _("Offers turned off"),
            "clients.created_at": _("Joined at"),
            "erased_at": _("Data erased at"),
            "phone": _("Phone"),
            "birthday": _("Birthday"),
            "surveys.id": _("Survey no."),
            "purchase_id": purchase,
            "surveys.created_at": created,
            "score": _("Score (0–10)"),
            "answered_at": _("Answered at"),
            "comment": _("Comment"),
            "offers.id": offer,
            "offers.kind": _("Offer"),
            "bonus_pct": _("Extra discount, %"),
            "valid_from": _("Valid from"),
            "valid_until": _("Valid until"),
            "offers.created_at": created,
            "redeemed_purchase_id": _("Used in purchase no."),
            "redeemed_at": _("Used at"),
            "cancelled_at": _("Cancelled at"),
        },
        values={
            "status": {"in_stock": _("in stock"), "issued": _("issued"), "blocked": _("blocked")},
            "segment": {"b2c": "B2C", "b2b": "B2B"},
            "cards.kind": {"printed": _("printed"), "digital": _("digital")},
            "block_reason": {
                "lost": _("lost or stolen"),
                "erased": _("holder erased their data"),
                "replaced": _("replaced by another card"),
            },
            "source": {"bot": _("till in Telegram"), "import": _("history import")},
            "offers.kind": {
                "winback": _("win-back"),
                "birthday": _("birthday"),
                "welcome": _("welcome"),
            },
        },
        kpis=_kpi_labels(),
        people=people,
        date_format=date_format,
        datetime_format=datetime_format,
        csv_delimiter=";" if comma else ",",
        decimal_mark="," if comma else ".",
    )


def impact_lines(kpis: Kpis, settings: Settings) -> list[str]:
    """The "Program impact" block of /stats and the digest: a line per comparison that has
    data, then why none of them is causal; nothing when there is nothing to compare."""
    impact = kpis.impact
    lines = []
    ba = impact.before_after
    if ba.cards:
        # kpi.FREQUENCY_DAYS = 30
        lines.append(
            ngettext(
                "Before → after linking to Telegram ({cards} card): {before} → {after} "
                "purchases per 30 days, average check {check_before} → {check_after}",
                "Before → after linking to Telegram ({cards} cards): {before} → {after} "
                "purchases per 30 days, average check {check_before} → {check_after}",
                ba.cards,
            ).format(
                cards=fmt.number(ba.cards),
                before=_decimal(ba.before.frequency, settings),
                after=_decimal(ba.after.frequency, settings),
                check_before=_money(ba.before.average_check, settings),
                check_after=_money(ba.after.average_check, settings),
            )
        )
    members, paper = impact.members_vs_paper.get("members"), impact.members_vs_paper.get("paper")
    if members and paper and members.active_cards and paper.active_cards:
        lines.append(
            _(
                "Telegram members vs paper only: {members} vs {paper} purchases per active "
                "card, average check {members_check} vs {paper_check}"
            ).format(
                members=_decimal(members.frequency, settings),
                paper=_decimal(paper.frequency, settings),
                members_check=_money(members.average_check, settings),
                paper_check=_money(paper.average_check, settings),
            )
        )
    store = impact.store
    if store.days_covered:
        lines.append(
            ngettext(
                "Store totals for {covered} of {days} day: {share} of revenue through cards; "
                "average check: cardholders {cards}, everyone else {others}",
                "Store totals for {covered} of {days} days: {share} of revenue through cards; "
                "average check: cardholders {cards}, everyone else {others}",
                kpis.days,
            ).format(
                covered=fmt.number(store.days_covered),
                days=fmt.number(kpis.days),
                share=_share(store.card_share, settings),
                cards=_money(store.average_check_cardholders, settings),
                others=_money(store.average_check_others, settings),
            )
        )
    if not lines:
        return []
    return [
        _("<b>Program impact</b>"),
        *lines,
        _(
            "<i>Not proof of an effect: members choose to join, so they differ anyway; the "
            "hold-out lifts (win-back, birthdays, campaigns) are the figures that measure what "
            "the program causes.</i>"
        ),
    ]


def render_stats(current: Kpis, previous: Kpis, settings: Settings) -> str:
    lines = [
        _("<b>Program KPIs</b> for {period}").format(
            period=_span(current.first, current.last, settings)
        ),
        _("<i>Changes against {period}</i>").format(
            period=_span(previous.first, previous.last, settings)
        ),
        "",
    ]
    for label, key, render in STATS_LINES:
        value, before = getattr(current, key), getattr(previous, key)
        indent = "   · " if key in _INDENTED else ""
        lines.append(f"{indent}{label}: <b>{render(value, settings)}</b>{_change(value, before)}")
    nps = current.nps
    lines.append(
        _(
            "NPS: <b>{score}</b> (answers: {answers}; promoters {promoters}, passives {passives}, "
            "detractors {detractors})"
        ).format(
            score=_decimal(nps.score, settings),
            answers=fmt.number(nps.answers),
            promoters=fmt.number(nps.promoters),
            passives=fmt.number(nps.passives),
            detractors=fmt.number(nps.detractors),
        )
        + _change(nps.score, previous.nps.score)
    )
    names = rfm_names()
    rfm = ", ".join(f"{names[k]} {fmt.number(current.rfm.get(k, 0))}" for k in kpi.RFM_SEGMENTS)
    lines += ["", _("RFM segments: {segments}").format(segments=rfm), ""]
    groups = [
        ("B2C", current.by_segment.get("b2c")),
        ("B2B", current.by_segment.get("b2b")),
        (_("Telegram wallet"), current.digital_vs_paper.get("digital")),
        (_("Paper only"), current.digital_vs_paper.get("paper")),
    ]
    for name, core in groups:
        if core is None:
            continue
        lines.append(
            _(
                "{group}: active cards {active}, purchases {purchases}, {revenue}, "
                "average check {check}"
            ).format(
                group=name,
                active=fmt.number(core.active_cards),
                purchases=fmt.number(core.purchases),
                revenue=fmt.money(core.revenue, settings),
                check=_money(core.average_check, settings),
            )
        )
    if impact := impact_lines(current, settings):
        lines += ["", *impact]
    if invited := stats_lines(current, settings):
        lines += ["", *invited]
    trials = [(_("Win-back"), current.winback), (_("Birthday gifts"), current.birthday)]
    shown = [
        trial_line(name, figures, settings)
        for name, figures in trials
        if figures.offered or figures.control
    ]
    if shown:
        lines += ["", *shown]
    return "\n".join(lines)


def trial_line(name: str, figures: kpi.Winback, settings: Settings) -> str:
    """An automatic offer measured against its random control group (win-back, birthdays)."""
    return _(
        "{name}: {offered} offered, {control} in the control group, {redeemed} redeemed "
        "({redemption}); came back: {offered_rate} vs {control_rate} (lift {lift})"
    ).format(
        name=name,
        offered=fmt.number(figures.offered),
        control=fmt.number(figures.control),
        redeemed=fmt.number(figures.redeemed),
        redemption=_share(figures.redemption_rate, settings),
        offered_rate=_share(figures.return_rate_offered, settings),
        control_rate=_share(figures.return_rate_control, settings),
        lift=experiments.lift_text(figures.lift, figures.lift_low, figures.lift_high),
    )


def stats_keyboard() -> InlineKeyboardMarkup:
    labels = {"7d": _("7 days"), "30d": _("30 days"), "90d": _("90 days"), "month": _("Month")}
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=labels[p], callback_data=StatsCb(period=p).pack())
                for p in PRESETS
            ]
        ]
    )


async def stats_text(reports: ReportService, first: date, last: date) -> str:
    current, previous = await reports.compared(first, last)
    return render_stats(current, previous, reports.settings)


async def digest_message(reports: ReportService, now: datetime) -> tuple[str, bytes]:
    """The weekly digest as HTML text and a PNG chart, in the current i18n locale."""
    settings = reports.settings
    digest = await reports.digest(now)
    cur, prev = digest.current, digest.previous
    lines = [
        _("<b>Weekly digest</b> for {period}").format(
            period=_span(digest.first, digest.last, settings)
        ),
        "",
    ]
    for label, key, render in (
        (_("Revenue through cards"), "revenue", _money),
        (_("Purchases"), "purchases", _int),
        (_("Active cards"), "active_cards", _int),
        (_("Average check"), "average_check", _money),
        (_("Average discount"), "average_discount_pct", _pct),
        (_("New buyers"), "new_buyers", _int),
        (_("Cards issued in the week"), "cards_issued_in_period", _int),
    ):
        value = getattr(cur, key)
        lines.append(
            f"{label}: <b>{render(value, settings)}</b>{_change(value, getattr(prev, key))}"
        )
    lines.append(
        _("NPS: <b>{score}</b> (answers: {answers})").format(
            score=_decimal(cur.nps.score, settings), answers=fmt.number(cur.nps.answers)
        )
        + _change(cur.nps.score, prev.nps.score)
    )
    comments = [
        f"• {c.score}/10: «{html.escape(fmt.shorten(c.text, 120))}»" for c in digest.comments
    ]
    at_risk = [
        _("• {number}: last purchase {day}, purchases: {purchases}, {total}").format(
            number=group_number(card.number),
            day=fmt.day(card.last_purchase_at, settings),
            purchases=fmt.number(card.purchases),
            total=fmt.money(card.total, settings),
        )
        for card in digest.at_risk
    ]
    anomalies = [
        ngettext(
            "• card {number}: {uses} use on {day}",
            "• card {number}: {uses} uses on {day}",
            busy.uses,
        ).format(
            number=group_number(busy.number),
            uses=fmt.number(busy.uses),
            day=fmt.day(busy.day, settings),
        )
        for busy in digest.anomalies.cards
    ] + [
        _("• cashier {cashier}: discounts {share} of sales, others {others}").format(
            cashier=cashier.cashier_id,
            share=fmt.pct(round(cashier.share_pct, 1)),
            others=fmt.pct(round(cashier.others_mean_pct, 1)),
        )
        for cashier in digest.anomalies.cashiers
    ]
    sections = [
        (_("<b>What detractors said</b>"), comments, None),
        (_("<b>Cards at risk</b> (used to buy often, not lately)"), at_risk, None),
        (_("<b>Worth a look</b>"), anomalies, _("Nothing unusual this week.")),
    ]
    why = await motivation_lines(reports, now)
    if why:  # why members take part: the reasons as one item (never half of them), then comments
        _blank, title, *rest = why
        reasons = [line for line in rest if line.startswith("• ")]
        said = [line for line in rest if not line.startswith("• ")]
        sections.append((title, ["\n".join(reasons), *said], None))
    if ambassadors := await ambassador_section(reports, now):
        sections.append(ambassadors)
    if running := await campaign_section(reports.db, settings, digest.first, digest.last):
        sections.append(running)
    # The impact block closes the digest; the sections fit into what it leaves.
    impact = impact_lines(cur, settings)
    block = ["", *impact] if impact else []
    lines += _fit_sections(lines + block, sections, DIGEST_TEXT_LIMIT) + block
    png = render_chart(digest.series, chart_labels(settings), settings.store.currency_exponent)
    return "\n".join(lines), png


async def digest_chart(reports: ReportService, now: datetime) -> bytes:
    """The digest's chart alone (the scheduled digest sends it as a message of its own)."""
    settings = reports.settings
    _first, last = digest_week(now, settings)
    series = await reports.weekly(last, DIGEST_WEEKS)
    return render_chart(series, chart_labels(settings), settings.store.currency_exponent)


def chart_labels(settings: Settings) -> ChartLabels:
    """The chart's texts in the current i18n locale."""
    locale = fmt.current_locale()
    return ChartLabels(
        title=_("Last 12 weeks"),
        revenue=_("Revenue through cards"),
        active_cards=_("Active cards"),
        nps=_("NPS"),
        no_answers=_("No NPS answers yet"),
        nothing_yet=_(
            "Nothing to chart yet: revenue and active cards appear after the first purchases "
            "with a card, the NPS trend after the first survey answers."
        ),
        locale=locale,
        money=lambda minor: fmt.money(minor, settings, locale),
    )


# The digest is a text message of its own (the chart follows as a photo): Telegram's 4096
# characters, with room to spare.
DIGEST_TEXT_LIMIT = 4000


def _fit_sections(
    head: list[str], sections: list[tuple[str, list[str], str | None]], limit: int
) -> list[str]:
    """Take items from each section in turn (the first of each, then the second...) while the
    whole text stays within `limit` visible characters; render the sections in order."""
    taken: list[list[str]] = [[] for _ in sections]
    empty = [
        [] if items or placeholder is None else [placeholder] for _t, items, placeholder in sections
    ]

    def render() -> list[str]:
        out: list[str] = []
        for (title, _items, _p), chosen, fallback in zip(sections, taken, empty, strict=True):
            body = chosen or fallback
            if body:
                out += ["", title, *body]
        return out

    for depth in range(max((len(items) for _t, items, _p in sections), default=0)):
        for index, (_title, items, _p) in enumerate(sections):
            if depth < len(items):
                taken[index].append(items[depth])
                if fmt.visible_len(head + render()) > limit:
                    taken[index].pop()
    return render()


# -------------------------------------------------------------------------- handlers


async def stats(
    message: Message,
    command: CommandObject,
    reports: ReportService,
    settings: Settings,
    now: datetime,
    owner_chat: OwnerChat,
) -> None:
    try:
        first, last = kpi.parse_period(command.args, _today(now, settings))
    except InvalidPeriod as exc:
        await owner_chat.send(period_error(exc, "stats"))
        return
    text = await stats_text(reports, first, last)
    await owner_chat.send(text, reply_markup=stats_keyboard())


async def stats_period(
    cq: CallbackQuery,
    callback_data: StatsCb,
    reports: ReportService,
    settings: Settings,
    now: datetime,
    owner_chat: OwnerChat,
) -> None:
    if callback_data.period not in PRESETS:
        raise InvalidPeriod("format", callback_data.period)
    first, last = kpi.parse_period(callback_data.period, _today(now, settings))
    text = await stats_text(reports, first, last)
    await owner_chat.show(text, reply_markup=stats_keyboard())


async def digest(
    message: Message,
    reports: ReportService,
    now: datetime,
    owner_chat: OwnerChat,
) -> None:
    text, png = await digest_message(reports, now)
    await owner_chat.send(text)
    await owner_chat.send_photo(BufferedInputFile(png, filename="digest.png"))


async def export_data(
    message: Message,
    command: CommandObject,
    reports: ReportService,
    settings: Settings,
    now: datetime,
    owner_chat: OwnerChat,
    staff: StaffDirectory,
    bot: Bot,
) -> None:
    words = (command.args or "").lower().split()
    as_csv = "csv" in words
    words = [w for w in words if w not in ("csv", "xlsx")]
    today = _today(now, settings)
    if words:
        try:
            first, last = kpi.parse_period(" ".join(words), today)
        except InvalidPeriod as exc:
            await owner_chat.send(period_error(exc, "export"))
            return
    else:
        first, last = await reports.export_span(today)
    people = await staff.names(bot, await reports.cashier_ids(first, last))
    labels = export_labels(fmt.current_locale(), people)
    if as_csv:
        path: Path = await reports.export_csv_zip(first, last, labels)
        name = f"loyalty-{first}-{last}.zip"
    else:
        path = await reports.export_xlsx(first, last, labels)
        name = f"loyalty-{first}-{last}.xlsx"
    try:
        await owner_chat.send_document(
            FSInputFile(path, filename=name),
            caption=_("Export for {period}").format(period=_span(first, last, settings)),
        )
    finally:
        path.unlink(missing_ok=True)


async def card(
    message: Message,
    command: CommandObject,
    reports: ReportService,
    settings: Settings,
    owner_chat: OwnerChat,
) -> None:
    summary = await reports.card(command.args or "")
    status = {
        "in_stock": _("in stock"),
        "issued": _("issued"),
        "blocked": _("blocked"),
    }.get(summary.status, summary.status)
    kind = _("digital") if summary.kind == "digital" else _("printed")
    lines = [
        _("<b>Card {number}</b>: {pct} %, {segment}, {kind}, {status}").format(
            number=group_number(summary.number),
            pct=summary.base_pct,
            segment=summary.segment.upper(),
            kind=kind,
            status=status,
        )
    ]
    if summary.issued_at:
        lines.append(_("Issued: {when}").format(when=fmt.when(summary.issued_at, settings)))
    if summary.holder or summary.bound_at:
        lines.append(
            _("Bound to {holder} since {when}").format(
                holder=html.escape(summary.holder or "?"),
                when=fmt.when(summary.bound_at, settings) if summary.bound_at else "—",
            )
        )
    else:
        lines.append(_("Not bound to Telegram (paper only)."))
    lines.append(
        _("Purchases: {count}, total {total}, discounts {discounts}").format(
            count=fmt.number(summary.purchases),
            total=fmt.money(summary.total, settings),
            discounts=fmt.money(summary.discounts, settings),
        )
    )
    if summary.recent:
        lines += ["", _("<b>Latest purchases</b>")]
        for p in summary.recent:
            line = _("#{id} {when}: {amount}, −{pct} % ({discount})").format(
                id=p.id,
                when=fmt.when(p.created_at, settings),
                amount=fmt.money(p.amount, settings),
                pct=p.discount_pct,
                discount=fmt.money(p.discount_amount, settings),
            )
            lines.append(f"<s>{line}</s> " + _("voided") if p.voided else line)
    else:
        lines.append(_("No purchases yet."))
    await owner_chat.send("\n".join(lines))


async def cards(message: Message, db: Database, owner_chat: OwnerChat) -> None:
    counts = await inventory_counts(db)
    if not counts:
        await owner_chat.send(_("No cards registered yet: add them with python -m bot cards add."))
        return
    status_names = {"in_stock": _("in stock"), "issued": _("issued"), "blocked": _("blocked")}
    totals: dict[str, int] = {}
    for status, _pct_value, _segment, n in counts:
        totals[status] = totals.get(status, 0) + n
    lines = [
        _("<b>Card inventory</b>, total: {total}").format(total=fmt.number(sum(totals.values()))),
        "",
    ]
    for status in ("in_stock", "issued", "blocked"):
        if status not in totals:
            continue
        lines.append(f"<b>{status_names[status]}</b>: {fmt.number(totals[status])}")
        for st, pct_value, segment, n in counts:
            if st == status:
                lines.append(f"   · {fmt.pct(pct_value)} {segment.upper()}: {fmt.number(n)}")
    await owner_chat.send("\n".join(lines))


def setup() -> Router:
    """This feature's router, built anew for each dispatcher (handlers in routing order)."""
    router = owner_router(__name__)
    router.message.register(stats, Command("stats"))
    router.callback_query.register(stats_period, StatsCb.filter())
    router.message.register(digest, Command("digest"))
    router.message.register(export_data, Command("export"))
    router.message.register(card, Command("card", magic=F.args))
    router.message.register(cards, Command("cards"))
    return router
