"""The blocking lane: one per engine, the caller's context inside, a failed unit leaves nothing."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from db import lane as lane_module
from db.engine import create_engine
from db.lane import Lane, sync_url
from db.models import Card, CardStatus
from tests.conftest import on_postgres

pytestmark = pytest.mark.skipif(
    on_postgres(),
    reason="the lane is SQLite's writer thread: on PostgreSQL units run through run_sync",
)

_marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="none")


def _add_card(session: Session, number: str, fail: bool) -> int:
    session.add(Card(number=number, base_pct=5, status=CardStatus.IN_STOCK))
    session.flush()
    if fail:
        raise RuntimeError("the unit failed before its commit")
    session.commit()
    return threading.get_ident()


async def test_a_unit_runs_on_the_lane_thread_and_commits(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    lane = Lane.of(engine)
    assert Lane.of(engine) is lane  # one lane per engine
    thread = await lane.run(_add_card, "900001", False)
    assert thread != threading.get_ident()
    with pytest.raises(RuntimeError):
        await lane.run(_add_card, "900002", True)
    async with sessionmaker() as session:
        numbers = set(await session.scalars(select(Card.number)))
    assert "900001" in numbers and "900002" not in numbers  # the failed unit left nothing


async def test_a_unit_sees_the_callers_context(engine: AsyncEngine) -> None:
    _marker.set("till")
    assert await Lane.of(engine).run(lambda session: _marker.get()) == "till"


async def test_disposing_the_engine_disposes_its_lane(db_url: str) -> None:
    engine = create_engine(db_url)
    first = Lane.of(engine)
    await engine.dispose()
    with pytest.raises(RuntimeError):  # its thread is gone
        await first.run(lambda session: None)
    second = Lane.of(engine)  # the engine is usable again, and so is a fresh lane
    assert second is not first
    assert await second.run(lambda session: session.scalar(select(1))) == 1
    await engine.dispose()


async def test_units_someone_waits_for_go_before_the_background(engine: AsyncEngine) -> None:
    """While the lane is busy, a cashier's unit queued after the delivery sender's bookkeeping
    runs first."""
    lane = Lane.of(engine)
    busy, order = threading.Event(), []

    def hold(session: Session) -> None:
        busy.wait(5)

    def note(name: str) -> Callable[[Session], str]:
        def unit(session: Session) -> str:
            order.append(name)
            return name

        return unit

    held = asyncio.ensure_future(lane.run(hold))
    await asyncio.sleep(0.05)  # the lane is inside `hold`
    bookkeeping = asyncio.ensure_future(lane.submit(note("bookkeeping"), (), {}, later=True))
    await asyncio.sleep(0)
    cashier = asyncio.ensure_future(lane.run(note("cashier")))
    await asyncio.sleep(0)
    busy.set()
    assert await asyncio.wait_for(asyncio.gather(cashier, bookkeeping), 5) == [
        "cashier",
        "bookkeeping",
    ]
    await held
    assert order == ["cashier", "bookkeeping"]


async def test_sales_confirmed_together_share_one_flush_of_the_log(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: five sales queued while the lane is busy commit one after another and
    then wait for the disk once, together; none of them is answered before that flush."""
    lane = Lane.of(engine)
    events: list[str] = []
    flush = lane_module._flush

    def flushed(wal: str) -> OSError | None:
        events.append("flush")
        return flush(wal)

    monkeypatch.setattr(lane_module, "_flush", flushed)
    busy = threading.Event()
    held = asyncio.ensure_future(lane.submit(lambda session: busy.wait(5), (), {}, synced=None))
    await asyncio.sleep(0.05)  # the lane is inside a read

    async def sale(number: str) -> None:
        await lane.run(_add_card, number, False)
        events.append(f"answered {number}")

    sales = [asyncio.ensure_future(sale(f"90010{i}")) for i in range(5)]
    await asyncio.sleep(0.01)
    busy.set()
    await asyncio.wait_for(asyncio.gather(held, *sales), 5)
    assert events[0] == "flush"
    assert events.count("flush") == 1
    assert sorted(events[1:]) == [f"answered 90010{i}" for i in range(5)]


async def test_a_failed_flush_fails_the_sales_waiting_for_it(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the disk refuses the flush, a sale is not reported as recorded (its commit may be
    lost); a unit that needed no flush is answered as usual."""
    lane = Lane.of(engine)
    monkeypatch.setattr(lane_module, "_flush", lambda wal: OSError(5, "Input/output error"))
    with pytest.raises(OSError, match="Input/output"):
        await lane.run(_add_card, "900201", False)
    assert await lane.submit(lambda session: "read", (), {}, synced=None) == "read"


def test_only_sqlite_urls_have_a_lane() -> None:
    assert sync_url("sqlite+aiosqlite:////var/lib/loyalty/loyalty.db") == (
        "sqlite:////var/lib/loyalty/loyalty.db"
    )
    with pytest.raises(ValueError):
        sync_url("postgresql+asyncpg://bot@localhost/loyalty")
