"""A blocking lane: hot units of work as plain functions of a sync `Session`, on a DB thread.

The async engine (aiosqlite) makes every statement four thread round trips (cursor, execute,
fetch, close) plus greenlet switches: about 0.5 ms of CPU per statement on a small machine,
for work SQLite itself does in a few microseconds. The till and the delivery worker run a
dozen statements per sale, so there that overhead was most of a sale's cost.

A lane runs one whole unit of work — reads, writes and the commit — as one function call on
its own thread, with SQLAlchemy's sync `Session` over the stdlib `sqlite3` driver: one thread
round trip per unit instead of four per statement (measured: a unit of 8 statements and a
commit, 4.8–5.2 ms of CPU through `AsyncSession`, 1.25 ms through the lane).

Usage::

    lane = Lane.of(async_engine)            # one per engine; disposed with the engine

    def confirm(session: Session, draft_id: str) -> int:
        ...                                 # sync SQLAlchemy, then session.commit()

    purchase_id = await lane.run(confirm, draft_id)

Same database file, same connection settings (`db.engine._sqlite_pragmas`), same transaction
rules: the sqlite3 driver begins a transaction right before the first write. The lane has one
thread: its units never wait for each other's locks, and SQLite has one writer anyway.
Units run with a copy of the caller's context, so the caller's locale (gettext) applies.

The thread is the lane's own rather than a `ThreadPoolExecutor`: a round trip costs half of
the executor's (two thread switches and a GIL hand-off each way, 60 against 120 µs of CPU
here), and it serves two queues: units someone waits for (a cashier's quote: `run`) and units
nobody waits for (the delivery sender recording what it sent, a conversation's next step
written while the reply travels: `submit(…, later=True)`, via `Database.background`), which
run when nothing else is waiting, so four tills at once never queue behind the sender's
bookkeeping, and whose commits do not wait for the disk (`submit`). The thread takes every unit
waiting at once and hands their results back with one wake-up of the event loop: under load
one round trip serves several units (handing each back on its own cost a sixth more CPU per
sale in bench.sale_flow). Hot statements inside units go through `db.prepared.Prepared`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future as ThreadFuture
from typing import Any, ClassVar, Concatenate, NamedTuple, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from db.engine import _sqlite_pragmas

P = ParamSpec("P")
T = TypeVar("T")


def sync_url(url: str) -> str:
    """The stdlib driver's URL for an async SQLite URL (`sqlite+aiosqlite:///x` → `sqlite:///x`)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise ValueError(f"the blocking lane supports SQLite only, not {parsed.drivername}")
    return parsed.set(drivername="sqlite").render_as_string(hide_password=False)


class _Unit(NamedTuple):
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    context: contextvars.Context
    work: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    synced: bool | None  # its commit waits for the disk (synchronous=FULL); None: no commit


class Lane:
    _lanes: ClassVar[weakref.WeakKeyDictionary[Engine, Lane]] = weakref.WeakKeyDictionary()

    def __init__(self, url: str, name: str = "db-lane") -> None:
        self.engine = create_engine(sync_url(url))
        event.listen(self.engine, "connect", _sqlite_pragmas)
        # The thread's one connection: units run one at a time, and checking a connection
        # out of the pool and back in (with its reset) for every unit cost more than its SQL.
        self._connection: Connection | None = None
        self._synced = True  # the connection's commits are flushed (synchronous=FULL)
        # Group commit (a database file in WAL mode): the connection commits with
        # synchronous=NORMAL and a batch that ran a synced unit ends with one fsync of this
        # write-ahead log, before any result goes back. None: every synced unit flushes itself.
        self._wal: str | None = None
        # The units waiting for the thread, in two queues: someone waits for `_now` (a
        # cashier, a customer), nobody for `_later` (the delivery sender's bookkeeping, a
        # conversation's step written behind its reply), which runs when `_now` is empty.
        # `_bell` gets one token per unit queued in either; None stops the thread.
        self._now: deque[_Unit | ThreadFuture[None] | None] = deque()
        self._later: deque[_Unit | ThreadFuture[None] | None] = deque()
        self._bell: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        self._disposed = False

    @classmethod
    def of(cls, engine: AsyncEngine) -> Lane:
        """The lane of this async engine's database; `engine.dispose()` disposes it too."""
        key = engine.sync_engine
        lane = cls._lanes.get(key)
        if lane is None:
            lane = cls._lanes[key] = cls(engine.url.render_as_string(hide_password=False))

            def disposed(_connection: Any) -> None:
                if cls._lanes.get(key) is lane:
                    del cls._lanes[key]
                lane.dispose()

            event.listen(key, "engine_disposed", disposed)
        return lane

    async def run(
        self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`work(session, *args, **kwargs)` on the lane's thread, in a fresh session that is
        closed afterwards (whatever `work` did not commit is rolled back). A unit whose caller
        was cancelled before the thread reached it does not run."""
        return await self.submit(work, args, kwargs)

    async def submit(
        self,
        work: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        later: bool = False,
        synced: bool | None = True,
    ) -> T:
        """Queue `work(session, *args, **kwargs)`: behind the units someone waits for when
        `later`; committed without waiting for the disk unless `synced` (synchronous=NORMAL:
        a process that dies loses nothing, a power cut may lose the last of those commits;
        the next synced commit flushes everything written before it, in order; None for a
        unit that commits nothing, run in whichever mode the connection is in). A synced
        unit's result comes back once its commit is on the disk (see the group commit above)."""
        if self._disposed:
            raise RuntimeError("the lane is disposed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        unit = _Unit(loop, future, contextvars.copy_context(), work, args, kwargs, synced)
        (self._later if later else self._now).append(unit)
        self._bell.put(True)
        return await future

    def _serve(self) -> None:
        while True:
            # Every unit waiting now, those someone waits for first; their results go back with
            # one wake-up of the event loop (under load one round trip serves several units).
            self._bell.get()
            batch = [self._take()]
            while not self._bell.empty():
                self._bell.get()
                batch.append(self._take())
            outcomes: list[_Outcome] = []
            for unit in batch:
                if unit is None:
                    self._hand_back(outcomes)
                    return
                if isinstance(unit, ThreadFuture):  # dispose(): close the connections here
                    if self._connection is not None:
                        self._connection.close()
                    self.engine.dispose()
                    unit.set_result(None)
                    continue
                if unit.future.cancelled():
                    continue
                try:
                    outcome = _Outcome(unit, unit.context.run(self._call, unit), None)
                except BaseException as exc:
                    outcome = _Outcome(unit, None, exc)
                outcomes.append(outcome)
            self._hand_back(outcomes)

    def _hand_back(self, outcomes: list[_Outcome]) -> None:
        """Settle the batch's futures, one wake-up per event loop; with group commit, after the
        one flush of the log that makes the batch's synced commits durable (a flush that fails
        fails those units: their commits may not be on the disk)."""
        wal = self._wal
        # A synced unit that raised may have committed before it did: flushed all the same.
        if wal is not None and any(o.unit.synced for o in outcomes):
            failure = _flush(wal)
            if failure is not None:
                outcomes = [
                    o._replace(result=None, exc=failure) if o.unit.synced and o.exc is None else o
                    for o in outcomes
                ]
        held: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for outcome in outcomes:
            held.setdefault(outcome.unit.loop, []).append(outcome)
        for loop, settled in held.items():
            # RuntimeError: that event loop is closed, nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, settled)

    def _take(self) -> _Unit | ThreadFuture[None] | None:
        return self._now.popleft() if self._now else self._later.popleft()

    def _call(self, unit: _Unit) -> Any:
        connection = self._connection
        if connection is None or connection.closed or connection.invalidated:
            connection = self._connection = self.engine.connect()
            self._synced = True  # `_sqlite_pragmas`: synchronous=FULL
            self._wal = _wal_of(connection)
            if self._wal is not None:
                self._set_synced(connection, False)
        if self._wal is None and unit.synced is not None and unit.synced != self._synced:
            self._set_synced(connection, unit.synced)  # see `submit`
        # A session on a connection outside a transaction owns the transactions it begins:
        # commit() commits, and close() rolls back whatever the unit left open.
        with Session(bind=connection, expire_on_commit=False) as session:
            return unit.work(session, *unit.args, **unit.kwargs)

    def _set_synced(self, connection: Connection, synced: bool) -> None:
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute(f"PRAGMA synchronous={'FULL' if synced else 'NORMAL'}")
        self._synced = synced

    def dispose(self) -> None:
        """Close the lane's connections and stop its thread (waits for the units already
        queued). Disposing twice is harmless."""
        if self._disposed:
            return
        self._disposed = True
        closed: ThreadFuture[None] = ThreadFuture()
        self._later.extend((closed, None))  # after every unit queued so far
        self._bell.put(True)
        self._bell.put(True)
        closed.result()
        self._thread.join()


class _Outcome(NamedTuple):
    unit: _Unit
    result: Any
    exc: BaseException | None


def _wal_of(connection: Connection) -> str | None:
    """The write-ahead log of the connection's database file, or None (not in WAL mode, or
    a database without a file)."""
    driver = connection.connection.driver_connection
    assert driver is not None
    if driver.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        return None
    path = next((row[2] for row in driver.execute("PRAGMA database_list") if row[1] == "main"), "")
    return f"{path}-wal" if path else None


def _flush(wal: str) -> OSError | None:
    """fsync the log (every commit appended to it so far reaches the disk); the error if that
    failed."""
    try:
        fd = os.open(wal, os.O_RDONLY)
    except FileNotFoundError:  # checkpointed into the database file and removed: durable
        return None
    except OSError as exc:
        return exc
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc
    finally:
        os.close(fd)
    return None


def _settle(outcomes: list[_Outcome]) -> None:
    for unit, result, exc in outcomes:
        future = unit.future
        if future.done():  # the caller was cancelled meanwhile
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
