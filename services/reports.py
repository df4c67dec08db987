"""Owner reports: the weekly digest's data, its chart, and one card's summary.

No text for people here: the handler renders the digest in the reader's language and passes
the chart's labels in already translated.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Client, Purchase
from services import kpi
from services.cards import get_registered

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from bot.config import Settings

DIGEST_WEEKS = 12


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


def digest_week(now: datetime, settings: Settings) -> tuple[date, date]:
    """The last 7 complete store days before `now` (Monday's digest covers Mon–Sun)."""
    last = now.astimezone(settings.tz).date() - timedelta(days=1)
    return last - timedelta(days=6), last


async def build_digest(session: AsyncSession, settings: Settings, now: datetime) -> Digest:
    first, last = digest_week(now, settings)
    prev_first, prev_last = kpi.previous_period(first, last)
    return Digest(
        first=first,
        last=last,
        current=await kpi.compute(session, settings, first, last),
        previous=await kpi.compute(session, settings, prev_first, prev_last),
        series=await kpi.weekly_series(session, settings, last, DIGEST_WEEKS),
        at_risk=await kpi.at_risk_cards(session, settings, last),
        anomalies=await kpi.anomalies(session, settings, first, last),
        comments=await kpi.detractor_comments(session, settings, first, last),
    )


@dataclass(frozen=True)
class ChartLabels:
    """Every text on the chart, translated by the caller."""

    title: str
    revenue: str
    active_cards: str
    nps: str
    no_answers: str


def render_chart(
    series: list[kpi.WeekPoint], labels: ChartLabels, exponent: int, date_format: str = "%d.%m"
) -> bytes:
    """PNG: weekly revenue through cards (bars) and active cards (line), NPS trend below.

    Uses `Figure` + the Agg canvas directly (no pyplot): no global state, thread-safe, and
    nothing left open between renders.
    """
    fig = Figure(figsize=(8, 6), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    x = list(range(len(series)))
    ticks = [p.last.strftime(date_format) for p in series]
    revenue = [p.revenue / 10**exponent for p in series]
    bars = top.bar(x, revenue, color="#4C72B0")
    top.set_ylabel(labels.revenue)
    top.set_title(labels.title)
    twin = top.twinx()
    (line,) = twin.plot(x, [p.active_cards for p in series], color="#DD8452", marker="o")
    twin.set_ylabel(labels.active_cards)
    twin.set_ylim(bottom=0)
    twin.yaxis.set_major_locator(MaxNLocator(integer=True))
    top.legend(
        [bars, line], [labels.revenue, labels.active_cards], loc="upper left", fontsize="small"
    )
    nps_x = [i for i, p in enumerate(series) if p.nps_score is not None]
    nps_y = [p.nps_score for p in series if p.nps_score is not None]
    if nps_x:
        bottom.plot(nps_x, nps_y, color="#55A868", marker="o")
    else:
        bottom.text(
            0.5, 0.5, labels.no_answers, ha="center", va="center", transform=bottom.transAxes
        )
    bottom.axhline(0, color="#999999", linewidth=0.8)
    bottom.set_ylim(-100, 100)
    bottom.set_ylabel(labels.nps)
    bottom.set_xticks(x)
    bottom.set_xticklabels(ticks, rotation=45, fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
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


async def card_summary(session: AsyncSession, text: str, limit: int = 10) -> CardSummary:
    """One card: inventory facts, lifetime totals (non-voided) and the latest purchases."""
    card = await get_registered(session, text)
    live = Purchase.voided_at.is_(None)
    totals = (
        await session.execute(
            select(
                func.sum(case((live, 1), else_=0)),
                func.sum(case((live, Purchase.amount), else_=0)),
                func.sum(case((live, Purchase.discount_amount), else_=0)),
                func.min(case((live, Purchase.created_at))),
                func.max(case((live, Purchase.created_at))),
            ).where(Purchase.card_id == card.id)
        )
    ).one()
    rows = await session.execute(
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
        client = await session.get(Client, card.client_id)
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
        purchases=totals[0] or 0,
        total=totals[1] or 0,
        discounts=totals[2] or 0,
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


async def data_span(session: AsyncSession, settings: Settings, today: date) -> tuple[date, date]:
    """From the first purchase's store day (or today) to today: the default export period."""
    first = await session.scalar(select(func.min(Purchase.created_at)))
    if first is None:
        return today, today
    return min(first.astimezone(settings.tz).date(), today), today
