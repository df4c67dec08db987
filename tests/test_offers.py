"""Win-back (eligibility, median rule, cooldown, control group) and birthday offers."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from db.database import Database
from db.models import Card, CardStatus, Client, Offer, WinbackAssignment
from services import offers
from tests.conftest import App, FrozenClock, make_settings
from tests.engagement_helpers import (
    bulk_clients,
    buy,
    card_of,
    deliveries,
    fast_limiter,
    make_client,
    sender_for,
)

# These tests run delivery passes by hand: no background worker racing for the rows.
pytestmark = pytest.mark.manual_delivery


async def _eligible(session: AsyncSession, settings: Settings, now: datetime) -> set[int]:
    candidates = await session.run_sync(offers.winback_candidates, settings, now)
    return {tg for _id, tg, _last in candidates}


async def test_exactly_at_the_minimum_days_is_eligible(
    session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    client = await make_client(session, 6001)
    await buy(session, client, clock())
    days = settings.engagement.winback_min_days
    assert await _eligible(session, settings, clock() + timedelta(days=days, seconds=-1)) == set()
    assert await _eligible(session, settings, clock() + timedelta(days=days)) == {6001}


async def test_the_median_gap_raises_the_threshold(
    session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    # Buys every 30 days (gaps 30, 30, 10 → median 30): threshold max(45, 3 × 30) = 90 days.
    client = await make_client(session, 6002)
    start = clock()
    for offset in (0, 30, 60, 70):
        await buy(session, client, start + timedelta(days=offset))
    last = start + timedelta(days=70)
    assert await _eligible(session, settings, last + timedelta(days=89)) == set()
    assert await _eligible(session, settings, last + timedelta(days=90)) == {6002}
    # A voided purchase does not count as a visit.
    other = await make_client(session, 6003)
    await buy(session, other, start)
    await buy(session, other, start + timedelta(days=40), voided=True)
    assert 6003 in await _eligible(session, settings, start + timedelta(days=45))


async def test_only_contactable_clients(
    session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    for tg_id, options in (
        (6101, {}),
        (6102, {"opt_out": True}),
        (6103, {"reachable": False}),
        (6104, {"consent": False}),
        (6105, {"erased": True}),
    ):
        await buy(session, await make_client(session, tg_id, **options), clock())
    await make_client(session, 6106)  # never bought anything
    assert await _eligible(session, settings, clock() + timedelta(days=60)) == {6101}


async def test_no_offer_for_someone_whose_only_card_is_blocked(
    db: Database, session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    """An offer the till could never apply (a lost card, not replaced yet) is not sent."""
    blocked = await make_client(session, 6107, birthday=date(1990, 11, 20))
    await buy(session, blocked, clock())
    card = await card_of(session, blocked)
    card.status = CardStatus.BLOCKED
    card.block_reason = "lost"
    await session.commit()
    assert await _eligible(session, settings, clock() + timedelta(days=60)) == set()
    birthday = clock().replace(month=11, day=20, hour=9)
    assert await offers.birthday_sweep(db, settings, birthday) == 0
    # With a new card they are reachable by offers again.
    session.add(Card(number="777001", base_pct=5, status=CardStatus.ISSUED, client_id=blocked.id))
    await session.commit()
    assert await _eligible(session, settings, clock() + timedelta(days=60)) == {6107}


async def test_sweep_offers_records_and_respects_the_cooldown(
    db: Database, session: AsyncSession, db_url: str, clock: FrozenClock
) -> None:
    settings = make_settings(db_url, winback_holdout_pct=0)
    client = await make_client(session, 6201)
    await buy(session, client, clock())
    now = clock() + timedelta(days=50)
    result = await offers.winback_sweep(db, settings, now, random.Random(1))
    assert (result.eligible, result.control, result.offered) == (1, 0, 1)
    offer = await session.scalar(select(Offer))
    assert offer is not None and offer.kind == "winback"
    assert offer.bonus_pct == settings.engagement.winback_bonus_pct
    assert offer.valid_until == now + timedelta(days=settings.engagement.winback_valid_days)
    assignment = await session.scalar(select(WinbackAssignment))
    assert assignment is not None and assignment.offer_id == offer.id and not assignment.control
    [row] = await deliveries(session)
    assert row.key == f"winback:{assignment.id}" and row.marketing and row.kind == "offer"
    # The same day again, and within the cooldown: nothing new.
    for later in (now + timedelta(hours=2), now + timedelta(days=59)):
        assert (await offers.winback_sweep(db, settings, later)).eligible == 0
    # After the cooldown, still away: offered again.
    assert (await offers.winback_sweep(db, settings, now + timedelta(days=60))).offered == 1


async def test_control_group_share(db: Database, session: AsyncSession, settings: Settings) -> None:
    now = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)
    await bulk_clients(session, 100_000, 1000, now - timedelta(days=100))
    result = await offers.winback_sweep(db, settings, now, random.Random(42))
    assert result.eligible == 1000
    assert 70 <= result.control <= 130  # 10 % ± 3 points
    assert result.control + result.offered == 1000
    assert await session.scalar(select(func.count()).select_from(Offer)) == result.offered
    control = await session.scalar(select(func.count()).where(WinbackAssignment.control.is_(True)))
    assert control == result.control
    assert len(await deliveries(session)) == result.offered  # the control group gets nothing
    # Reproducible with the same seed.
    rng = random.Random(42)
    assert result.control == sum(rng.random() * 100 < 10 for _ in range(1000))


async def test_birthday_offer_once_a_year(db: Database, session: AsyncSession, db_url: str) -> None:
    settings = make_settings(db_url, birthday_days_before=2, birthday_holdout_pct=0)
    await make_client(session, 6301, birthday=date(1990, 11, 20))
    await make_client(session, 6302, birthday=date(1990, 12, 25), opt_out=True)
    day = datetime(2026, 11, 17, 9, 0, tzinfo=settings.store.tz)  # 3 days before
    assert await offers.birthday_sweep(db, settings, day) == 0
    assert await offers.birthday_sweep(db, settings, day + timedelta(days=1)) == 1
    for later in (2, 3, 10):  # the day itself, a week later: still once
        assert await offers.birthday_sweep(db, settings, day + timedelta(days=later)) == 0
    [row] = await deliveries(session)
    client_id = await session.scalar(select(Client.id).where(Client.tg_id == 6301))
    assert row.key == f"birthday:{client_id}:2026"
    next_year = datetime(2027, 11, 19, 9, 0, tzinfo=settings.store.tz)
    assert await offers.birthday_sweep(db, settings, next_year) == 1


def test_birthday_dates() -> None:
    assert offers.birthday_due(date(2000, 2, 29), date(2027, 2, 28), 0) == date(2027, 2, 28)
    assert offers.birthday_due(date(2000, 1, 1), date(2026, 12, 30), 3) == date(2027, 1, 1)
    assert offers.birthday_due(date(2000, 1, 1), date(2026, 12, 28), 3) is None


async def test_offer_message_has_a_working_opt_out(app: App, session: AsyncSession) -> None:
    client = await make_client(session, 6401, first_name="Eve")
    await buy(session, client, app.clock() - timedelta(days=60))
    settings = app.settings.with_changes(winback_holdout_pct=0)
    await offers.winback_sweep(app.db, settings, app.clock())
    sender = sender_for(app.bot, app.sessionmaker, app.settings, app.clock, limiter=fast_limiter())
    assert (await sender.deliver_due()).sent == 1
    user = app.tg.user(6401, language_code="en")
    offer = user.last_message()
    assert "We miss you" in (offer.text or "") and "5 %" in (offer.text or "")
    await user.press(offer, "🔕")
    done = await user.wait_message("will not receive offers")
    await session.refresh(client)
    assert client.marketing_opt_out is True
    await user.press(done, "↩️")
    await user.wait_message("back on")
    await session.refresh(client)
    assert client.marketing_opt_out is False


# ------------------------------------------------------------- concurrent transactions
# Two workers running the daily jobs at once: `asyncio.gather` of two sweeps (on PostgreSQL
# two transactions at the same time).


async def test_two_winback_sweeps_at_once_make_one_offer(
    db: Database, session: AsyncSession, db_url: str, clock: FrozenClock
) -> None:
    settings = make_settings(db_url, winback_holdout_pct=0)
    await buy(session, await make_client(session, 6501), clock())
    later = clock() + timedelta(days=90)
    results = await asyncio.gather(
        *(offers.winback_sweep(db, settings, later, random.Random(n)) for n in range(2))
    )
    assert sorted(r.offered for r in results) == [0, 1]
    assert await session.scalar(select(func.count()).select_from(Offer)) == 1
    assert await session.scalar(select(func.count()).select_from(WinbackAssignment)) == 1
    assert len(await deliveries(session)) == 1


async def test_two_birthday_sweeps_at_once_make_one_gift(
    db: Database, session: AsyncSession, db_url: str
) -> None:
    settings = make_settings(db_url, birthday_days_before=0, birthday_holdout_pct=0)
    client = await make_client(session, 6502, birthday=date(1990, 11, 20))
    day = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    created = await asyncio.gather(*(offers.birthday_sweep(db, settings, day) for _ in range(2)))
    assert sorted(created) == [0, 1]
    assert await session.scalar(select(func.count()).select_from(Offer)) == 1
    assert [row.key for row in await deliveries(session)] == [f"birthday:{client.id}:2026"]
