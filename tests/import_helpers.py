"""The test's database seen from outside the code under test, on either engine.

`Db(url)` runs plain SQL (named parameters, `:name`) on the test's SQLite file or PostgreSQL
database from sync and async tests alike (on a thread with its own event loop), and gives
values back as SQLite does (timestamps in its text form, sums as ints), so that one assertion
fits both engines. `DbCli` runs `python -m bot …` in-process against it. `held_import_lock`
holds the import lock as a running import in another process would. `run_import` imports a
purchase history file as `python -m bot purchases import` does (Moscow time, kopecks), failing
the test on any refused line.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import shutil
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import column, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bot.cli import main
from db.engine import create_engine
from db.models import SQLITE_DATETIME_FORMAT
from db.sql import year_month
from services.history_import import DEFAULT_PACING, ImportSummary, Pacing, import_purchases

T = TypeVar("T")
LEDGER_TABLES = ("cards", "purchases", "imports", "audit_events", "clients")


def on_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime(SQLITE_DATETIME_FORMAT)
    if isinstance(value, Decimal) and value == int(value):
        return int(value)
    return value


class Db:
    """Plain SQL on one database; every call commits. Close it (or use `with`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = on_sqlite(url)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-db", daemon=True)
        self._thread.start()
        self._engine = create_engine(url, poolclass=NullPool)

    def __enter__(self) -> Db:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the helper's event loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        return self.run(self._query(sql, params))

    def scalar(self, sql: str, **params: Any) -> Any:
        return self.query(sql, **params)[0][0]

    def execute(self, *statements: str, **params: Any) -> None:
        for sql in statements:
            self.query(sql, **params)

    async def _query(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        async with self._engine.connect() as connection:
            result = await connection.execute(text(sql), params)
            rows = result.fetchall() if result.returns_rows else []
            await connection.commit()
        return [tuple(_plain(value) for value in row) for row in rows]

    def dump(self) -> list[tuple[Any, ...]]:
        """Everything the ledger tables hold (to prove a refused command wrote nothing)."""
        rows: list[tuple[Any, ...]] = []
        for table in LEDGER_TABLES:
            rows += [(table, *row) for row in self.query(f"SELECT * FROM {table} ORDER BY 1")]
        return rows

    def ledger_state(self) -> dict[str, Any]:
        """What an import may change, to compare before/after."""
        state = {
            table: self.query(f"SELECT * FROM {table} ORDER BY id")
            for table in ("purchases", "cards", "imports")
        }
        state["card_months"] = self.query("SELECT * FROM card_months ORDER BY card_id, month")
        return state

    def assert_totals_match_the_ledger(self) -> None:
        drifted = self.scalar(
            "SELECT count(*) FROM cards c WHERE c.purchase_count != (SELECT count(*) FROM "
            "purchases p WHERE p.card_id = c.id AND p.voided_at IS NULL) OR c.purchase_total "
            "!= (SELECT coalesce(sum(p.amount), 0) FROM purchases p WHERE p.card_id = c.id AND "
            "p.voided_at IS NULL) OR c.last_purchase_at IS DISTINCT FROM (SELECT "
            "max(p.created_at) FROM purchases p WHERE p.card_id = c.id AND p.voided_at IS NULL)"
        )
        assert drifted == 0
        # The cards' months: exactly the ledger's sums per card and month, no more rows.
        month = str(year_month(column("created_at")).compile(dialect=self._engine.dialect))
        counted = (
            f"SELECT card_id, {month}, count(*), sum(amount), sum(discount_amount) "
            f"FROM purchases WHERE voided_at IS NULL GROUP BY card_id, {month}"
        )
        kept = "SELECT card_id, month, purchases, revenue, discount FROM card_months"
        for one, other in ((kept, counted), (counted, kept)):
            assert self.scalar(f"SELECT count(*) FROM ({one} EXCEPT {other}) AS d") == 0
        if self.sqlite:
            assert self.query("PRAGMA integrity_check") == [("ok",)]
            assert self.query("PRAGMA foreign_key_check") == []

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.run(self._engine.dispose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def run_import(
    db_url: str,
    path: Path,
    pacing: Pacing = DEFAULT_PACING,
    *,
    now: datetime = datetime(2026, 11, 16, 9, 0, tzinfo=UTC),
) -> ImportSummary:
    return import_purchases(
        db_url,
        path,
        now=now,
        tz=ZoneInfo("Europe/Moscow"),
        exponent=2,
        max_amount_minor=10**9,
        on_error=lambda line, reason: pytest.fail(f"line {line}: {reason}"),
        pacing=pacing,
    )


@dataclass
class CliResult:
    code: int
    out: str
    err: str


class DbCli:
    """`python -m bot …` in-process against the test's database (either engine)."""

    def __init__(
        self,
        db: Db,
        workdir: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        self.db = db
        self.capsys = capsys
        monkeypatch.setenv("DATABASE_URL", db.url)
        monkeypatch.setenv("TIMEZONE", "Europe/Moscow")
        monkeypatch.setenv("CURRENCY", "RUB")
        monkeypatch.chdir(workdir)  # no developer .env is picked up

    def __call__(self, *args: str) -> CliResult:
        self.capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse usage errors and --help
            code = int(exc.code or 0)
        captured = self.capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        return self.db.query(sql, **params)

    def scalar(self, sql: str, **params: Any) -> Any:
        return self.db.scalar(sql, **params)

    def dump(self) -> list[tuple[Any, ...]]:
        return self.db.dump()


@contextlib.contextmanager
def held_import_lock(db: Db) -> Iterator[None]:
    """What a running import holds, as another process would hold it: the lock file next to a
    SQLite database, PostgreSQL's advisory lock on another connection."""
    if db.sqlite:
        fd = os.open(f"{make_url(db.url).database}-import.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            os.close(fd)
        return
    import asyncpg

    from services.history_import_pg import IMPORT_LOCK

    dsn = db.url.replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = db.run(asyncpg.connect(dsn))
    try:
        db.run(connection.execute("SELECT pg_advisory_lock($1)", IMPORT_LOCK))
        yield
    finally:
        db.run(connection.close())


@contextlib.contextmanager
def copy_of_template(template: Path | str, workdir: Path) -> Iterator[str]:
    """A fresh migrated database outside the fixtures (e.g. per hypothesis example): a copy
    of the run's template file in `workdir`, or a PostgreSQL database made from the template
    database (dropped afterwards). Yields its URL."""
    if isinstance(template, Path):
        path = workdir / "copy.db"
        shutil.copy(template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    from tests.conftest import _admin, _database_url

    name = f"c{os.getpid()}_{next(_copies)}"
    asyncio.run(_admin(f"CREATE DATABASE {name} TEMPLATE {template}"))
    try:
        yield _database_url(name)
    finally:
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


_copies = itertools.count(1)
