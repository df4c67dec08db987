"""Prepared statements: the same values in and out as `Session.execute`, in the unit's
transaction, and a clear refusal for what they do not support."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from db.lane import Lane
from db.models import AuditEvent, Card, CardStatus, Client, Delivery, UTCDateTime
from db.prepared import Prepared
from tests.conftest import on_postgres

pytestmark = pytest.mark.skipif(
    on_postgres(),
    reason="prepared statements are SQLite's fast path: on PostgreSQL they run through the session",
)

AT = datetime(2026, 11, 20, 21, 30, 15, 123456, tzinfo=UTC)

_insert_card = Prepared(insert(Card.__table__))
_insert_client = Prepared(insert(Client.__table__).returning(Client.__table__.c.id))
_holder = Prepared(
    select(
        Card.__table__.c.number,
        Card.__table__.c.issued_at,
        Client.__table__.c.reachable,
        Client.__table__.c.first_name.label("name"),
    )
    .select_from(Card.__table__)
    .outerjoin(Client.__table__, Client.__table__.c.id == Card.__table__.c.client_id)
    .where(Card.__table__.c.number == bindparam("p_number"))
)
_audit = Prepared(insert(AuditEvent.__table__))


def _card(number: str, client_id: int | None = None) -> dict[str, object]:
    return {
        "number": number,
        "base_pct": 5,
        "segment": "b2c",
        "kind": "printed",
        "status": CardStatus.ISSUED.value,
        "created_at": AT,
        "issued_at": AT,
        "client_id": client_id,
        "bind_failures": 0,
        "purchase_count": 0,
        "purchase_total": 0,
    }


def _seed(session: Session) -> int:
    client_id = _insert_client.execute(
        session,
        {
            "tg_id": 777,
            "first_name": "Ann",
            "language": "et",
            "reachable": False,
            "marketing_opt_out": False,
            "created_at": AT,
        },
    ).scalar_one()
    _insert_card.execute(session, _card("500001", client_id))
    _insert_card.execute(session, _card("500002"))
    session.commit()
    return int(client_id)


async def test_values_come_back_as_through_session_execute(engine: AsyncEngine) -> None:
    lane = Lane.of(engine)
    await lane.run(_seed)

    def both(session: Session, number: str) -> tuple[object, object]:
        plain = session.execute(_holder.statement, {"p_number": number}).one()
        return tuple(plain), _holder.execute(session, {"p_number": number}).one()

    plain, prepared = await lane.run(both, "500001")
    assert tuple(prepared) == plain == ("500001", AT, False, "Ann")
    assert prepared.issued_at.tzinfo is UTC and prepared.reachable is False  # type: ignore[attr-defined]
    assert prepared.name == "Ann"  # type: ignore[attr-defined]
    plain, prepared = await lane.run(both, "500002")  # unbound: the client's columns are NULL
    assert tuple(prepared) == plain == ("500002", AT, None, None)
    assert (await lane.run(lambda s: _holder.execute(s, {"p_number": "9"}).first())) is None


async def test_json_and_datetimes_are_stored_as_the_orm_stores_them(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    def write(session: Session) -> int:
        rows = [
            {"at": AT + timedelta(seconds=i), "action": f"test.{i}", "details": {"n": i, "é": "ü"}}
            for i in range(3)
        ]
        count = _audit.execute_many(session, rows)
        session.commit()
        return count

    assert await Lane.of(engine).run(write) == 3
    async with sessionmaker() as session:
        events = (await session.scalars(select(AuditEvent).order_by(AuditEvent.id))).all()
    assert [(e.action, e.at, e.details) for e in events] == [
        (f"test.{i}", AT + timedelta(seconds=i), {"n": i, "é": "ü"}) for i in range(3)
    ]


async def test_it_commits_and_rolls_back_with_the_unit(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    rename = Prepared(
        update(Client.__table__)
        .where(Client.__table__.c.tg_id == bindparam("p_tg"))
        .values(first_name=bindparam("p_name"))
    )
    lane = Lane.of(engine)
    await lane.run(_seed)

    def renamed_then_failed(session: Session) -> None:
        assert rename.execute(session, {"p_tg": 777, "p_name": "Bob"}).rowcount == 1
        raise RuntimeError("the unit fails before its commit")

    with pytest.raises(RuntimeError):
        await lane.run(renamed_then_failed)
    async with sessionmaker() as session:
        assert await session.scalar(select(Client.first_name)) == "Ann"

    def renamed(session: Session) -> None:
        rename.execute(session, {"p_tg": 777, "p_name": "Eve"})
        session.commit()

    await lane.run(renamed)
    async with sessionmaker() as session:
        assert await session.scalar(select(Client.first_name)) == "Eve"


async def test_driver_errors_are_sqlalchemy_errors(engine: AsyncEngine) -> None:
    lane = Lane.of(engine)
    await lane.run(_seed)
    with pytest.raises(IntegrityError):  # the unique card number
        await lane.run(lambda session: _insert_card.execute(session, _card("500001")))


async def test_what_it_cannot_run_is_refused_on_first_use(engine: AsyncEngine) -> None:
    lane = Lane.of(engine)
    expanding = Prepared(select(Card.__table__.c.id).where(Card.__table__.c.id.in_([1, 2])))
    with pytest.raises(InvalidRequestError, match="expanding IN"):
        await lane.run(lambda session: expanding.execute(session))
    # deliveries.created_at has a Python default that SQLAlchemy would compute at execution
    defaults = Prepared(insert(Delivery.__table__))
    row = {"key": "k", "kind": "receipt", "chat_id": 1, "status": "pending", "due_at": AT}
    with pytest.raises(InvalidRequestError, match="created_at"):
        await lane.run(lambda session: defaults.execute(session, row))
    needs_time = Prepared(
        select(Card.__table__.c.id).where(
            Card.__table__.c.issued_at < bindparam("p_now", type_=UTCDateTime())
        )
    )
    with pytest.raises(InvalidRequestError, match="p_now"):
        await lane.run(lambda session: needs_time.execute(session, {}))
    with pytest.raises(ValueError, match="naive"):  # UTCDateTime's own check still applies
        await lane.run(lambda s: needs_time.execute(s, {"p_now": AT.replace(tzinfo=None)}))
