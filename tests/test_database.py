"""Units of work: which commits wait for the disk, on both engines."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from db import lane
from db.database import Database, unsynced


def _durability(session: Session) -> str:
    """PostgreSQL: how this unit's commit is made (`synchronous_commit`). SQLite: the lane's
    connection always commits with synchronous=NORMAL (1); whether the unit waited for the
    disk is whether the lane flushed the log before handing its result back."""
    if session.get_bind().dialect.name == "sqlite":
        assert session.scalar(text("PRAGMA synchronous")) == 1
        return "see the log"
    return {"on": "flushed", "off": "not flushed"}[session.scalar(text("SHOW synchronous_commit"))]


@unsynced
def _quote_like(session: Session) -> str:
    return _durability(session)


async def test_a_sale_waits_for_the_disk_and_what_can_be_made_again_does_not(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ordinary unit (a sale) commits with the disk flushed; a unit marked `unsynced` (a
    quote) and every unit nobody waits for (the sender's bookkeeping) do not wait for it, and
    the ordinary unit after them is flushed again."""
    flushes: list[str] = []  # SQLite: the write-ahead log's flushes by the lane
    flush = lane._flush
    monkeypatch.setattr(lane, "_flush", lambda wal: flushes.append(wal) or flush(wal))

    async def commit(db: Database, unit: Any) -> str:
        before = len(flushes)
        made = await db.write(unit)
        if made == "see the log":
            return "flushed" if len(flushes) > before else "not flushed"
        return made

    if engine.dialect.name == "postgresql":  # the test server flushes nothing by default
        async with engine.connect() as connection:
            name = await connection.scalar(text("SELECT current_database()"))
            await connection.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = on'))
            await connection.commit()
        await engine.dispose()  # new connections take the database's setting
    db = Database.of(engine)
    assert await commit(db, _durability) == "flushed"
    assert await commit(db, _quote_like) == "not flushed"
    assert await commit(db.background, _durability) == "not flushed"
    assert await commit(db, _durability) == "flushed"
    assert db.background.background is not db  # still the background
    assert await commit(db.background.background, _durability) == "not flushed"
    if engine.dialect.name == "sqlite":
        assert flushes and all(wal.endswith("-wal") for wal in flushes)
