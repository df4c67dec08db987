"""Invariants of the KPI engine over small generated datasets (hypothesis)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from db.engine import create_engine, create_sessionmaker
from db.models import Card, Client, Purchase, Survey
from services import kpi
from tests.conftest import make_settings
from tests.kpi_helpers import Data, msk, report_service


@dataclass(frozen=True)
class Shape:
    """A period P = first…last, and purchases from `origin` for `days` days: before, in and
    after P (and its previous period)."""

    first: date
    last: date
    origin: date
    days: int

    def at(self, day: int, hour: int) -> datetime:
        return msk(self.origin.year, self.origin.month, self.origin.day, hour) + timedelta(day)


SHAPES = {
    # A week: no whole month inside P or the week before it, every figure from the ledger.
    "week": Shape(date(2026, 11, 8), date(2026, 11, 14), date(2026, 10, 25), 31),
    # A quarter, 87 days: P and the period before it each span whole months (read from the
    # cards' monthly figures) and parts of others (from the ledger).
    "quarter": Shape(date(2026, 8, 20), date(2026, 11, 14), date(2026, 5, 1), 211),
}

cards_st = st.lists(
    st.tuples(st.sampled_from(["b2c", "b2b"]), st.booleans(), st.integers(0, 20)),
    min_size=1,
    max_size=5,
)
purchases_st = st.lists(
    st.tuples(
        st.integers(0, 4),  # card index (modulo the number of cards)
        st.integers(0, 210),  # day offset from the shape's origin (modulo its days)
        st.integers(0, 23),  # hour, store time
        st.integers(1, 5_000_000),  # amount, minor units
        st.booleans(),  # voided
    ),
    max_size=25,
)
scores_st = st.lists(st.tuples(st.integers(0, 10), st.integers(0, 20)), max_size=12)


async def _check(db_url: str, shape: Shape, cards_spec, purchases_spec, scores_spec) -> None:  # type: ignore[no-untyped-def]
    FIRST, LAST = shape.first, shape.last
    END = msk(LAST.year, LAST.month, LAST.day, 0) + timedelta(1)  # the end of LAST, store time
    purchases_spec = [(i, day % shape.days, h, a, v) for i, day, h, a, v in purchases_spec]
    settings_ = make_settings(db_url)
    engine = create_engine(db_url)
    reports = report_service(engine, settings_)
    try:
        async with create_sessionmaker(engine)() as session:
            for model in (Survey, Purchase, Card, Client):
                await session.execute(delete(model))
            d = Data(session)
            client = await d.client()
            cards = []
            for i, (segment, bound, issued_day) in enumerate(cards_spec):
                issued = shape.at(issued_day, 12)
                cards.append(
                    await d.card(
                        f"{400000 + i}",
                        issued_at=issued,
                        segment=segment,
                        client=client if bound else None,
                    )
                )
            later = []
            for index, day, hour, amount, voided in purchases_spec:
                at = shape.at(day, hour)
                if at >= END:
                    later.append((index, at, amount, voided))
                    continue
                await d.buy(cards[index % len(cards)], at, amount, voided=voided)
            for score, day in scores_spec:
                await d.survey(client, shape.at(day, 12), score)
            await d.commit()
            k = await reports.kpis(FIRST, LAST)
            # A chain of one: the first shop's figures (read from its ledger rows alone) are
            # the whole program's (read from the cards' monthly and lifetime figures), and its
            # row of the branch table says the same.
            one = await reports.db.report(kpi.compute, settings_, FIRST, LAST, branch_id=1)
            assert replace(one, branch_id=None) == k
            (row,) = await reports.db.report(kpi.by_branch, settings_, FIRST, LAST)
            assert (row.purchases, row.revenue, row.active_cards, row.new_buyers) == (
                k.purchases,
                k.revenue,
                k.active_cards,
                k.new_buyers,
            )
            assert (row.nps, row.nps_answers) == (k.nps.score, k.nps.answers)
            at_risk = await reports.db.report(kpi.at_risk_cards, settings_, LAST, 5)
            assert at_risk == await reports.db.report(
                kpi.at_risk_cards, settings_, LAST, 5, branch_id=1
            )
            weeks = await reports.db.report(kpi.weekly_series, settings_, LAST, 4)
            assert weeks == await reports.db.report(
                kpi.weekly_series, settings_, LAST, 4, branch_id=1
            )
            # What happens after P never changes P's figures (the engine subtracts it from the
            # cards' lifetime figures).
            for index, at, amount, voided in later:
                await d.buy(cards[index % len(cards)], at, amount, voided=voided)
            await d.commit()
            assert kpi.to_json(await reports.kpis(FIRST, LAST), 2) == kpi.to_json(k, 2)
    finally:
        await engine.dispose()

    for splits in (k.by_segment, k.digital_vs_paper):
        for name in ("cards_issued", "active_cards", "purchases", "revenue", "discount_total"):
            assert sum(getattr(core, name) for core in splits.values()) == getattr(k, name), name
    if k.purchases:
        assert k.average_check is not None
        assert k.average_check * k.purchases == pytest.approx(k.revenue)
        assert k.active_cards <= k.purchases
        assert k.frequency is not None and k.frequency >= 1
    else:
        assert k.average_check is None and k.revenue == 0
    nps = k.nps
    assert nps.promoters + nps.passives + nps.detractors == nps.answers
    if nps.answers:
        assert -100 <= (nps.score or 0) <= 100
    assert k.new_buyers <= k.active_cards
    for rate in (k.activity_rate, k.repeat_rate, k.retention_rate):
        assert rate is None or 0 <= rate <= 1
    # P's figures by brute force from the generated purchases: activity in P and in the
    # equally long period before it (the engine seeks the latter only where it must).
    start = msk(FIRST.year, FIRST.month, FIRST.day, 0)
    prev_first, _ = kpi.previous_period(FIRST, LAST)
    prev_start = msk(prev_first.year, prev_first.month, prev_first.day, 0)
    bought: dict[int, list[tuple[datetime, int]]] = {}  # card index -> (time, amount) up to END
    for index, day, hour, amount, voided in purchases_spec:
        at = shape.at(day, hour)
        if not voided and at < END:
            bought.setdefault(index % len(cards_spec), []).append((at, amount))
    in_p = {c: [a for t, a in rows if t >= start] for c, rows in bought.items()}
    active = {c for c, amounts in in_p.items() if amounts}
    before = {c for c, rows in bought.items() if any(prev_start <= t < start for t, _a in rows)}
    assert (k.active_cards, k.purchases) == (len(active), sum(len(a) for a in in_p.values()))
    assert k.revenue == sum(sum(a) for a in in_p.values())
    assert k.new_buyers == len({c for c in active if len(in_p[c]) == len(bought[c])})
    assert sum(core.previous_active for core in k.by_segment.values()) == len(before)
    assert sum(core.retained for core in k.by_segment.values()) == len(before & active)
    assert k.retention_rate == (len(before & active) / len(before) if before else None)
    lifetime: dict[int, int] = {}  # card index -> gross spend up to the end of P
    for index, day, hour, amount, voided in purchases_spec:
        if not voided and shape.at(day, hour) < END:
            card = index % len(cards_spec)
            lifetime[card] = lifetime.get(card, 0) + amount
    assert sum(k.rfm.values()) == len(lifetime)
    if lifetime:
        assert k.ltv == pytest.approx(sum(lifetime.values()) / len(lifetime))
    else:
        assert k.ltv is None


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cards_spec=cards_st, purchases_spec=purchases_st, scores_spec=scores_st)
@pytest.mark.parametrize("shape", SHAPES)
def test_kpi_invariants(db_url: str, shape: str, cards_spec, purchases_spec, scores_spec) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(_check(db_url, SHAPES[shape], cards_spec, purchases_spec, scores_spec))
