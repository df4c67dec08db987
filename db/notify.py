"""Wake-ups between processes: PostgreSQL's NOTIFY and LISTEN behind two engine-neutral calls.

Several bot processes (webhook workers) share one PostgreSQL database; something one of them
queues (a receipt, a staff-log line) must wake the delivery worker of another at once, not at
its next poll. `notify(session, channel)` inside a unit of work issues `pg_notify`, which
PostgreSQL delivers when that transaction commits (and never if it rolls back); `publish`
sends one with a payload in a transaction of its own. A `Listener` keeps one connection
`LISTEN`ing on its channels and calls each channel's callback with the payload.

On SQLite there is one process, which wakes its own worker directly: `notify` does nothing,
`Listener.of` returns None and `publish` is never called. The listening connection is taken
from the engine's pool (so it connects exactly as the engine does) and is reconnected with
backoff when it is lost; while it is down, the worker's polling still finds every message, only
later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from db.database import Database

log = logging.getLogger(__name__)

_RECONNECT_FIRST, _RECONNECT_MAX = 1.0, 60.0  # seconds between attempts to listen again


def notification(channel: str, dialect: str) -> Select[Any] | None:
    """The statement that wakes the listeners on `channel` when its transaction commits, or
    None where there are none (SQLite: one process wakes itself)."""
    return select(func.pg_notify(channel, "")) if dialect == "postgresql" else None


def notify(session: Session, channel: str) -> None:
    """`notification` inside a unit of work."""
    statement = notification(channel, session.get_bind().dialect.name)
    if statement is not None:
        session.execute(statement)


def _publish(session: Session, channel: str, payload: str) -> None:
    session.execute(select(func.pg_notify(channel, payload)))
    session.commit()


async def publish(db: Database, channel: str, payload: str) -> None:
    """Notify `channel` with `payload` now (PostgreSQL only: the caller knows there are other
    processes to tell)."""
    await db.write(_publish, channel, payload)


class Listener:
    """One connection `LISTEN`ing on some channels: each notification calls its channel's
    callback with the payload, and `on_listen()` is called each time listening (re)starts,
    for what happened while nobody listened."""

    def __init__(
        self,
        db: Database,
        channels: Mapping[str, Callable[[str], None]],
        on_listen: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.channels = dict(channels)
        self.on_listen = on_listen
        self.ready = asyncio.Event()  # set while the channel is listened to
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ended: asyncio.Event | None = None  # the current connection's end (lost or stop)

    @classmethod
    def of(
        cls,
        db: Database,
        channels: Mapping[str, Callable[[str], None]],
        on_listen: Callable[[], None] = lambda: None,
    ) -> Listener | None:
        """A listener for this database, or None where there is nothing to listen to (SQLite)."""
        return cls(db, channels, on_listen) if db.dialect == "postgresql" else None

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="listen-" + "+".join(self.channels))

    async def stop(self, grace: float = 5.0) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        if self._ended is not None:
            self._ended.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:  # stuck connecting: give up on it
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _heard(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        self.channels[channel](payload)

    async def _run(self) -> None:
        delay = _RECONNECT_FIRST
        while not self._stopping:
            try:
                await self._listen()
                delay = _RECONNECT_FIRST
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning(
                    "listening on %s failed; retrying in %.0f s", ", ".join(self.channels), delay
                )
            if self._stopping:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX)

    async def _listen(self) -> None:
        async with self.db.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection  # asyncpg's connection
            assert driver is not None
            ended = self._ended = asyncio.Event()
            if self._stopping:  # stopped while connecting
                ended.set()
            driver.add_termination_listener(lambda _connection: ended.set())
            for channel in self.channels:
                await driver.add_listener(channel, self._heard)
            try:
                self.ready.set()
                self.on_listen()  # anything that happened while nobody listened
                await ended.wait()
            finally:
                self.ready.clear()
                if driver.is_closed():
                    await connection.invalidate()  # never back into the pool
                else:
                    for channel in self.channels:
                        await driver.remove_listener(channel, self._heard)  # UNLISTEN
