"""Units of work: which commits wait for the disk, on both engines."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from db.database import Database, unsynced


def _durability(session: Session) -> str:
    """How this unit's commit is made: SQLite's `synchronous` (2 FULL, 1 NORMAL) or
    PostgreSQL's `synchronous_commit`."""
    if session.get_bind().dialect.name == "sqlite":
        return {2: "flushed", 1: "not flushed"}[session.scalar(text("PRAGMA synchronous"))]
    return {"on": "flushed", "off": "not flushed"}[session.scalar(text("SHOW synchronous_commit"))]


@unsynced
def _quote_like(session: Session) -> str:
    return _durability(session)


async def test_a_sale_waits_for_the_disk_and_what_can_be_made_again_does_not(
    engine: AsyncEngine,
) -> None:
    """An ordinary unit (a sale) commits with the disk flushed; a unit marked `unsynced` (a
    quote) and every unit nobody waits for (the sender's bookkeeping) do not wait for it, and
    the ordinary unit after them is flushed again."""
    if engine.dialect.name == "postgresql":  # the test server flushes nothing by default
        async with engine.connect() as connection:
            name = await connection.scalar(text("SELECT current_database()"))
            await connection.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = on'))
            await connection.commit()
        await engine.dispose()  # new connections take the database's setting
    db = Database.of(engine)
    assert await db.write(_durability) == "flushed"
    assert await db.write(_quote_like) == "not flushed"
    assert await db.background.write(_durability) == "not flushed"
    assert await db.write(_durability) == "flushed"
    assert db.background.background is not db  # still the background
    assert await db.background.background.write(_durability) == "not flushed"
