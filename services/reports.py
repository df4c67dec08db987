"""Owner reports: the KPI sets, the weekly digest's data and chart, exports, one card's summary.

`ReportService` is what the owner's handlers (and the scheduled digest) call. Each of its
methods runs one unit of work (`db.database`): the KPI sets, the digest and the exports are long
reads (`db.report`: on SQLite they run on a lane of their own, beside the tills' writer, which
they never hold up; on PostgreSQL side by side with everything else); a card's summary and the
export's default period are short ones (`db.read`). The units themselves are the plain
functions of a `Session` here and in `services.kpi` / `services.export`::

    reports = ReportService(Database.of(engine), settings)
    current, previous = await reports.compared(first, last)     # /stats
    digest = await reports.digest(now)                           # /digest, the weekly digest
    digest = await reports.digest(now, branch_id=2)              # one branch's (a manager's)
    path = await reports.export_xlsx(first, last, labels)        # a temporary file
    card = await reports.card("100 045")                         # CardNotFound, InvalidCardNumber

No text for people here: the handler renders the digest in the reader's language and passes
the chart's labels in already translated.

Branches: every report takes an optional `branch_id` (one shop's figures; None = the whole
chain). In a chain of more than one branch (`services.branches.load`) the chain's digest also
carries the branch table (`Digest.branches`: each branch this week against last week, two
`kpi.by_branch` calls) that `render_branch_chart` draws; a one-shop install never gets one.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from babel.dates import format_skeleton
from babel.numbers import format_decimal
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator
from sqlalchemy import case, exists, func, select
from sqlalchemy.orm import Session

from db.database import Database
from db.models import Branch, Client, Purchase
from services import export, kpi
from services.branches import BranchInfo, load
from services.cards import by_number, normalize_number
from services.errors import CardNotFound

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings

DIGEST_WEEKS = 12


@dataclass(frozen=True)
class BranchWeek:
    """One branch's row of the chain digest's table: this week's figures and last week's
    (None: the branch had no row then)."""

    branch_id: int
    name: str
    current: kpi.BranchFigures
    previous: kpi.BranchFigures | None


@dataclass(frozen=True)
class Digest:
    first: date
    last: date
    current: kpi.Kpis
    previous: kpi.Kpis
    series: list[kpi.WeekPoint]
    at_risk: list[kpi.AtRiskCard]
    anomalies: kpi.Anomalies
    comments: list[kpi.Comment]
    # One branch's digest (a manager's): its id and name; None for the whole chain.
    branch_id: int | None = None
    branch_name: str | None = None
    # The chain's digest in a chain: every branch this week vs last, by revenue; else empty.
    branches: list[BranchWeek] = field(default_factory=list)
    # Branch names by id in a chain (a generous cashier's branch); empty for one shop.
    branch_names: dict[int, str] = field(default_factory=dict)


def digest_week(now: datetime, settings: Settings) -> tuple[date, date]:
    """The last 7 complete store days before `now` (Monday's digest covers Mon–Sun)."""
    last = now.astimezone(settings.store.tz).date() - timedelta(days=1)
    return last - timedelta(days=6), last


def build_digest(
    session: Session, settings: Settings, now: datetime, branch_id: int | None = None
) -> Digest:
    """The digest's figures for the week before `now` (a unit: `ReportService.digest`): the
    whole chain's (with the branch table in a chain), or one branch's."""
    first, last = digest_week(now, settings)
    prev_first, prev_last = kpi.previous_period(first, last)
    chain = load(session, settings)
    is_chain = len(chain) > 1
    branch_name = None
    if branch_id is not None:
        branch_name = next((b.name for b in chain if b.id == branch_id), None)
        if branch_name is None:
            raise UnknownBranch(branch_id)
    return Digest(
        first=first,
        last=last,
        current=kpi.compute(session, settings, first, last, branch_id=branch_id),
        previous=kpi.compute(
            session, settings, prev_first, prev_last, branch_id=branch_id, impact=False
        ),
        series=kpi.weekly_series(session, settings, last, DIGEST_WEEKS, branch_id=branch_id),
        at_risk=kpi.at_risk_cards(session, settings, last, branch_id=branch_id),
        anomalies=kpi.anomalies(session, settings, first, last, branch_id=branch_id),
        comments=kpi.detractor_comments(session, settings, first, last, branch_id=branch_id),
        branch_id=branch_id,
        branch_name=branch_name,
        branches=(
            branch_weeks(session, settings, first, last, chain)
            if is_chain and branch_id is None
            else []
        ),
        branch_names={b.id: b.name for b in chain} if is_chain else {},
    )


def branch_weeks(
    session: Session,
    settings: Settings,
    first: date,
    last: date,
    chain: list[BranchInfo] | None = None,
) -> list[BranchWeek]:
    """Each branch's figures for `first`…`last` against the equally long period before, by
    revenue (highest first, then by name); a closed branch without a purchase in either period
    is left out. Two `kpi.by_branch` calls, whatever the number of branches."""
    chain = load(session, settings) if chain is None else chain
    closed = {b.id for b in chain if not b.is_open}
    names = {b.id: b.name for b in chain}
    current = kpi.by_branch(session, settings, first, last)
    previous = {
        f.branch_id: f for f in kpi.by_branch(session, settings, *kpi.previous_period(first, last))
    }
    # by_branch leaves out a closed branch that sold nothing this week: last week it may have.
    shown = {f.branch_id for f in current}
    current += [
        kpi.BranchFigures(branch_id, names.get(branch_id, before.name))
        for branch_id, before in previous.items()
        if branch_id not in shown and before.purchases
    ]
    rows = []
    for figures in current:
        before = previous.get(figures.branch_id)
        sold = figures.purchases or (before is not None and before.purchases)
        if figures.branch_id in closed and not sold:
            continue
        name = names.get(figures.branch_id, figures.name)
        rows.append(BranchWeek(figures.branch_id, name, figures, before))
    rows.sort(key=lambda row: (-row.current.revenue, row.name.casefold(), row.branch_id))
    return rows


class UnknownBranch(LookupError):
    """A report was asked for a branch id the chain does not have."""

    def __init__(self, branch_id: int) -> None:
        super().__init__(f"no branch with id {branch_id}")
        self.branch_id = branch_id


@dataclass(frozen=True)
class ChartLabels:
    """Everything the chart shows in the owner's language: the texts (translated by the caller),
    the language of dates and counts, and how money reads (the caller's money formatting, so the
    chart shows `250 000 ₽` exactly as the digest's text does)."""

    title: str
    revenue: str
    active_cards: str
    nps: str
    no_answers: str
    nothing_yet: str = ""  # instead of empty axes for a new program; "" shows `no_answers`
    locale: str = "ru"
    money: Callable[[int], str] | None = None  # minor units → text; None: a grouped number


# Dates on the week axis: day and abbreviated month in the reader's language (`15 нояб.`,
# `Nov 15`, `15. nov`) — the weeks' last store days; the year is in the digest's text.
_WEEK_SKELETON = "dMMM"
_BARS = "#4C72B0"
_LINE = "#DD8452"
_NPS = "#55A868"


def chart_figure(series: list[kpi.WeekPoint], labels: ChartLabels, exponent: int) -> Figure:
    """The digest chart as a matplotlib `Figure` (`render_chart` makes the PNG): weekly revenue
    through cards (bars) and active cards (line), the NPS trend below; for a program with no
    purchases and no NPS answers in these weeks, a message instead of axes.

    Uses `Figure` + the Agg canvas directly (no pyplot): no global state, thread-safe, and
    nothing left open between renders.
    """
    if not any(p.revenue or p.active_cards or p.nps_answers for p in series):
        return _nothing_yet(labels)
    locale = labels.locale
    fig = Figure(figsize=(8, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(labels.title)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    x = list(range(len(series)))

    revenue = [p.revenue / 10**exponent for p in series]
    bars = top.bar(x, revenue, color=_BARS)
    top.set_ylabel(labels.revenue)
    # Whole currency units from 0: a week without sales is a zero bar, never a negative axis.
    top.set_ylim(0, max(revenue, default=0) * 1.05 or 1)
    top.yaxis.set_major_locator(MaxNLocator(integer=True))
    top.yaxis.set_major_formatter(FuncFormatter(_money_ticks(labels, exponent)))

    twin = top.twinx()
    active = [p.active_cards for p in series]
    (line,) = twin.plot(x, active, color=_LINE, marker="o")
    twin.set_ylabel(labels.active_cards)
    twin.set_ylim(0, max(active, default=0) * 1.1 or 1)
    twin.yaxis.set_major_locator(MaxNLocator(integer=True))
    twin.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_decimal(v, locale=locale)))

    # Under the plots, below the week labels: never on top of a bar, however tall (above
    # them it would collide with the title: constrained layout does not stack the two).
    fig.legend(
        [bars, line],
        [labels.revenue, labels.active_cards],
        loc="outside lower center",
        ncols=2,
        fontsize="small",
        frameon=False,
    )

    nps_x = [i for i, p in enumerate(series) if p.nps_score is not None]
    nps_y = [p.nps_score for p in series if p.nps_score is not None]
    if nps_x:
        bottom.plot(nps_x, nps_y, color=_NPS, marker="o", clip_on=False)
    else:
        bottom.text(
            0.5, 0.5, labels.no_answers, ha="center", va="center", transform=bottom.transAxes
        )
    bottom.axhline(0, color="#999999", linewidth=0.8)
    bottom.set_ylim(-100, 100)
    bottom.set_yticks([-100, -50, 0, 50, 100])
    bottom.yaxis.set_major_formatter(
        FuncFormatter(lambda v, _pos: format_decimal(round(v), locale=locale))
    )
    bottom.set_ylabel(labels.nps)
    bottom.set_xticks(
        x,
        [format_skeleton(_WEEK_SKELETON, p.last, locale=locale) for p in series],
        rotation=45,
        ha="right",
        rotation_mode="anchor",
        fontsize="small",
    )
    return fig


def _money_ticks(
    labels: ChartLabels | BranchChartLabels, exponent: int
) -> Callable[[float, int], str]:
    def tick(value: float, _pos: int) -> str:
        minor = round(value * 10**exponent)
        if labels.money is not None:
            return labels.money(minor)
        return format_decimal(minor / 10**exponent, locale=labels.locale)

    return tick


def _nothing_yet(labels: ChartLabels) -> Figure:
    """A new program: the title and one friendly sentence, no empty axes."""
    fig = Figure(figsize=(8, 3), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(labels.title)
    ax = fig.subplots()
    ax.set_axis_off()
    message = "\n".join(textwrap.wrap(labels.nothing_yet or labels.no_answers, 60))
    ax.text(0.5, 0.5, message, ha="center", va="center", color="#555555", fontsize="large")
    return fig


def render_chart(series: list[kpi.WeekPoint], labels: ChartLabels, exponent: int) -> bytes:
    """The digest chart as a PNG (see `chart_figure`)."""
    buffer = io.BytesIO()
    chart_figure(series, labels, exponent).savefig(buffer, format="png")
    return buffer.getvalue()


# ------------------------------------------------------------------ the branches' chart

BRANCH_CHART_MAX = 20  # bars of more branches would be unreadable: the top ones by revenue
_PREVIOUS = "#B0B7C3"


@dataclass(frozen=True)
class BranchChartLabels:
    """The branch comparison chart's words in the owner's language (see `ChartLabels`)."""

    title: str
    this_week: str
    last_week: str
    revenue: str
    locale: str = "ru"
    money: Callable[[int], str] | None = None


def branch_chart_figure(rows: list[BranchWeek], labels: BranchChartLabels, exponent: int) -> Figure:
    """Revenue per branch, this week against last week: a pair of horizontal bars per branch,
    the highest revenue on top (`rows` in the digest's order; the first `BRANCH_CHART_MAX`)."""
    rows = rows[:BRANCH_CHART_MAX]
    height = max(3.0, 1.4 + 0.5 * len(rows))
    fig = Figure(figsize=(8, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(labels.title)
    ax = fig.subplots()
    y = list(range(len(rows)))
    now = [row.current.revenue / 10**exponent for row in rows]
    before = [(row.previous.revenue if row.previous else 0) / 10**exponent for row in rows]
    bar = 0.38
    current = ax.barh([i - bar / 2 for i in y], now, height=bar, color=_BARS)
    earlier = ax.barh([i + bar / 2 for i in y], before, height=bar, color=_PREVIOUS)
    ax.set_yticks(y, [textwrap.shorten(row.name, 28, placeholder="…") for row in rows])
    ax.invert_yaxis()  # the highest revenue on top
    ax.set_xlim(0, max([*now, *before], default=0) * 1.08 or 1)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(_money_ticks(labels, exponent)))
    ax.set_xlabel(labels.revenue)
    fig.legend(
        [current, earlier],
        [labels.this_week, labels.last_week],
        loc="outside lower center",
        ncols=2,
        fontsize="small",
        frameon=False,
    )
    return fig


def render_branch_chart(rows: list[BranchWeek], labels: BranchChartLabels, exponent: int) -> bytes:
    """The branch comparison chart as a PNG (see `branch_chart_figure`)."""
    buffer = io.BytesIO()
    branch_chart_figure(rows, labels, exponent).savefig(buffer, format="png")
    return buffer.getvalue()


# ------------------------------------------------------------------------ one card


@dataclass(frozen=True)
class CardPurchase:
    id: int
    created_at: datetime
    amount: int
    discount_pct: int
    discount_amount: int
    voided: bool


@dataclass(frozen=True)
class CardSummary:
    number: str
    base_pct: int
    segment: str
    kind: str
    status: str
    issued_at: datetime | None
    bound_at: datetime | None
    holder: str | None  # @username or first name of the bound client, if any
    purchases: int
    total: int
    discounts: int
    first_at: datetime | None
    last_at: datetime | None
    recent: list[CardPurchase]


def card_summary(session: Session, text: str, limit: int = 10) -> CardSummary:
    """One card: inventory facts, lifetime totals (non-voided) and the latest purchases (a
    unit: `ReportService.card`). A typed number of no registered card: `CardNotFound`."""
    number = normalize_number(text)
    card = session.scalar(by_number(number))
    if card is None:
        raise CardNotFound(number)
    live = Purchase.voided_at.is_(None)
    totals = session.execute(
        select(
            func.sum(case((live, 1), else_=0)),
            func.sum(case((live, Purchase.amount), else_=0)),
            func.sum(case((live, Purchase.discount_amount), else_=0)),
            func.min(case((live, Purchase.created_at))),
            func.max(case((live, Purchase.created_at))),
        ).where(Purchase.card_id == card.id)
    ).one()
    rows = session.execute(
        select(
            Purchase.id,
            Purchase.created_at,
            Purchase.amount,
            Purchase.discount_pct,
            Purchase.discount_amount,
            Purchase.voided_at,
        )
        .where(Purchase.card_id == card.id)
        .order_by(Purchase.created_at.desc(), Purchase.id.desc())
        .limit(limit)
    )
    holder = None
    if card.client_id is not None:
        client = session.get(Client, card.client_id)
        if client is not None and client.erased_at is None:
            holder = f"@{client.username}" if client.username else client.first_name
    first_at, last_at = totals[3], totals[4]
    return CardSummary(
        number=card.number,
        base_pct=card.base_pct,
        segment=card.segment,
        kind=card.kind,
        status=card.status,
        issued_at=card.issued_at,
        bound_at=card.bound_at if card.client_id is not None else None,
        holder=holder,
        purchases=kpi.as_int(totals[0]),
        total=kpi.as_int(totals[1]),
        discounts=kpi.as_int(totals[2]),
        first_at=_aware(first_at),
        last_at=_aware(last_at),
        recent=[
            CardPurchase(pid, at, amount, pct, disc, voided is not None)
            for pid, at, amount, pct, disc, voided in rows.all()
        ],
    )


def _aware(value: datetime | str | None) -> datetime | None:
    """min()/max() over a CASE lose the column type on some dialects: normalise to aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def data_span(session: Session, settings: Settings, today: date) -> tuple[date, date]:
    """From the first purchase's store day (or today) to today: the default export period (a
    unit: `ReportService.export_span`)."""
    first = _aware(session.scalar(select(func.min(Purchase.created_at))))
    if first is None:
        return today, today
    return min(first.astimezone(settings.store.tz).date(), today), today


def reportable_branches(session: Session, settings: Settings) -> list[BranchInfo]:
    """The branches a report may be asked for: the open ones and the closed ones with at least
    one purchase (a closed branch that never sold has nothing to show), branch 1 first."""
    chain = load(session, settings)
    closed = [b.id for b in chain if not b.is_open]
    used: set[int] = set()
    if closed:
        used = set(
            session.scalars(
                select(Branch.id).where(
                    Branch.id.in_(closed), exists().where(Purchase.branch_id == Branch.id)
                )
            )
        )
    return [b for b in chain if b.is_open or b.id in used]


# ------------------------------------------------------------------------ the service


class ReportService:
    """The owner's reports, one unit of work per method (see the module docstring)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def kpis(self, first: date, last: date) -> kpi.Kpis:
        """Every KPI of the store days `first`…`last` (`kpi.InvalidPeriod` when reversed)."""
        return await self.db.report(kpi.compute, self.settings, first, last)

    async def compared(
        self, first: date, last: date, branch_id: int | None = None
    ) -> tuple[kpi.Kpis, kpi.Kpis]:
        """The KPIs of `first`…`last` and of the equally long period before it (/stats), of
        the whole chain or of one branch."""
        return await self.db.report(self._compared, first, last, branch_id)

    def _compared(
        self, session: Session, first: date, last: date, branch_id: int | None
    ) -> tuple[kpi.Kpis, kpi.Kpis]:
        current = kpi.compute(session, self.settings, first, last, branch_id=branch_id)
        previous = kpi.compute(
            session,
            self.settings,
            *kpi.previous_period(first, last),
            branch_id=branch_id,
            impact=False,
        )
        return current, previous

    async def weekly(
        self, last: date, weeks: int, branch_id: int | None = None
    ) -> list[kpi.WeekPoint]:
        """Revenue, active cards and NPS of each of the `weeks` weeks ending on `last` (of the
        whole chain or of one branch)."""
        return await self.db.report(self._weekly, last, weeks, branch_id)

    def _weekly(
        self, session: Session, last: date, weeks: int, branch_id: int | None
    ) -> list[kpi.WeekPoint]:
        return kpi.weekly_series(session, self.settings, last, weeks, branch_id=branch_id)

    async def digest(self, now: datetime, branch_id: int | None = None) -> Digest:
        """The weekly digest's figures: the last 7 complete store days before `now`, of the
        whole chain (with the branch table in a chain) or of one branch (`UnknownBranch`)."""
        return await self.db.report(build_digest, self.settings, now, branch_id)

    async def branch_weeks(self, now: datetime) -> list[BranchWeek]:
        """The digest's branch table alone (its chart): empty for a one-shop install."""
        return await self.db.report(self._branch_weeks, now)

    def _branch_weeks(self, session: Session, now: datetime) -> list[BranchWeek]:
        chain = load(session, self.settings)
        if len(chain) <= 1:
            return []
        return branch_weeks(session, self.settings, *digest_week(now, self.settings), chain)

    async def branches(self) -> list[BranchInfo]:
        """The branches reports may be asked for (`reportable_branches`)."""
        return await self.db.read(reportable_branches, self.settings)

    async def card(self, text: str, limit: int = 10) -> CardSummary:
        """One card by a typed number (`CardNotFound`, `InvalidCardNumber`)."""
        return await self.db.read(card_summary, text, limit)

    async def export_span(self, today: date) -> tuple[date, date]:
        """The default export period: from the first purchase's store day to `today`."""
        return await self.db.read(data_span, self.settings, today)

    async def cashier_ids(self, first: date, last: date) -> set[int]:
        """Who recorded purchases in the period (the caller names them for the export)."""
        return await self.db.report(export.cashier_ids, self.settings, first, last)

    async def export_xlsx(
        self, first: date, last: date, labels: export.ExportLabels | None = None
    ) -> Path:
        """The XLSX export of the period as a temporary file (the caller deletes it)."""
        return await self.db.report(export.export_xlsx, self.settings, first, last, labels)

    async def export_csv_zip(
        self, first: date, last: date, labels: export.ExportLabels | None = None
    ) -> Path:
        """The same as a zip of CSV files, a temporary file (the caller deletes it)."""
        return await self.db.report(export.export_csv_zip, self.settings, first, last, labels)
