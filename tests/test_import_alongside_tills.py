"""A big history import next to working tills: the tills get the write lock while it runs, and
the import stays all-or-nothing across its short transactions — through a failure, Ctrl+C,
`kill -9`, and a crash while finishing."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import signal
import sqlite3
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import services.history_import as history_import
from config import PROJECT_ROOT, Settings
from db.database import Database
from db.engine import create_engine
from services.history_import import Pacing, import_purchases, recover_interrupted_imports
from services.inventory import add_range
from services.sales import SalesService
from tests.cli_helpers import Cli
from tests.conftest import CASHIER_ID, FrozenClock

TZ = ZoneInfo("Europe/Moscow")
FIRST_CARD = 100000
CARDS = 200  # registered; the files also name 100 cards that are not


def write_history(path: Path, rows: int, seed: int = 3) -> None:
    rnd = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        fh.write("card_number,date,amount\n")
        for _ in range(rows):
            number = FIRST_CARD + rnd.randrange(CARDS + 100)
            day = f"2026-{rnd.randrange(1, 11):02d}-{rnd.randrange(1, 29):02d}"
            fh.write(f"{number},{day},{rnd.randrange(100, 90000)}.{rnd.randrange(100):02d}\n")


async def seed_cards(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await add_range(
            Database.of(engine), FIRST_CARD, FIRST_CARD + CARDS - 1, 5, now=FrozenClock()()
        )
    finally:
        await engine.dispose()


def query(db_path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(db_path: Path, sql: str, *params: Any) -> Any:
    return query(db_path, sql, *params)[0][0]


def ledger_state(db_path: Path) -> dict[str, Any]:
    """What an import may change, to compare before/after."""
    return {
        "purchases": query(db_path, "SELECT * FROM purchases ORDER BY id"),
        "cards": query(db_path, "SELECT * FROM cards ORDER BY id"),
        "imports": query(db_path, "SELECT * FROM imports ORDER BY id"),
    }


def assert_totals_match_the_ledger(db_path: Path) -> None:
    drifted = scalar(
        db_path,
        "SELECT count(*) FROM cards c WHERE c.purchase_count != (SELECT count(*) FROM purchases "
        "p WHERE p.card_id = c.id AND p.voided_at IS NULL) OR c.purchase_total != (SELECT "
        "coalesce(sum(p.amount), 0) FROM purchases p WHERE p.card_id = c.id AND "
        "p.voided_at IS NULL) OR c.last_purchase_at IS NOT (SELECT max(p.created_at) FROM "
        "purchases p WHERE p.card_id = c.id AND p.voided_at IS NULL)",
    )
    assert drifted == 0
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]
    assert query(db_path, "PRAGMA foreign_key_check") == []


def run_import(db_url: str, path: Path, pacing: Pacing = history_import.DEFAULT_PACING) -> Any:
    return import_purchases(
        db_url,
        path,
        now=datetime(2026, 11, 16, 9, 0, tzinfo=UTC),
        tz=TZ,
        exponent=2,
        max_amount_minor=10**9,
        on_error=lambda line, reason: pytest.fail(f"line {line}: {reason}"),
        pacing=pacing,
    )


async def till_sale(settings: Settings, db_url: str, number: str) -> int:
    engine = create_engine(db_url)
    try:
        now = FrozenClock()()
        sales = SalesService(Database.of(engine), settings, lambda: now)
        card = await sales.identify_number(number)
        draft = await sales.quote(card.card_id, 123400, CASHIER_ID, CASHIER_ID, now)
        done = await sales.confirm(draft.id, CASHIER_ID, False, now)
        return done.purchase_id
    finally:
        await engine.dispose()


async def wait_until(condition: Any) -> None:
    """Poll the database (another process writes it: nothing to await but time passing)."""
    async with asyncio.timeout(120):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def import_rows(db_path: Path) -> int:
    return scalar(db_path, "SELECT count(*) FROM purchases WHERE import_id IS NOT NULL")


# ------------------------------------------------------------------------ tills keep selling


async def test_a_till_sale_goes_in_while_an_import_is_writing(
    tmp_path: Path, db_path: Path, db_url: str, settings: Settings
) -> None:
    await seed_cards(db_url)
    path = tmp_path / "history.csv"
    write_history(path, 20_000)
    # Many small write transactions, so that the import is surely still writing after the sale.
    small = Pacing(hold=0.001, pause=0.02, first_rows=200, min_rows=200, max_rows=200)
    importing = asyncio.create_task(asyncio.to_thread(run_import, db_url, path, small))
    await wait_until(lambda: import_rows(db_path) > 0 or importing.done())
    assert not importing.done()

    sale_id = await till_sale(settings, db_url, str(FIRST_CARD + 7))

    summary = await importing
    # The sale was recorded between two of the import's write transactions: the ledger holds
    # import rows written before it and after it (ids are given in order of writing).
    first_id, last_id = query(
        db_path, "SELECT min(id), max(id) FROM purchases WHERE import_id IS NOT NULL"
    )[0]
    assert first_id < sale_id < last_id
    assert summary.imported == 20_000 == import_rows(db_path)
    assert query(db_path, "SELECT status FROM imports") == [("done",)]
    assert_totals_match_the_ledger(db_path)


# ------------------------------------------------------------------------- all or nothing


def test_an_interrupted_import_removes_what_it_wrote(
    tmp_path: Path, db_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(seed_cards(db_url))
    path = tmp_path / "history.csv"
    write_history(path, 5_000)
    before = ledger_state(db_path)
    pauses = 0

    def ctrl_c_after_some_writes(seconds: float) -> None:
        nonlocal pauses
        pauses += 1
        if pauses == 6:  # new cards and a few chunks of rows are in by now
            assert import_rows(db_path) > 0
            raise KeyboardInterrupt

    monkeypatch.setattr(history_import.time, "sleep", ctrl_c_after_some_writes)
    with pytest.raises(KeyboardInterrupt):
        run_import(db_url, path, Pacing(first_rows=500, min_rows=500, max_rows=500))
    monkeypatch.undo()
    assert ledger_state(db_path) == before
    assert run_import(db_url, path).imported == 5_000  # and the same file goes in again


def _cli_import(db_path: Path, path: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "DATABASE_URL": f"sqlite+aiosqlite:///{db_path}",
        "TIMEZONE": "Europe/Moscow",
    }
    return asyncio.create_subprocess_exec(  # type: ignore[return-value]
        sys.executable,
        "-m",
        "bot",
        "purchases",
        "import",
        str(path),
        cwd=db_path.parent,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.fixture
def cli(db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(db_path, monkeypatch, capsys)


@pytest.mark.parametrize("recovered_by", ["migrate", "next import"])
async def test_a_killed_import_leaves_nothing_and_the_file_imports_again(
    tmp_path: Path, db_path: Path, db_url: str, settings: Settings, cli: Cli, recovered_by: str
) -> None:
    await seed_cards(db_url)
    path = tmp_path / "history.csv"
    write_history(path, 60_000)
    before = ledger_state(db_path)
    process = await _cli_import(db_path, path)
    try:
        await wait_until(lambda: import_rows(db_path) > 0 or process.returncode is not None)
        process.send_signal(signal.SIGKILL)  # midway through writing the rows
        _out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert 0 < import_rows(db_path) < 60_000
    assert query(db_path, "SELECT status FROM imports") == [("running",)]
    new_cards = scalar(db_path, "SELECT count(*) FROM cards") - CARDS
    assert new_cards == 100  # created before the rows
    # A sale on a card the import touched counts the import's rows in that card's figures; a
    # sale on a card the import created makes that card one to keep.
    await till_sale(settings, db_url, str(FIRST_CARD + 7))
    kept = str(FIRST_CARD + CARDS + 5)
    await till_sale(settings, db_url, kept)

    if recovered_by == "migrate":
        result = await asyncio.to_thread(cli, "migrate")  # the CLI runs its own event loop
        assert result.code == 0, result.err
        after = ledger_state(db_path)
        sales = after["purchases"][-2:]
        assert after["purchases"] == [*before["purchases"], *sales]  # only the till's sales
        assert after["imports"] == before["imports"] == []
        # The import's new cards are gone but the one sold on; the registered ones are as they
        # were (but the one sold on, which became issued then).
        sold = [card for card in after["cards"] if card[1] in (str(FIRST_CARD + 7), kept)]
        assert [card[1] for card in sold] == [str(FIRST_CARD + 7), kept]
        assert [c for c in after["cards"] if c not in sold] == [
            c for c in before["cards"] if c[1] != str(FIRST_CARD + 7)
        ]
        assert_totals_match_the_ledger(db_path)

    result = await asyncio.to_thread(cli, "purchases", "import", str(path))
    assert result.code == 0, result.err
    assert "imported 60000 purchases" in result.out and "99 new cards" in result.out
    assert import_rows(db_path) == 60_000
    assert query(db_path, "SELECT status, rows FROM imports") == [("done", 60_000)]
    assert_totals_match_the_ledger(db_path)


def test_an_import_found_finishing_is_finished(tmp_path: Path, db_path: Path, db_url: str) -> None:
    asyncio.run(seed_cards(db_url))
    path = tmp_path / "history.csv"
    write_history(path, 2_000)
    run_import(db_url, path)
    done = ledger_state(db_path)
    # As a crash after the last row and before the cards were brought up to date leaves it.
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE imports SET status = 'finishing'")
        conn.execute(
            "UPDATE cards SET purchase_count = 0, purchase_total = 0, last_purchase_at = NULL, "
            "status = 'in_stock', issued_at = NULL WHERE number < '100150'"
        )
        conn.execute("DELETE FROM audit_events")
    recovered = recover_interrupted_imports(db_url)
    assert [(r.outcome, r.rows) for r in recovered] == [("finished", 2_000)]
    assert ledger_state(db_path) == done
    assert query(db_path, "SELECT action FROM audit_events") == [("purchases.imported",)]


def test_one_import_at_a_time(tmp_path: Path, db_path: Path, db_url: str, cli: Cli) -> None:
    path = tmp_path / "history.csv"
    write_history(path, 10)
    with _held_import_lock(db_path):
        result = cli("purchases", "import", str(path))
        assert result.code == 1
        assert result.err.strip() == "error: another purchase import is running on this database"
        assert recover_interrupted_imports(db_url) == []  # nothing to clean up: it is running
    assert cli("purchases", "import", str(path)).code == 0


@contextlib.contextmanager
def _held_import_lock(db_path: Path) -> Iterator[None]:
    """What a running import holds (another process, as far as the lock is concerned)."""
    fd = os.open(f"{db_path}-import.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(fd)


def test_bot_start_removes_an_interrupted_import(tmp_path: Path) -> None:
    from tests.fakeapi import FakeTelegram

    db = tmp_path / "b.db"
    url = f"sqlite+aiosqlite:///{db}"
    asyncio.run(_stale_import(url))
    assert scalar(db, "SELECT count(*) FROM purchases") == 3

    async def start_the_bot() -> None:
        async with FakeTelegram() as tg:
            (tmp_path / ".env").write_text(
                f"BOT_TOKEN={tg.token}\nTELEGRAM_API_URL={tg.base_url}\nDATABASE_URL={url}\n"
                "SECRET_KEY=0123456789abcdef0123\nOWNER_IDS=1\nSCHEDULER_ENABLED=false\n",
                encoding="utf-8",
            )
            env = {k: v for k, v in os.environ.items() if k not in {"BOT_TOKEN", "DATABASE_URL"}}
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                cwd=tmp_path,
                env={**env, "PYTHONPATH": str(PROJECT_ROOT)},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                await tg.wait_for(lambda call: call.method == "getUpdates", timeout=60)
            finally:
                process.send_signal(signal.SIGINT)
                output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
            assert process.returncode == 0, output.decode()
            assert (
                "purchase import #1 (stale.csv) was interrupted: removed its 2 rows and new cards"
                in (output.decode())
            )

    asyncio.run(start_the_bot())
    assert query(db, "SELECT count(*) FROM purchases") == [(1,)]  # the till's sale stays
    assert query(db, "SELECT number FROM cards ORDER BY number") == [("100000",), ("100001",)]
    assert query(db, "SELECT * FROM imports") == []
    assert_totals_match_the_ledger(db)


async def _stale_import(url: str) -> None:
    """What a crashed import leaves: `running`, a new card, rows on new and old cards."""
    from db.migrate import upgrade

    await upgrade(url)
    path = make_url_path(url)
    with sqlite3.connect(path) as conn:
        insert_card = (
            "INSERT INTO cards (number, base_pct, segment, kind, status, created_at, bind_failures,"
            " purchase_count, purchase_total) VALUES (?, 5, 'b2c', 'printed', ?, ?, 0, ?, ?)"
        )
        conn.execute(insert_card, ("100000", "in_stock", "2026-11-01 00:00:00.000000", 0, 0))
        # A till sale on 100001 during the import counted the import's row in its figures.
        conn.execute(insert_card, ("100001", "issued", "2026-11-01 00:00:00.000000", 2, 1100))
        conn.execute(
            "INSERT INTO imports (kind, file_name, file_sha256, rows, skipped, created_at, status,"
            " cards_from, cards_to) VALUES ('purchases', 'stale.csv', 'x', 0, 0, "
            "'2026-11-16 09:00:00.000000', 'running', 3, 3)"
        )
        conn.execute(insert_card, ("555555", "issued", "2026-11-16 09:00:00.000000", 0, 0))
        insert = (
            "INSERT INTO purchases (card_id, amount, discount_pct, discount_amount, paid_amount, "
            "source, import_id, created_at) VALUES (?, ?, 5, 0, ?, ?, ?, '2026-10-01')"
        )
        conn.execute(insert, (2, 100, 100, "import", 1))
        conn.execute(insert, (2, 1000, 1000, "bot", None))
        conn.execute(insert, (3, 500, 500, "import", 1))


def make_url_path(url: str) -> str:
    return url.removeprefix("sqlite+aiosqlite:///")
