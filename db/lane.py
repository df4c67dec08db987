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
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session, sessionmaker

from db.engine import _sqlite_pragmas

P = ParamSpec("P")
T = TypeVar("T")


def sync_url(url: str) -> str:
    """The stdlib driver's URL for an async SQLite URL (`sqlite+aiosqlite:///x` → `sqlite:///x`)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise ValueError(f"the blocking lane supports SQLite only, not {parsed.drivername}")
    return parsed.set(drivername="sqlite").render_as_string(hide_password=False)


class Lane:
    _lanes: ClassVar[weakref.WeakKeyDictionary[Engine, Lane]] = weakref.WeakKeyDictionary()

    def __init__(self, url: str) -> None:
        self.engine = create_engine(sync_url(url))
        event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-lane")
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
        closed afterwards (whatever `work` did not commit is rolled back)."""
        context = contextvars.copy_context()
        call = partial(context.run, self._call, work, args, kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _call(self, work: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        with self.sessionmaker() as session:
            return work(session, *args, **kwargs)

    def dispose(self) -> None:
        """Close the lane's connections and stop its thread (waits for a unit in progress).
        Disposing twice is harmless."""
        if self._disposed:
            return
        self._disposed = True
        self._executor.submit(self.engine.dispose).result()
        self._executor.shutdown(wait=True)
