"""Where conversations keep their place (aiogram's FSM storage), so that a restart loses none.

A customer asked for their card's PIN, a cashier at the amount prompt, a survey waiting for its
comment: each is a step of a conversation (a state and a little data). Kept in memory, every
restart forgot them. They are kept

* in the database (`conversation_states`) on the embedded default — `DatabaseStorage` below;
* in Redis (aiogram's own `RedisStorage`) when `REDIS_URL` is set, which several workers share
  (`create_storage`).

`DatabaseStorage` writes through to the database and answers reads from a per-process cache:
aiogram asks for the state on every update, and on the one-process default the process is the
only writer, so the cache is always right; after a restart it is filled from the database on
first use. Several workers must share Redis instead (the cache of one would not see the others'
writes): `bot.commands.run` says so when it starts a webhook worker without `REDIS_URL`.

aiogram's `FSMContext` writes a step's state and data one after the other (`clear()` is two
writes, the second waiting for the first). A step whose state and data change together goes
through `set_step` instead: one write on either storage. On the till that halved the database
writes of a sale (four to two), which were the largest share of the database's work between a
cashier's steps (README, "What a cashier waits for").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol, cast

from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage, DefaultKeyBuilder, StorageKey
from aiogram.fsm.storage.memory import SimpleEventIsolation
from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from db.database import Database
from db.models import ConversationState
from db.prepared import Prepared
from db.sql import upsert

if TYPE_CHECKING:
    from redis.asyncio import Redis

_KEYS = DefaultKeyBuilder(prefix="fsm", with_bot_id=True, with_destiny=True)
ABANDONED = timedelta(days=30)
LOCK_TTL = 10.0  # seconds a conversation stays locked after its worker died mid-update
_CACHE_LIMIT = 50_000  # conversations kept in memory; older ones are read again when needed


class DatabaseStorage(BaseStorage):
    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[str | None, dict[str, Any]]] = {}

    async def set_state(self, key: StorageKey, state: str | State | None = None) -> None:
        _state, data = await self._load(key)
        await self._store(key, _state_name(state), data)

    async def get_state(self, key: StorageKey) -> str | None:
        return (await self._load(key))[0]

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        state, _data = await self._load(key)
        await self._store(key, state, dict(data))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        return dict((await self._load(key))[1])

    async def set_step(
        self, key: StorageKey, state: str | State | None, data: Mapping[str, Any]
    ) -> None:
        """The state and the data of a step in one write (`set_step` below)."""
        await self._store(key, _state_name(state), dict(data))

    async def close(self) -> None:
        self._cache.clear()

    async def _load(self, key: StorageKey) -> tuple[str | None, dict[str, Any]]:
        name = _KEYS.build(key)
        cached = self._cache.get(name)
        if cached is None:
            cached = await self.db.read(_read, name)
            self._remember(name, cached)
        return cached

    async def _store(self, key: StorageKey, state: str | None, data: dict[str, Any]) -> None:
        name = _KEYS.build(key)
        # Behind the units someone waits for: the step is written while its reply travels.
        await self.db.background.write(_write, name, state, data, datetime.now(UTC))
        self._remember(name, (state, data))

    def _remember(self, name: str, value: tuple[str | None, dict[str, Any]]) -> None:
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()  # a cache: anything dropped is read again
        self._cache[name] = value


def _read(session: Session, name: str) -> tuple[str | None, dict[str, Any]]:
    row = session.execute(
        select(ConversationState.state, ConversationState.data).where(ConversationState.key == name)
    ).first()
    return (None, {}) if row is None else (row.state, dict(row.data or {}))


def _write(
    session: Session, name: str, state: str | None, data: dict[str, Any], now: datetime
) -> None:
    if state is None and not data:  # a finished conversation leaves nothing behind
        _delete_statement().execute(session, {"p_key": name})
    else:
        row = {"key": name, "state": state, "data": data, "updated_at": now}
        _upsert_statement(session.get_bind().dialect.name).execute(session, row)
    session.commit()


@cache
def _upsert_statement(dialect: str) -> Prepared:
    columns = ("key", "state", "data", "updated_at")
    values = {name: bindparam(name) for name in columns}
    return Prepared(upsert(ConversationState.__table__, values, ("key",), dialect=dialect))


@cache
def _delete_statement() -> Prepared:
    return Prepared(delete(ConversationState).where(ConversationState.key == bindparam("p_key")))


def _state_name(state: str | State | None) -> str | None:
    return state.state if isinstance(state, State) else state


class StepStorage(Protocol):
    async def set_step(
        self, key: StorageKey, state: str | State | None, data: Mapping[str, Any]
    ) -> None: ...


async def set_step(
    context: FSMContext, state: str | State | None, data: Mapping[str, Any] | None = None
) -> None:
    """Move the conversation to `state` with exactly `data` (None and nothing: it is over, and
    leaves nothing behind) in one write, where `context.set_data()` then `set_state()` (or
    `clear()`) make two, one after the other. Both storages `create_storage` returns have it."""
    await cast(StepStorage, context.storage).set_step(context.key, state, data or {})


REDIS_CONNECTIONS = 50  # per process; an update waits for a free one (REDIS_WAIT seconds)
REDIS_WAIT = 20.0


def shared_redis(url: str | None) -> Redis | None:
    """The process's Redis client (`REDIS_URL`), or None without one.

    redis-py's default pool refuses a command outright once 100 connections are in use, which a
    burst of updates (a flood of button presses, each taking a few Redis round trips at once)
    reached: the updates failed. A blocking pool makes them wait for a connection instead."""
    if not url:
        return None
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(
        url, max_connections=REDIS_CONNECTIONS, timeout=REDIS_WAIT
    )
    return Redis.from_pool(pool)  # closing the client closes the pool


def create_storage(db: Database, redis: Redis | None) -> tuple[BaseStorage, BaseEventIsolation]:
    """The storage and the event isolation for this process: Redis when there is one (shared
    by every worker, with a lock per conversation across them), else the database.

    Their `close()` waits for `close_after_updates()`: aiogram closes the storage first thing
    on shutdown, while updates still being handled (a cashier's scan, whose step is written
    right after the reply) may need it; the dispatcher's own shutdown closes them after those
    updates finished (`bot.app`), and with them the Redis client."""
    if redis is not None:
        from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage

        class _Storage(RedisStorage):
            async def set_step(
                self, key: StorageKey, state: str | State | None, data: Mapping[str, Any]
            ) -> None:
                """Redis keeps a step's state and data under two keys: two writes, each a
                fraction of a millisecond."""
                await self.set_data(key, data)
                await self.set_state(key, state)

            async def close(self) -> None:
                """Closed with the Redis client, after the updates in flight."""

        class _Isolation(RedisEventIsolation):
            """One update of a conversation at a time across the workers. aiogram's lock lives
            60 s, so a worker killed while handling an update froze that person for a minute;
            this one lives LOCK_TTL and is renewed while its update is being handled, so a dead
            worker's lock is gone within LOCK_TTL and a long update (an export) keeps its own."""

            def lock(self, key: StorageKey) -> contextlib.AbstractAsyncContextManager[None]:
                return renewed_lock(self.redis, self.key_builder.build(key, "lock"))

            async def close(self) -> None:
                """Closed with the Redis client, after the updates in flight."""

        # A conversation abandoned half-way is forgotten after a month (its key names the person).
        storage = _Storage(redis, key_builder=_KEYS, state_ttl=ABANDONED, data_ttl=ABANDONED)
        return storage, _Isolation(redis, key_builder=_KEYS)
    return DatabaseStorage(db), SimpleEventIsolation()


@contextlib.asynccontextmanager
async def renewed_lock(redis: Redis, name: str) -> AsyncIterator[None]:
    """A lock shared by every worker that lives LOCK_TTL and is renewed while held: a worker
    killed while holding it blocks the others for LOCK_TTL at most, and a long holder (an
    export) keeps it as long as it needs."""
    from redis.exceptions import LockError

    lock = redis.lock(name=name, timeout=LOCK_TTL)
    await lock.acquire()
    keeper = asyncio.create_task(_keep(lock))
    try:
        yield None
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        # Gone already (Redis restarted or was flushed): the update was handled all the same.
        with contextlib.suppress(LockError):
            await lock.release()


async def _keep(lock: Any) -> None:
    """Renew a held Redis lock to a full LOCK_TTL every third of it, until cancelled."""
    while True:
        await asyncio.sleep(LOCK_TTL / 3)
        with contextlib.suppress(Exception):  # lost it (Redis restarted): nothing to keep
            await lock.reacquire()


async def close_after_updates(storage: BaseStorage) -> None:
    """Close the database storage once no update needs it (the Redis one closes with its
    client: see `create_storage`)."""
    if isinstance(storage, DatabaseStorage):
        await storage.close()
