"""One leader among the bot's processes: the one that runs the scheduler and the delivery sender.

Several processes can serve one bot (webhook workers behind a reverse proxy, all on one
PostgreSQL database). Any of them handles updates, but the scheduled jobs and the sending of
queued messages must run in exactly one at a time — so that a job runs once and Telegram's
rate limits are kept for the bot as a whole. `Leadership` elects that process:

* **PostgreSQL**: a session-level advisory lock (`pg_try_advisory_lock`) held on a connection of
  its own. The server releases it when that connection ends — the process died, the network
  went — and another process takes it at its next try.
* **SQLite** (one machine): an exclusive `flock` on a file next to the database, released by the
  kernel when the process ends.

Every process tries every `RETRY` seconds, so a new leader takes over within that time after
the old one died (well within a minute). The leader checks its hold as often; if it lost it (its
connection broke), it steps down at once: `on_deposed` runs before anyone else could be elected
on a healthy connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from db.file_lock import FileLock

log = logging.getLogger(__name__)

RETRY = 10.0  # seconds between attempts (and between checks of a held lock)
LOCK_KEY = 7_350_412_019  # the advisory lock's key: any constant the database shares

Hook = Callable[[], Awaitable[None]]


class _Lock:
    """What Leadership holds: try to take it, check it is still held, let it go."""

    async def acquire(self) -> bool:
        raise NotImplementedError

    async def held(self) -> bool:
        raise NotImplementedError

    async def release(self) -> None:
        raise NotImplementedError


class PostgresLock(_Lock):
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.connection: Any = None

    async def acquire(self) -> bool:
        import asyncpg

        if self.connection is None or self.connection.is_closed():
            self.connection = await asyncpg.connect(self.dsn)
        got = bool(await self.connection.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY))
        if not got:  # keep no idle connection while a follower
            await self._close()
        return got

    async def held(self) -> bool:
        if self.connection is None or self.connection.is_closed():
            return False
        try:
            await asyncio.wait_for(self.connection.fetchval("SELECT 1"), RETRY)
        except Exception:  # the connection is gone, and with it the lock
            await self._close()
            return False
        return True

    async def release(self) -> None:
        if self.connection is not None and not self.connection.is_closed():
            with contextlib.suppress(Exception):
                await self.connection.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        await self._close()

    async def _close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(timeout=5)


class SqliteLock(_Lock):
    """The leader lock on SQLite: a file lock beside the database (`db/file_lock.py`)."""

    def __init__(self, path: Path) -> None:
        self.file = FileLock(path)

    async def acquire(self) -> bool:
        return self.file.acquire()

    async def held(self) -> bool:
        return self.file.held

    async def release(self) -> None:
        self.file.release()


def lock_for(database_url: str) -> _Lock:
    """The leader lock for this database."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresLock(dsn)
    database = url.database or ""
    if database in ("", ":memory:"):
        raise ValueError("a leader lock needs a database file or a PostgreSQL server")
    return SqliteLock(Path(database).with_name(Path(database).name + ".leader"))


class Leadership:
    """Run `on_elected` when this process becomes the leader and `on_deposed` when it stops
    being one (it lost the lock, or `stop()`)."""

    def __init__(
        self, lock: _Lock, on_elected: Hook, on_deposed: Hook, *, retry: float = RETRY
    ) -> None:
        self.lock = lock
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.retry = retry
        self.leading = False
        self._task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="leadership")

    async def stop(self) -> None:
        self._stopped.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                if self.leading:
                    if not await self.lock.held():
                        log.warning("lost the leader lock: stepping down")
                        await self._step_down()
                elif await self.lock.acquire():
                    self.leading = True
                    log.info("this process is the leader: scheduler and sender start here")
                    await self.on_elected()
            except Exception:  # a database hiccup: try again at the next round
                log.exception("leader election failed; retrying in %.0f s", self.retry)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self.retry)
        if self.leading:
            await self._step_down()

    async def _step_down(self) -> None:
        self.leading = False
        try:
            await self.on_deposed()
        finally:
            await self.lock.release()
