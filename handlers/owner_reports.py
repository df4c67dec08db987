"""Owners: /stats, /digest, /export, /card N, /cards — the program's numbers in Telegram.

Everything is read-only: the figures come from `services.reports.ReportService` (`reports`, one
unit of work per call), the text is made here. Answers go through `OwnerChat` to the owner's
private chat, also when the owner asks in the staff group (`handlers/owner_chat.py`).
`digest_message` and `digest_chart` are also what the scheduled weekly digest sends, as two
messages (the caller sets the i18n locale first).

Branches (only in a chain of more than one: a one-shop owner never reads the word): /stats gets
a switch (`/stats [branch] [period]`, and buttons "All branches" + one per branch whose callback
data carries the branch id and the period), the chain's digest a branch table and a branch
comparison chart (`digest_branch_chart`), the "Worth a look" section each generous cashier's
branch. Branch managers (`Role.MANAGER`) use /stats and /digest for the branches they manage
only: their figures, their branches on the switch, never the chain's totals or another
branch's name; /export, /card and /cards stay the owner's.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
from handlers.owner_chat import OwnerChat, reports_router
from handlers.referrals import ambassador_section, stats_lines
from handlers.roles import IsOwner, Role, StaffDirectory
from services import export, kpi
from services.branches import BranchInfo, BranchService, name_key
from services.branches import load as load_branches
from services.cards import group_number
from services.delivery import Outgoing, Rendered
from services.errors import DomainError
from services.inventory import inventory_counts
from services.kpi import InvalidPeriod, Kpis
from services.reports import (
    BRANCH_CHART_MAX,
    DIGEST_WEEKS,
    BranchChartLabels,
    BranchWeek,
    ChartLabels,
    Digest,
    ReportService,
    digest_week,
    render_branch_chart,
    render_chart,
)

PRESETS = ("7d", "30d", "90d", "month")
ALL_SHOPS = 0  # `StatsBranchCb.branch` of the whole chain
BRANCH_BUTTONS_MAX = 60  # Telegram allows 100 buttons; more branches: /stats NAME


class StatsCb(CallbackData, prefix="st"):
    period: str


class StatsBranchCb(CallbackData, prefix="sb"):
    """/stats in a chain: the branch (`ALL_SHOPS`: the whole chain) and the period (a preset,
    or the two dates as `2026-10-01_2026-10-31`)."""

    branch: int
    period: str


class BranchRefused(DomainError):
    """A report for a branch this reader may not see (`unknown`: not theirs, or no such id)
    or that has nothing to show (`empty`: closed and never sold)."""

    def __init__(self, reason: str, name: str = "") -> None:
        super().__init__(f"branch refused: {reason} {name!r}")
        self.reason = reason
        self.name = name


@renders(BranchRefused)
def _branch_refused(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, BranchRefused)
    if exc.reason == "empty":
        return _("The branch {name} is closed and never sold anything: no figures to show.").format(
            name=html.escape(exc.name)
        )
    return _("These figures are not available to you.")


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
            export.BRANCHES: _("Branches"),
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
            "branch": _("Branch"),
            "branches.branch_id": _("Branch"),
            "branches.purchases": _("Purchases"),
            "branches.revenue": _("Revenue through cards"),
            "branches.discount_total": _("Discounts given"),
            "branches.active_cards": _("Active cards"),
            "branches.average_check": _("Average check"),
            "branches.average_discount_pct": _("Average discount"),
            "branches.nps": _("NPS"),
            "branches.nps_answers": _("NPS: answers"),
            "branches.new_buyers": _("New buyers"),
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


def scope_line(branch: BranchInfo | None) -> str:
    """Whose figures these are, in a chain: one branch's, or every shop's."""
    if branch is None:
        return _("🏬 All branches")
    return _("🏬 Branch: <b>{name}</b>").format(name=html.escape(branch.name))


def render_stats(
    current: Kpis, previous: Kpis, settings: Settings, scope: str | None = None
) -> str:
    """/stats; `scope` (in a chain) says whose figures they are (`scope_line`)."""
    lines = [
        _("<b>Program KPIs</b> for {period}").format(
            period=_span(current.first, current.last, settings)
        ),
        *([scope] if scope else []),
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
    labels = _period_labels()
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=labels[p], callback_data=StatsCb(period=p).pack())
                for p in PRESETS
            ]
        ]
    )


def _period_labels() -> dict[str, str]:
    return {"7d": _("7 days"), "30d": _("30 days"), "90d": _("90 days"), "month": _("Month")}


@dataclass(frozen=True)
class Scope:
    """What a reader of /stats and /digest may see: `branches` for the switch (empty: a
    one-shop install, where nobody reads the word "branch") and whether the whole chain's
    figures (`chain`: owners; managers see their branches only)."""

    branches: list[BranchInfo]
    chain: bool

    def find(self, branch_id: int) -> BranchInfo | None:
        return next((b for b in self.branches if b.id == branch_id), None)


async def reader_scope(
    role: Role, user_id: int, reports: ReportService, branches: BranchService, staff: StaffDirectory
) -> Scope:
    """The owner sees every branch that has figures (open, or closed after selling) and the
    chain; a manager the open branches they manage. One shop: the shop, as before branches."""
    if not await branches.is_chain():
        return Scope([], True)
    if role >= Role.OWNER:
        return Scope(await reports.branches(), True)
    return Scope(await staff.managed(user_id), False)


def split_branch(args: str, choices: Sequence[BranchInfo]) -> tuple[BranchInfo | None, str]:
    """A branch's name at the start (or the end) of the arguments, and what is left of them:
    `Tartu Centre 30d` → (Tartu Centre, `30d`). Names are matched whole, case-insensitively."""
    words = args.split()
    names = {name_key(b.name): b for b in choices}
    for n in range(len(words), 0, -1):
        head, tail = name_key(" ".join(words[:n])), name_key(" ".join(words[-n:]))
        if head in names:
            return names[head], " ".join(words[n:])
        if tail in names:
            return names[tail], " ".join(words[:-n])
    return None, args


_SPAN_TOKEN = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{4}-\d{2}-\d{2}$")


def period_token(args: str, first: date, last: date) -> str:
    """How a button remembers the period: the preset the owner typed (it moves with the
    days), else the two dates."""
    typed = args.strip().lower()
    if typed in PRESETS:
        return typed
    if not typed:
        return PRESETS[0]
    return f"{first.isoformat()}_{last.isoformat()}"


def token_period(token: str, today: date) -> tuple[date, date]:
    """A button's period (`InvalidPeriod` for anything a button of ours never carries)."""
    if token in PRESETS:
        return kpi.parse_period(token, today)
    if _SPAN_TOKEN.match(token):
        return kpi.parse_period(token.replace("_", " "), today)
    raise InvalidPeriod("format", token)


def branch_keyboard(scope: Scope, branch: BranchInfo | None, token: str) -> InlineKeyboardMarkup:
    """The periods (for the branch shown), then "All branches" (owners) and a button per branch
    (the one shown marked); a manager of one branch gets the periods only."""
    shown = ALL_SHOPS if branch is None else branch.id
    labels = _period_labels()
    rows = [
        [
            InlineKeyboardButton(
                text=("• " if p == token else "") + labels[p],
                callback_data=StatsBranchCb(branch=shown, period=p).pack(),
            )
            for p in PRESETS
        ]
    ]
    choices: list[tuple[int, str]] = [(ALL_SHOPS, _("All branches"))] if scope.chain else []
    for b in scope.branches[:BRANCH_BUTTONS_MAX]:
        choices.append((b.id, b.name if b.is_open else _("{name} (closed)").format(name=b.name)))
    if len(choices) > 1:
        buttons = [
            InlineKeyboardButton(
                text=("• " if branch_id == shown else "") + text,
                callback_data=StatsBranchCb(branch=branch_id, period=token).pack(),
            )
            for branch_id, text in choices
        ]
        rows += [buttons[i : i + 3] for i in range(0, len(buttons), 3)]
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def stats_text(reports: ReportService, first: date, last: date) -> str:
    """/stats of a one-shop install, as before there were branches."""
    current, previous = await reports.compared(first, last)
    return render_stats(current, previous, reports.settings)


async def branch_stats(
    reports: ReportService,
    scope: Scope,
    branch: BranchInfo | None,
    first: date,
    last: date,
    token: str,
) -> tuple[str, InlineKeyboardMarkup]:
    """/stats in a chain: one branch's figures (`kpi.compute(branch_id=…)`, one KPI set like
    the chain's) or the chain's, with the switch."""
    current, previous = await reports.compared(first, last, None if branch is None else branch.id)
    text = render_stats(current, previous, reports.settings, scope_line(branch))
    return text, branch_keyboard(scope, branch, token)


def _delta(current: float | int | None, previous: float | int | None) -> str:
    """A change in parentheses for the branch table: ` (▲ 20 %)`; nothing without a base."""
    change = _change(current, previous).strip()
    return f" ({change})" if change else ""


def branch_table_lines(rows: list[BranchWeek], settings: Settings) -> list[str]:
    """The digest's branch table: a line per branch, highest revenue first, each figure with
    its change against last week."""
    lines = []
    for row in rows:
        cur, prev = row.current, row.previous or kpi.BranchFigures(row.branch_id, row.name)
        lines.append(
            _(
                "• <b>{name}</b>: {revenue}{revenue_change}; purchases {purchases}"
                "{purchases_change}; active cards {active}{active_change}; average check "
                "{check}{check_change}"
            ).format(
                name=html.escape(row.name),
                revenue=fmt.money(cur.revenue, settings),
                revenue_change=_delta(cur.revenue, prev.revenue),
                purchases=fmt.number(cur.purchases),
                purchases_change=_delta(cur.purchases, prev.purchases),
                active=fmt.number(cur.active_cards),
                active_change=_delta(cur.active_cards, prev.active_cards),
                check=_money(cur.average_check, settings),
                check_change=_delta(cur.average_check, prev.average_check),
            )
        )
    return lines


# At most this share of the digest's text goes to the branch table (a chain of a hundred:
# the top branches by revenue, and how many more there are).
BRANCH_TABLE_SHARE = 0.45


def _branch_table(rows: list[BranchWeek], settings: Settings, limit: int) -> list[str]:
    if not rows:
        return []
    title = _("<b>Branches</b>: this week against last week, by revenue")
    lines = branch_table_lines(rows, settings)
    budget = int(limit * BRANCH_TABLE_SHARE)
    taken: list[str] = []
    for index, line in enumerate(lines):
        rest = len(lines) - index - 1
        more = [_more_branches(rest)] if rest else []
        if taken and fmt.visible_len(["", title, *taken, line, *more]) > budget:
            taken.append(_more_branches(len(lines) - index))
            break
        taken.append(line)
    return ["", title, *taken]


def _more_branches(count: int) -> str:
    return ngettext(
        "… and {count} more branch (all of them: /export)",
        "… and {count} more branches (all of them: /export)",
        count,
    ).format(count=fmt.number(count))


def anomaly_lines(digest: Digest, settings: Settings) -> list[str]:
    """The "Worth a look" items: busy cards, then generous cashiers (in a chain, with the
    branch where they gave those discounts)."""
    cards = [
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
    ]
    cashiers = []
    for cashier in digest.anomalies.cashiers:
        share = fmt.pct(round(cashier.share_pct, 1))
        others = fmt.pct(round(cashier.others_mean_pct, 1))
        branch = digest.branch_names.get(getattr(cashier, "branch_id", 0))
        if branch is not None and digest.branch_id is None:
            cashiers.append(
                _(
                    "• cashier {cashier} at {branch}: discounts {share} of sales, others of "
                    "that branch {others}"
                ).format(
                    cashier=cashier.cashier_id,
                    branch=html.escape(branch),
                    share=share,
                    others=others,
                )
            )
        else:
            cashiers.append(
                _("• cashier {cashier}: discounts {share} of sales, others {others}").format(
                    cashier=cashier.cashier_id, share=share, others=others
                )
            )
    return cards + cashiers


@dataclass(frozen=True)
class DigestParts:
    """The digest as it is sent: the text, the 12 weeks' chart, and in a chain's digest the
    branch comparison chart (None otherwise)."""

    text: str
    chart: bytes
    branch_chart: bytes | None = None


async def digest_message(
    reports: ReportService, now: datetime, branch_id: int | None = None
) -> tuple[str, bytes]:
    """The weekly digest as HTML text and a PNG chart, in the current i18n locale."""
    parts = await digest_parts(reports, now, branch_id)
    return parts.text, parts.chart or b""


async def digest_parts(
    reports: ReportService, now: datetime, branch_id: int | None = None
) -> DigestParts:
    """The whole chain's digest (`branch_id` None: with the branch table and chart in a
    chain), or one branch's (a manager's: its KPI set, its anomalies, nothing of the others)."""
    settings = reports.settings
    digest = await reports.digest(now, branch_id)
    cur, prev = digest.current, digest.previous
    lines = [
        _("<b>Weekly digest</b> for {period}").format(
            period=_span(digest.first, digest.last, settings)
        ),
    ]
    if digest.branch_names:  # a chain: whose digest this is
        branch = None
        if digest.branch_id is not None:
            branch = BranchInfo(id=digest.branch_id, name=digest.branch_name or "")
        lines.append(scope_line(branch))
    lines.append("")
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
    lines += _branch_table(digest.branches, settings, DIGEST_TEXT_LIMIT)
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
    sections = [
        (_("<b>What detractors said</b>"), comments, None),
        (_("<b>Cards at risk</b> (used to buy often, not lately)"), at_risk, None),
        (
            _("<b>Worth a look</b>"),
            anomaly_lines(digest, settings),
            _("Nothing unusual this week."),
        ),
    ]
    if branch_id is None:  # the program's own sections: the owner's digest only
        why = await motivation_lines(reports, now)
        if (
            why
        ):  # why members take part: the reasons as one item (never half of them), then comments
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
    branch_png = None
    if digest.branches:
        branch_png = render_branch_chart(
            digest.branches,
            branch_chart_labels(settings, len(digest.branches)),
            settings.store.currency_exponent,
        )
    return DigestParts("\n".join(lines), png, branch_png)


async def digest_chart(
    reports: ReportService, now: datetime, branch_id: int | None = None
) -> bytes:
    """The digest's chart alone (the scheduled digest sends it as a message of its own)."""
    settings = reports.settings
    _first, last = digest_week(now, settings)
    series = await reports.weekly(last, DIGEST_WEEKS, branch_id)
    return render_chart(series, chart_labels(settings), settings.store.currency_exponent)


async def digest_branch_chart(reports: ReportService, now: datetime) -> bytes | None:
    """The chain digest's branch comparison chart alone (None for a one-shop install)."""
    settings = reports.settings
    rows = await reports.branch_weeks(now)
    if not rows:
        return None
    labels = branch_chart_labels(settings, len(rows))
    return render_branch_chart(rows, labels, settings.store.currency_exponent)


# ------------------------------------------------------------- the scheduled digest


async def _digest_branch(
    db: Database, item: Outgoing, settings: Settings
) -> tuple[bool, int | None]:
    """Whether a digest row is still wanted, and its branch (None: an owner's row). A
    manager's row is dropped once the branch closed or they no longer manage it."""
    branch_id = item.payload.get("branch_id")
    if branch_id is None:
        return True, None
    chain = await db.read(load_branches, settings)
    branch = next((b for b in chain if b.id == int(branch_id)), None)
    if branch is None or not branch.is_open or item.chat_id not in branch.managers:
        return False, None
    return True, branch.id


async def scheduled_digest(
    db: Database, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    """The scheduled digest's text (`services.jobs`): the owner's, or a manager's branch's."""
    wanted, branch_id = await _digest_branch(db, item, settings)
    if not wanted:
        return None
    text, _chart = await digest_message(ReportService(db, settings), now, branch_id)
    return Rendered(text)


async def scheduled_chart(
    db: Database, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    """The scheduled digest's 12-week chart (the owner's, or a manager's branch's)."""
    wanted, branch_id = await _digest_branch(db, item, settings)
    if not wanted:
        return None
    chart = await digest_chart(ReportService(db, settings), now, branch_id)
    return Rendered(
        _("📈 The last 12 weeks: revenue through cards, active cards and NPS."), photo=chart
    )


async def scheduled_branch_chart(
    db: Database, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    """The owners' branch comparison chart (a chain's scheduled digest)."""
    chart = await digest_branch_chart(ReportService(db, settings), now)
    if chart is None:
        return None
    return Rendered(
        _("🏬 Revenue through cards per branch: this week against last week."), photo=chart
    )


def branch_chart_labels(settings: Settings, branches: int) -> BranchChartLabels:
    """The branch comparison chart's texts in the current i18n locale."""
    locale = fmt.current_locale()
    if branches > BRANCH_CHART_MAX:
        title = _("Revenue through cards: the {shown} branches with the most").format(
            shown=fmt.number(BRANCH_CHART_MAX)
        )
    else:
        title = _("Revenue through cards per branch")
    return BranchChartLabels(
        title=title,
        this_week=_("This week"),
        last_week=_("Last week"),
        revenue=_("Revenue through cards"),
        locale=locale,
        money=lambda minor: fmt.money(minor, settings, locale),
    )


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
    role: Role,
    staff: StaffDirectory,
    branches: BranchService,
) -> None:
    scope = await reader_scope(role, owner_chat.owner_id, reports, branches, staff)
    args = command.args or ""
    branch = None
    if scope.branches:
        branch, args = await _typed_branch(args, scope, branches)
        if branch is None and not scope.chain:
            branch = scope.branches[0]  # a manager: their (first) branch
    try:
        first, last = kpi.parse_period(args, _today(now, settings))
    except InvalidPeriod as exc:
        await owner_chat.send(period_error(exc, "stats"))
        return
    if not scope.branches:  # one shop: as before there were branches
        text = await stats_text(reports, first, last)
        await owner_chat.send(text, reply_markup=stats_keyboard())
        return
    text, markup = await branch_stats(
        reports, scope, branch, first, last, period_token(args, first, last)
    )
    await owner_chat.send(text, reply_markup=markup)


async def _typed_branch(
    args: str, scope: Scope, branches: BranchService
) -> tuple[BranchInfo | None, str]:
    """The branch named in /stats or /digest, if any, and the rest of the arguments. The owner
    naming a closed branch that never sold is told so; a manager's words are matched against
    their own branches only (another branch's name reads as a period)."""
    branch, rest = split_branch(args, scope.branches)
    if branch is None and scope.chain:
        named, _rest = split_branch(args, await branches.listed())
        if named is not None:
            raise BranchRefused("empty", named.name)
    return branch, rest


async def stats_period(
    cq: CallbackQuery,
    callback_data: StatsCb,
    reports: ReportService,
    settings: Settings,
    now: datetime,
    owner_chat: OwnerChat,
    role: Role,
    staff: StaffDirectory,
    branches: BranchService,
) -> None:
    if callback_data.period not in PRESETS:
        raise InvalidPeriod("format", callback_data.period)
    first, last = kpi.parse_period(callback_data.period, _today(now, settings))
    scope = await reader_scope(role, owner_chat.owner_id, reports, branches, staff)
    if not scope.chain:  # a button from before the chain: never the chain's totals
        raise BranchRefused("unknown")
    if scope.branches:  # it became a chain since: the whole chain, with the switch
        text, markup = await branch_stats(reports, scope, None, first, last, callback_data.period)
        await owner_chat.show(text, reply_markup=markup)
        return
    text = await stats_text(reports, first, last)
    await owner_chat.show(text, reply_markup=stats_keyboard())


async def stats_branch(
    cq: CallbackQuery,
    callback_data: StatsBranchCb,
    reports: ReportService,
    settings: Settings,
    now: datetime,
    owner_chat: OwnerChat,
    role: Role,
    staff: StaffDirectory,
    branches: BranchService,
) -> None:
    """A press on the switch: the branch and the period are checked against what this
    reader may see (a forged id, another's branch, a closed one that never sold: refused,
    the message stays as it was)."""
    scope = await reader_scope(role, owner_chat.owner_id, reports, branches, staff)
    if not scope.branches:
        raise BranchRefused("unknown")
    branch = None
    if callback_data.branch != ALL_SHOPS or not scope.chain:
        branch = scope.find(callback_data.branch)
        if branch is None:
            listed = await branches.get(callback_data.branch) if scope.chain else None
            if listed is not None:
                raise BranchRefused("empty", listed.name)
            raise BranchRefused("unknown")
    first, last = token_period(callback_data.period, _today(now, settings))
    text, markup = await branch_stats(reports, scope, branch, first, last, callback_data.period)
    await owner_chat.show(text, reply_markup=markup)


async def digest(
    message: Message,
    command: CommandObject,
    reports: ReportService,
    now: datetime,
    owner_chat: OwnerChat,
    role: Role,
    staff: StaffDirectory,
    branches: BranchService,
) -> None:
    """The owner: the chain's digest (in a chain with the branch chart); `/digest NAME`: one
    branch's. A manager: the digest of each branch they manage."""
    scope = await reader_scope(role, owner_chat.owner_id, reports, branches, staff)
    targets: list[int | None] = [None]
    if role < Role.OWNER:  # (in a one-shop install, the shop: its figures are the chain's)
        targets = [b.id for b in await staff.managed(owner_chat.owner_id)]
    if scope.branches:
        branch, _rest = await _typed_branch(command.args or "", scope, branches)
        if branch is not None:
            targets = [branch.id]
    for branch_id in targets:
        parts = await digest_parts(reports, now, branch_id)
        await owner_chat.send(parts.text)
        await owner_chat.send_photo(BufferedInputFile(parts.chart, filename="digest.png"))
        if parts.branch_chart is not None:
            await owner_chat.send_photo(
                BufferedInputFile(parts.branch_chart, filename="branches.png")
            )


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
    """This feature's router, built anew for each dispatcher (handlers in routing order):
    owners and branch managers reach /stats and /digest, the rest is the owner's."""
    router = reports_router(__name__)
    router.message.register(stats, Command("stats"))
    router.callback_query.register(stats_period, StatsCb.filter())
    router.callback_query.register(stats_branch, StatsBranchCb.filter())
    router.message.register(digest, Command("digest"))
    router.message.register(export_data, Command("export"), IsOwner())
    router.message.register(card, Command("card", magic=F.args), IsOwner())
    router.message.register(cards, Command("cards"), IsOwner())
    return router
