"""Shared fixtures: settings, a migrated database per test, a controllable clock, and the real
bot polling a fake Telegram Bot API server on 127.0.0.1.

The database is a SQLite file by default. With `TEST_POSTGRES_URL` set (`python -m
tests.servers -- pytest` sets it, with a throwaway server) every test gets a PostgreSQL
database of its own instead, created from a template migrated once per run; tests that need
the SQLite file itself (`db_path`) are skipped there.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.app import create_bot, create_dispatcher
from bot.demo.emulator import FakeTelegram
from config import PROJECT_ROOT, Settings
from config.env import EnvSettings
from db.database import Database
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade

# Subprocesses the tests start (`python -m bot …`) run this checkout's code, whichever checkout
# the virtualenv's editable install points at.
os.environ["PYTHONPATH"] = os.pathsep.join(
    part for part in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if part
)

OWNER_ID = 1001
CASHIER_ID = 2001
CUSTOMER_ID = 3001
STAFF_CHAT_ID = -1009000


class FrozenClock:
    """A clock tests move by hand: `clock.advance(minutes=5)`."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 16, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment


def make_settings(db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "bot_token": "123456:TEST",
        "secret_key": "test-secret-key-0123456789abcdef",
        "database_url": db_url,
        "owner_ids": [OWNER_ID],
        "staff_chat_id": STAFF_CHAT_ID,
        "timezone": "Europe/Moscow",
        "currency": "RUB",
        "store_name": "Test Store",
        "store_address": "1 Main St",
        "store_hours": "10-20",
        "store_phone": "+7 900 000-00-00",
        "quiet_hours": "",
        "scheduler_enabled": False,
        "redis_url": REDIS_URL or None,
    }
    values.update(overrides)
    return Settings.from_env(EnvSettings(_env_file=None, **values))


POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "")
# With PostgreSQL the suite runs as a chain would: conversation state in Redis (REDIS_URL).
REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
# Per test run: several runs may share one server (each database name is this process's).
TEMPLATE_DATABASE = f"loyalty_template_{os.getpid()}"
_databases = itertools.count(1)


def on_postgres() -> bool:
    return bool(POSTGRES_URL)


def _admin_dsn() -> str:
    """The asyncpg DSN of the server's maintenance database (for CREATE/DROP DATABASE)."""
    return POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://", 1)


def _database_url(name: str) -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


async def _admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(_admin_dsn())
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | str]:
    """Migrate once per run; each test gets a copy (migrating per test would cost seconds):
    a SQLite file, or on PostgreSQL a template database (dropped at the end of the run)."""
    if on_postgres():
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {TEMPLATE_DATABASE} WITH (FORCE)"))
        asyncio.run(_admin(f"CREATE DATABASE {TEMPLATE_DATABASE}"))
        asyncio.run(upgrade(_database_url(TEMPLATE_DATABASE)))
        yield TEMPLATE_DATABASE
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {TEMPLATE_DATABASE} WITH (FORCE)"))
        return
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))
    yield path


@pytest.fixture
def db_path(tmp_path: Path, migrated_template: Path | str) -> Path:
    """The test's SQLite database file (tests that need the file itself skip on PostgreSQL)."""
    if on_postgres():
        pytest.skip("works on the SQLite file itself")
    assert isinstance(migrated_template, Path)
    path = tmp_path / "loyalty.db"
    shutil.copy(migrated_template, path)
    return path


@pytest.fixture
async def db_url(
    request: pytest.FixtureRequest, migrated_template: Path | str
) -> AsyncIterator[str]:
    """The URL of a fresh migrated database for this test (SQLite file or PostgreSQL)."""
    if not on_postgres():
        yield f"sqlite+aiosqlite:///{request.getfixturevalue('db_path')}"
        return
    name = f"t{os.getpid()}_{next(_databases)}"
    await _admin(f"CREATE DATABASE {name} TEMPLATE {migrated_template}")
    try:
        yield _database_url(name)
    finally:
        await _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(autouse=True)
def empty_redis() -> None:
    """Every test starts with an empty Redis (the tests reuse user and chat ids)."""
    if REDIS_URL:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            client.flushdb()
        finally:
            client.close()


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
def db(engine: AsyncEngine) -> Database:
    """The test database's `Database`: services run their units of work on it."""
    return Database.of(engine)


@pytest.fixture
async def session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@dataclass
class App:
    """The running bot: the real Bot and Dispatcher, polling the fake server."""

    bot: Bot
    dp: Dispatcher
    tg: FakeTelegram
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: FrozenClock
    task: asyncio.Task[None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def db(self) -> Database:
        """The bot's `Database` (the units of work of its services run on it)."""
        return Database.of(self.sessionmaker.kw["bind"])

    async def start(self) -> None:
        self.task = asyncio.create_task(
            self.dp.start_polling(
                self.bot, handle_signals=False, close_bot_session=False, polling_timeout=1
            )
        )
        await self.tg.wait_for(lambda call: call.method == "getUpdates", timeout=5)

    async def stop(self) -> None:
        if self.task is None:
            return
        with contextlib.suppress(RuntimeError):
            await self.dp.stop_polling()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, timeout=5)
        self.task = None


def build_app(
    tg: FakeTelegram,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
    *,
    delivery_worker: bool = True,
) -> App:
    settings = settings.with_changes(telegram_api_url=tg.base_url)
    bot = create_bot(settings)
    dp = create_dispatcher(settings, sessionmaker, clock=clock, delivery_worker=delivery_worker)
    return App(bot=bot, dp=dp, tg=tg, settings=settings, sessionmaker=sessionmaker, clock=clock)


@contextlib.asynccontextmanager
async def running_app(
    tg: FakeTelegram,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
    *,
    delivery_worker: bool = True,
) -> AsyncIterator[App]:
    """Build the app, make CASHIER_ID a staff member, poll; stop and close afterwards (the
    dispatcher's shutdown lets updates still being handled finish first)."""
    application = build_app(tg, settings, sessionmaker, clock, delivery_worker=delivery_worker)
    tg.set_member(STAFF_CHAT_ID, CASHIER_ID, "member")
    await application.start()
    try:
        yield application
    finally:
        await application.stop()
        await application.bot.session.close()


@pytest.fixture
async def app(
    request: pytest.FixtureRequest,
    tg: FakeTelegram,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> AsyncIterator[App]:
    """The bot polling the fake Bot API server; stopped and closed after the test.

    Its delivery worker sends queued messages as the bot does; a module marked
    `manual_delivery` drives delivery passes itself and gets no worker (no race for rows).
    """
    manual = request.node.get_closest_marker("manual_delivery") is not None
    async with running_app(tg, settings, sessionmaker, clock, delivery_worker=not manual) as a:
        yield a


@pytest.fixture
def app_with(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> Any:
    """The running bot with some settings changed: `async with app_with(flood_limit=1000) as
    app: ...` (the test's own database, fake server and clock)."""

    def make(**overrides: Any) -> contextlib.AbstractAsyncContextManager[App]:
        return running_app(tg, make_settings(db_url, **overrides), sessionmaker, clock)

    return make


@pytest.fixture
def write_file(tmp_path: Path) -> Iterator[Any]:
    """Write text (or bytes) to a file in the test's tmp dir and return its path."""

    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    yield write
