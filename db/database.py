"""The one way to the database: units of work, the same on SQLite and on PostgreSQL.

A *unit of work* is a plain function of a SQLAlchemy `Session`: it reads and writes with the
ORM or Core and commits what it wants kept (`session.commit()`); whatever it leaves
uncommitted is rolled back when it returns or raises. Services hand their units to the
process's `Database` and never see an engine, a driver or a thread:

    db = Database.of(engine)                            # one per engine, disposed with it

    def rename(session: Session, card_id: int, name: str) -> None:
        session.execute(update(...))
        session.commit()

    await db.write(rename, 42, "Anna")                  # a unit that writes
    view = await db.read(card_view, 42)                 # a unit that only reads
    kpis = await db.report(kpi_set, first, last)        # a long read (reports, exports)

How a unit runs depends on the engine, and only this module knows:

* **SQLite** (one process, the embedded default). Write units run one at a time on the write
  lane (`db.lane`): one thread with one connection of the stdlib driver, because SQLite has one
  writer anyway and a whole unit then costs one thread round trip, where aiosqlite costs four
  per statement. Short reads share that lane (they take microseconds, and the lane's warm
  connection beats a second one: the till's card lookup there costs a third less of a sale).
  Long reads — reports and exports — run on a report lane of their own (another thread and
  connection): in WAL mode readers never wait for the writer, so they do not hold up the tills.
  Units nobody waits for go through `db.background` and run on the write lane only when no
  unit someone waits for is queued there.
* **PostgreSQL** (chains, several workers). Every unit runs through `AsyncSession.run_sync` on
  the asyncpg engine: the same synchronous code, its I/O awaited on the event loop. Reads and
  writes differ only in intent: PostgreSQL runs them side by side. A long read's transaction
  turns JIT compilation off and gives its sorts and aggregates more memory (`REPORT_SETTINGS`).

A unit marked `unsynced` (and every unit on `db.background`) commits without waiting for the
disk, on both engines: for what can be made again (a quote, a conversation's step, the sender's
bookkeeping), never for a sale.

Units run in a copy of the caller's context (contextvars), so the caller's locale applies.
"""

from __future__ import annotations

import copy
import functools
import weakref
from collections.abc import Callable
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Session

from db.lane import Lane

P = ParamSpec("P")
T = TypeVar("T")
Unit = Callable[Concatenate[Session, P], T]
U = TypeVar("U", bound=Callable[..., Any])
_UNSYNCED = "_commit_unsynced"  # set by `unsynced`

# PostgreSQL, for the transaction of a long read only (SET LOCAL ends with it). JIT compilation
# costs seconds on report plans and saves nothing (bench/kpi.py, 10M purchases: 2.5 s of an
# 8.5 s KPI set), and the per-card aggregates and window sorts of 100,000 cards spill to disk
# with the default 4 MB of work_mem.
REPORT_SETTINGS = ("SET LOCAL jit = off", "SET LOCAL work_mem = '64MB'")


class Database:
    _instances: ClassVar[weakref.WeakKeyDictionary[Engine, Database]] = weakref.WeakKeyDictionary()

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._lane: Lane | None = None
        self._read_lane: Lane | None = None
        self._later = False
        if self.dialect == "sqlite":
            self._lane = Lane.of(engine)
            self._read_lane = Lane(engine.url.render_as_string(hide_password=False), "db-report")

    @functools.cached_property
    def background(self) -> Database:
        """This database for units nobody is waiting for (the delivery sender's bookkeeping, a
        conversation's step written behind its reply): on SQLite they queue on the write lane
        behind every unit someone waits for; on PostgreSQL units run side by side anyway.
        Their commits are `unsynced` on both."""
        background = copy.copy(self)
        background._later = True
        return background

    @classmethod
    def of(cls, engine: AsyncEngine) -> Database:
        """The database of this engine (one per engine); `engine.dispose()` disposes it too."""
        key = engine.sync_engine
        database = cls._instances.get(key)
        if database is None:
            database = cls._instances[key] = cls(engine)

            def disposed(_connection: Any) -> None:
                if cls._instances.get(key) is database:
                    del cls._instances[key]
                database.close()

            event.listen(key, "engine_disposed", disposed)
        return database

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def write(self, unit: Unit[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a unit that may write (see the module docstring); its result is returned and
        what it raises is raised here."""
        synced = not (self._later or getattr(unit, _UNSYNCED, False))
        if self._lane is not None:
            return await self._lane.submit(unit, args, kwargs, later=self._later, synced=synced)
        if not synced:
            return await self._run_async(_unsynced_commit, unit, *args, **kwargs)
        return await self._run_async(unit, *args, **kwargs)

    async def read(self, unit: Unit[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a short unit that only reads (a card, a page of history)."""
        if self._lane is not None:
            # A read commits nothing: it runs in whatever mode the connection is in.
            return await self._lane.submit(unit, args, kwargs, later=self._later, synced=None)
        return await self._run_async(unit, *args, **kwargs)

    async def report(self, unit: Unit[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a long unit that only reads (KPIs, the digest, an export): on SQLite beside the
        writer, which it never holds up."""
        if self._read_lane is not None:  # commits nothing: no flush of the log after it
            return await self._read_lane.submit(unit, args, kwargs, synced=None)
        return await self._run_async(_long_read, unit, *args, **kwargs)

    async def _run_async(self, unit: Unit[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._sessions() as session:
            return await session.run_sync(unit, *args, **kwargs)

    def close(self) -> None:
        """Stop the report lane (the write lane is disposed with the engine). Closing twice is
        harmless."""
        if self._read_lane is not None and not self._later:
            self._read_lane.dispose()


def unsynced(unit: U) -> U:
    """Mark a unit whose commit need not wait for the disk: what it writes can be made again
    (a quote: the cashier scans once more). Not a sale, a card, a person's data. A process
    that dies loses none of it; a power cut may lose its last commits, never one made after
    them by an ordinary unit. SQLite: `synchronous=NORMAL` for its commit (`Lane.submit`);
    PostgreSQL: `synchronous_commit = off` for its transaction. Units on `db.background` are
    always run this way."""
    setattr(unit, _UNSYNCED, True)
    return unit


def _unsynced_commit(session: Session, unit: Unit[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    session.execute(text("SET LOCAL synchronous_commit = off"))
    return unit(session, *args, **kwargs)


def _long_read(session: Session, unit: Unit[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    for setting in REPORT_SETTINGS:
        session.execute(text(setting))
    return unit(session, *args, **kwargs)
