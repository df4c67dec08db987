"""A big history import next to working tills, on both engines: the tills keep selling while it
runs, and it stays all-or-nothing — through a failure, Ctrl+C, `kill -9`, and (SQLite) a crash
while finishing.

SQLite writes in short transactions and the tills get the write lock between them; PostgreSQL
writes in one transaction beside the tills (MVCC), locking the touched cards only at the end.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

import services.history_import as history_import
import services.history_import_pg as history_import_pg
from config import PROJECT_ROOT, Settings
from db.database import Database
from db.engine import create_engine
from services.history_import import Pacing, recover_interrupted_imports
from services.inventory import add_range
from services.sales import SalesService
from tests.conftest import CASHIER_ID, FrozenClock, on_postgres
from tests.import_helpers import Db, DbCli, held_import_lock, run_import

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
    """CARDS registered printed cards in stock, numbered from FIRST_CARD."""
    engine = create_engine(db_url)
    try:
        await add_range(
            Database.of(engine), FIRST_CARD, FIRST_CARD + CARDS - 1, 5, now=FrozenClock()()
        )
    finally:
        await engine.dispose()


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    with Db(db_url) as db:
        yield db


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


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll the database (another process or thread writes it: nothing to await but time)."""
    async with asyncio.timeout(120):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def import_rows(db: Db) -> int:
    return int(db.scalar("SELECT count(*) FROM purchases WHERE import_id IS NOT NULL"))


def waiting_for_a_lock(db: Db) -> bool:
    """PostgreSQL: some transaction waits for a row lock (a till on a card the import holds)."""
    return bool(db.scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"))


def import_lock_held(db: Db) -> bool:
    """PostgreSQL: an import's transaction is open (its advisory lock is held)."""
    return bool(
        db.scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND ((classid::bigint << 32) | objid::bigint) = :key",
            key=history_import_pg.IMPORT_LOCK,
        )
    )


# ------------------------------------------------------------------------ tills keep selling


async def test_a_till_sale_goes_in_while_an_import_is_writing(
    tmp_path: Path, db_path: Path, db_url: str, db: Db, settings: Settings
) -> None:
    """SQLite: the sale takes the write lock between two of the import's transactions."""
    await seed_cards(db_url)
    path = tmp_path / "history.csv"
    write_history(path, 20_000)
    # Many small write transactions, so that the import is surely still writing after the sale.
    small = Pacing(hold=0.001, pause=0.02, first_rows=200, min_rows=200, max_rows=200)
    importing = asyncio.create_task(asyncio.to_thread(run_import, db_url, path, small))
    await wait_until(lambda: import_rows(db) > 0 or importing.done())
    assert not importing.done()

    sale_id = await till_sale(settings, db_url, str(FIRST_CARD + 7))

    summary = await importing
    # The sale was recorded between two of the import's write transactions: the ledger holds
    # import rows written before it and after it (ids are given in order of writing).
    first_id, last_id = db.query(
        "SELECT min(id), max(id) FROM purchases WHERE import_id IS NOT NULL"
    )[0]
    assert first_id < sale_id < last_id
    assert summary.imported == 20_000 == import_rows(db)
    assert db.query("SELECT status FROM imports") == [("done",)]
    db.assert_totals_match_the_ledger()


async def sale_not_waiting(settings: Settings, db: Db, number: str) -> int:
    """PostgreSQL: a till sale that must not wait for any lock (it fails when it does)."""
    selling = asyncio.create_task(till_sale(settings, db.url, number))
    await wait_until(lambda: selling.done() or waiting_for_a_lock(db))
    assert selling.done(), "the sale waits for a lock"
    return selling.result()


@pytest.fixture
def paused_before_the_cards(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, ...]:
    """PostgreSQL: the import stops once its rows are in (not committed), before it locks the
    cards; `resume.set()` lets it go on. Returns (reached, resume)."""
    reached, resume = threading.Event(), threading.Event()
    update_cards = history_import_pg.PgWriter._update_cards

    def paused(writer: history_import_pg.PgWriter) -> None:
        reached.set()
        assert resume.wait(120)
        update_cards(writer)

    monkeypatch.setattr(history_import_pg.PgWriter, "_update_cards", paused)
    return reached, resume


@pytest.mark.skipif(not on_postgres(), reason="PostgreSQL: the import is one transaction")
async def test_till_sales_on_the_imported_cards_go_in_while_the_import_is_open(
    tmp_path: Path,
    db_url: str,
    db: Db,
    settings: Settings,
    paused_before_the_cards: tuple[threading.Event, threading.Event],
) -> None:
    """The import's INSERT holds its cards FOR KEY SHARE until it commits: a sale on one of
    them (it locks its card FOR NO KEY UPDATE) neither waits for it nor sees its rows, and the
    card's figures count both in the end."""
    reached, resume = paused_before_the_cards
    await seed_cards(db_url)
    path = tmp_path / "history.csv"
    write_history(path, 20_000)
    importing = asyncio.create_task(asyncio.to_thread(run_import, db_url, path))
    try:
        await wait_until(lambda: reached.is_set() or importing.done())
        assert not importing.done()
        sales = [await sale_not_waiting(settings, db, str(FIRST_CARD + i)) for i in (7, 8)]
        seen_meanwhile = import_rows(db), db.scalar("SELECT count(*) FROM purchases")
    finally:
        resume.set()
    summary = await importing
    assert seen_meanwhile == (0, 2)  # the sales are in; the import's rows are not visible
    assert summary.imported == 20_000 == import_rows(db)
    assert (
        db.scalar("SELECT count(*) FROM purchases WHERE id IN (:a, :b)", a=sales[0], b=sales[1])
        == 2
    )
    assert db.query("SELECT status FROM imports") == [("done",)]
    db.assert_totals_match_the_ledger()


@pytest.mark.skipif(not on_postgres(), reason="PostgreSQL: the import locks its cards at the end")
async def test_a_sale_on_a_card_the_import_is_updating_waits_and_counts_everything(
    tmp_path: Path, db_url: str, db: Db, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reached, resume = threading.Event(), threading.Event()
    update_cards = history_import_pg.PgWriter._update_cards

    def holding_the_cards(writer: history_import_pg.PgWriter) -> None:
        update_cards(writer)  # the cards are locked and updated; the commit comes next
        reached.set()
        assert resume.wait(120)

    monkeypatch.setattr(history_import_pg.PgWriter, "_update_cards", holding_the_cards)
    await seed_cards(db_url)
    path = tmp_path / "history.csv"
    write_history(path, 5_000)
    importing = asyncio.create_task(asyncio.to_thread(run_import, db_url, path))
    try:
        await wait_until(lambda: reached.is_set() or importing.done())
        selling = asyncio.create_task(till_sale(settings, db_url, str(FIRST_CARD + 7)))
        await wait_until(lambda: waiting_for_a_lock(db) or selling.done())
        assert not selling.done()  # it waits for the card's row
    finally:
        resume.set()
    await importing
    await selling
    counted = db.query(
        "SELECT purchase_count, purchase_total FROM cards WHERE number = :n", n=str(FIRST_CARD + 7)
    )
    ledger = db.query(
        "SELECT count(*), sum(amount) FROM purchases p JOIN cards c ON c.id = p.card_id "
        "WHERE c.number = :n",
        n=str(FIRST_CARD + 7),
    )
    assert counted == ledger and counted[0][0] > 1
    db.assert_totals_match_the_ledger()


# ------------------------------------------------------------------------- all or nothing


@pytest.fixture
def interrupt_midway(db_url: str, db: Db, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Ctrl+C while the import writes: on SQLite in a pause between its write transactions,
    once new cards and a few chunks of rows are in; on PostgreSQL once every row is in and
    before the cards' figures. Returns `undo()`."""
    if db.sqlite:
        pauses = 0

        def ctrl_c_after_some_writes(seconds: float) -> None:
            nonlocal pauses
            pauses += 1
            if pauses == 6:
                assert import_rows(db) > 0
                raise KeyboardInterrupt

        monkeypatch.setattr(history_import.time, "sleep", ctrl_c_after_some_writes)
    else:

        def ctrl_c(writer: history_import_pg.PgWriter) -> None:
            assert writer.session.scalar(  # the import's own transaction sees its rows
                text("SELECT count(*) FROM purchases")
            )
            raise KeyboardInterrupt

        monkeypatch.setattr(history_import_pg.PgWriter, "_update_cards", ctrl_c)
    return monkeypatch.undo


def test_an_interrupted_import_removes_what_it_wrote(
    tmp_path: Path, db_url: str, db: Db, interrupt_midway: Callable[[], None]
) -> None:
    asyncio.run(seed_cards(db_url))
    path = tmp_path / "history.csv"
    write_history(path, 5_000)
    before = db.ledger_state()
    with pytest.raises(KeyboardInterrupt):
        run_import(db_url, path, Pacing(first_rows=500, min_rows=500, max_rows=500))
    interrupt_midway()
    assert db.ledger_state() == before
    assert run_import(db_url, path).imported == 5_000  # and the same file goes in again
    db.assert_totals_match_the_ledger()


def _cli_import(db_url: str, path: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "DATABASE_URL": db_url,
        "TIMEZONE": "Europe/Moscow",
    }
    return asyncio.create_subprocess_exec(  # type: ignore[return-value]
        sys.executable,
        "-m",
        "bot",
        "purchases",
        "import",
        str(path),
        cwd=path.parent,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.fixture
def cli(
    db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> DbCli:
    return DbCli(db, tmp_path, monkeypatch, capsys)


async def _kill_9(process: asyncio.subprocess.Process) -> None:
    try:
        process.send_signal(signal.SIGKILL)
        _out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == -signal.SIGKILL, err.decode()[-2000:]


@pytest.mark.parametrize("recovered_by", ["migrate", "next import"])
async def test_a_killed_import_leaves_nothing_and_the_file_imports_again(
    tmp_path: Path,
    db_path: Path,
    db_url: str,
    db: Db,
    settings: Settings,
    cli: DbCli,
    recovered_by: str,
) -> None:
    """SQLite: what a killed import wrote in its short transactions is removed afterwards."""
    await seed_cards(db_url)
    path = tmp_path / "history.csv"
    write_history(path, 60_000)
    before = db.ledger_state()
    process = await _cli_import(db_url, path)
    await wait_until(lambda: import_rows(db) > 0 or process.returncode is not None)
    await _kill_9(process)  # midway through writing the rows
    assert 0 < import_rows(db) < 60_000
    assert db.query("SELECT status FROM imports") == [("running",)]
    new_cards = db.scalar("SELECT count(*) FROM cards") - CARDS
    assert new_cards == 100  # created before the rows
    # A sale on a card the import touched counts the import's rows in that card's figures; a
    # sale on a card the import created makes that card one to keep.
    await till_sale(settings, db_url, str(FIRST_CARD + 7))
    kept = str(FIRST_CARD + CARDS + 5)
    await till_sale(settings, db_url, kept)

    if recovered_by == "migrate":
        result = await asyncio.to_thread(cli, "migrate")  # the CLI runs its own event loop
        assert result.code == 0, result.err
        after = db.ledger_state()
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
        db.assert_totals_match_the_ledger()

    result = await asyncio.to_thread(cli, "purchases", "import", str(path))
    assert result.code == 0, result.err
    assert "imported 60000 purchases" in result.out and "99 new cards" in result.out
    assert import_rows(db) == 60_000
    assert db.query("SELECT status, rows FROM imports") == [("done", 60_000)]
    db.assert_totals_match_the_ledger()


@pytest.mark.skipif(not on_postgres(), reason="PostgreSQL: the import is one transaction")
async def test_a_killed_import_leaves_nothing_on_postgres(
    tmp_path: Path, db_url: str, db: Db, settings: Settings, cli: DbCli
) -> None:
    await seed_cards(db_url)
    path = tmp_path / "history.csv"
    write_history(path, 200_000)
    before = db.ledger_state()
    process = await _cli_import(db_url, path)
    inserting = (
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
        "AND query LIKE 'INSERT INTO purchases%'"
    )
    await wait_until(lambda: bool(db.scalar(inserting)) or process.returncode is not None)
    await _kill_9(process)  # while its INSERT … SELECT writes the rows
    assert db.ledger_state() == before
    sale = await till_sale(settings, db_url, str(FIRST_CARD + 7))  # the tills go on meanwhile
    # The server ends the dead client's transaction once its statement is done.
    await wait_until(lambda: not import_lock_held(db))
    assert (await asyncio.to_thread(cli, "migrate")).code == 0
    assert db.query("SELECT count(*) FROM purchases") == [(1,)]
    assert db.query("SELECT id FROM purchases") == [(sale,)]

    result = await asyncio.to_thread(cli, "purchases", "import", str(path))
    assert result.code == 0, result.err
    assert "imported 200000 purchases" in result.out and "100 new cards" in result.out
    assert db.query("SELECT status, rows FROM imports") == [("done", 200_000)]
    db.assert_totals_match_the_ledger()


def test_an_import_found_finishing_is_finished(tmp_path: Path, db_url: str, db: Db) -> None:
    asyncio.run(seed_cards(db_url))
    path = tmp_path / "history.csv"
    write_history(path, 2_000)
    run_import(db_url, path)
    done = db.ledger_state()
    # As a crash after the last row and before the cards were brought up to date leaves it on
    # SQLite (an import on PostgreSQL never commits this state, but the rule is the same).
    db.execute(
        "UPDATE imports SET status = 'finishing'",
        "UPDATE cards SET purchase_count = 0, purchase_total = 0, last_purchase_at = NULL, "
        "status = 'in_stock', issued_at = NULL WHERE number < '100150'",
        "DELETE FROM audit_events",
    )
    recovered = recover_interrupted_imports(db_url)
    assert [(r.outcome, r.rows) for r in recovered] == [("finished", 2_000)]
    assert db.ledger_state() == done
    assert db.query("SELECT action FROM audit_events") == [("purchases.imported",)]


def test_one_import_at_a_time(tmp_path: Path, db: Db, cli: DbCli) -> None:
    path = tmp_path / "history.csv"
    write_history(path, 10)
    with held_import_lock(db):
        result = cli("purchases", "import", str(path))
        assert result.code == 1
        assert result.err.strip() == "error: another purchase import is running on this database"
        assert recover_interrupted_imports(db.url) == []  # nothing to clean up: it is running
    assert cli("purchases", "import", str(path)).code == 0


def test_bot_start_removes_an_interrupted_import(tmp_path: Path, db: Db) -> None:
    from bot.demo.emulator import FakeTelegram

    _stale_import(db)
    assert db.scalar("SELECT count(*) FROM purchases") == 3

    async def start_the_bot() -> None:
        async with FakeTelegram() as tg:
            (tmp_path / ".env").write_text(
                f"BOT_TOKEN={tg.token}\nTELEGRAM_API_URL={tg.base_url}\nDATABASE_URL={db.url}\n"
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
    assert db.query("SELECT count(*) FROM purchases") == [(1,)]  # the till's sale stays
    assert db.query("SELECT number FROM cards ORDER BY number") == [("100000",), ("100001",)]
    assert db.query("SELECT * FROM imports") == []
    db.assert_totals_match_the_ledger()


def _stale_import(db: Db) -> None:
    """What a crashed import leaves: `running`, a new card, rows on new and old cards."""
    insert_card = (
        "INSERT INTO cards (number, base_pct, segment, kind, status, created_at, bind_failures, "
        "purchase_count, purchase_total) VALUES (:number, 5, 'b2c', 'printed', :status, "
        "'{at}', 0, :n, :total)"
    )
    before = insert_card.format(at="2026-11-01 00:00:00.000000")
    db.query(before, number="100000", status="in_stock", n=0, total=0)
    # A till sale on 100001 during the import counted the import's row in its figures.
    db.query(before, number="100001", status="issued", n=2, total=1100)
    db.execute(
        "INSERT INTO imports (kind, file_name, file_sha256, rows, skipped, created_at, status, "
        "cards_from, cards_to) VALUES ('purchases', 'stale.csv', 'x', 0, 0, "
        "'2026-11-16 09:00:00.000000', 'running', 3, 3)"
    )
    db.query(
        insert_card.format(at="2026-11-16 09:00:00.000000"),
        number="555555",
        status="issued",
        n=0,
        total=0,
    )
    insert = (
        "INSERT INTO purchases (card_id, amount, discount_pct, discount_amount, paid_amount, "
        "source, import_id, created_at) VALUES (:card, :amount, 5, 0, :amount, :source, :imp, "
        "'2026-10-01 00:00:00.000000')"
    )
    db.query(insert, card=2, amount=100, source="import", imp=1)
    db.query(insert, card=2, amount=1000, source="bot", imp=None)
    db.query(insert, card=3, amount=500, source="import", imp=1)
