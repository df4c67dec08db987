"""Engine and session factory with the SQLite settings the ledger relies on."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 15_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; FULL makes a confirmed sale survive a power
    # cut; busy_timeout makes a second writer (another process) wait instead of failing;
    # secure_delete overwrites deleted and updated-away content with zeros, so erased personal
    # data does not linger in free space of the file (`scrub_wal` deals with the log).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def scrub_wal(session: Session) -> bool:
    """After erasing personal data, a unit of work (`await db.write(scrub_wal)`): copy the
    write-ahead log into the database file and truncate the log, so that no earlier page image
    holding the erased values stays on disk (the log keeps old page versions until a
    checkpoint). SQLite only; True when the log was emptied (False: a reader kept it busy past
    `busy_timeout`; the next checkpoint finishes it)."""
    if session.get_bind().dialect.name != "sqlite":
        return True
    busy, _log, _done = (
        session.connection().exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    )
    if busy:
        log.warning("the WAL checkpoint after an erasure was blocked by a reader; retried later")
    return not busy


def ensure_sqlite_dir(url: str) -> None:
    """Create the directory of a file-based SQLite database so a fresh clone just works."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    ensure_sqlite_dir(url)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: services return plain data after committing their unit of work.
    return async_sessionmaker(engine, expire_on_commit=False)
