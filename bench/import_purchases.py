"""Benchmark: `purchases import` of 1,000,000 rows for 10,000 cards vs a bare bulk insert of the
same rows, and what a till selling on the same database waits meanwhile — on SQLite or on
PostgreSQL.

    .venv/bin/python -m bench.import_purchases [--rows 1000000] [--cards 10000] [--no-till]
        [--hold 0.2] [--pause 0.06]                        # SQLite (the default)
    .venv/bin/python -m bench.import_purchases --engine postgresql [--server-url URL]

The floor writes the same rows (already parsed, as tuples) in one transaction into the same
table of an identically migrated database, in this process: on SQLite one sqlite3
`executemany`, on PostgreSQL one asyncpg `copy_records_to_table` (a bare COPY). The import reads
the CSV from disk, validates every line, then writes (SQLite: in short transactions with pauses
for the tills; PostgreSQL: COPY into a temporary table and one `INSERT … SELECT`, in one
transaction). Reported: rows/s of both, the ratio (target ≤ 2×), the import's peak memory
(target < 300 MB), and on PostgreSQL how long the import kept the touched cards' rows locked at
its end.

PostgreSQL: a throwaway server (`tests.servers`, durability off as for the tests: both the
import and the floor run on it) unless `--server-url` names one whose role may create
databases (the benchmark creates and drops `bench_import_*` databases there).

The till: a separate process (as the bot is) records a sale (`SalesService.quote` and
`.confirm`, two write transactions) every 50 ms on the import's database, from a few seconds
before the import until it ends. Reported: how long its writes take while the import runs
against before it starts — p50/p99/max (target: within about 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import logging
import multiprocessing
import random
import resource
import shutil
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import make_url

from db.database import Database
from db.engine import create_engine
from db.migrate import upgrade
from db.models import SQLITE_DATETIME_FORMAT
from services.history_import import DEFAULT_PACING, Pacing, import_purchases
from services.inventory import add_range

FIRST_CARD = 100001
TZ = ZoneInfo("Europe/Moscow")
TILL_INTERVAL = 0.05
TILL_WARMUP = 3.0
COLUMNS = (
    "card_id",
    "amount",
    "discount_pct",
    "discount_amount",
    "paid_amount",
    "source",
    "import_id",
    "created_at",
)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate_csv(path: Path, rows: int, cards: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    start = datetime(2024, 11, 1)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["card_number", "date", "amount"])
        for _ in range(rows):
            day = start + timedelta(days=rnd.randrange(730))
            cents = rnd.randrange(100, 2_000_000)
            writer.writerow(
                [
                    FIRST_CARD + rnd.randrange(cards),
                    day.strftime("%Y-%m-%d"),
                    f"{cents // 100}.{cents % 100:02d}",
                ]
            )


async def prepare_db(url: str, cards: int) -> None:
    """Migrate and register `cards` printed cards (in stock, 5 %)."""
    await upgrade(url)
    engine = create_engine(url)
    try:
        await add_range(
            Database.of(engine), FIRST_CARD, FIRST_CARD + cards - 1, 5, now=datetime.now(UTC)
        )
    finally:
        await engine.dispose()


class _CardsHeld(logging.Handler):
    """The import's log line saying how long it kept the cards' rows locked (PostgreSQL)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if "locked for" in record.getMessage():
            self.message = record.getMessage()


def run_import(url: str, csv_path: Path, pacing: Pacing = DEFAULT_PACING) -> float:
    errors: list[tuple[int, str]] = []
    started = time.perf_counter()
    summary = import_purchases(
        url,
        csv_path,
        now=datetime.now(UTC),
        tz=TZ,
        exponent=2,
        max_amount_minor=10**12,
        on_error=lambda line, reason: errors.append((line, reason)),
        pacing=pacing,
    )
    elapsed = time.perf_counter() - started
    assert not errors and summary.imported > 0, errors[:5]
    return elapsed


def floor_rows(ids: dict[str, int], csv_path: Path, text_dates: bool) -> list[tuple[Any, ...]]:
    """The same rows the import writes, parsed ahead of time (not timed)."""
    rows: list[tuple[Any, ...]] = []
    with csv_path.open(encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        for number, day, amount in reader:
            minor = int(amount.replace(".", ""))
            moment = datetime.fromisoformat(day).replace(tzinfo=TZ).astimezone(UTC)
            naive = moment.replace(tzinfo=None)
            discount = (minor * 5 + 50) // 100
            rows.append(
                (
                    ids[number],
                    minor,
                    5,
                    discount,
                    minor - discount,
                    "import",
                    None,
                    naive.strftime(SQLITE_DATETIME_FORMAT) if text_dates else naive,
                )
            )
    return rows


def run_floor_sqlite(db: Path, rows: list[tuple[Any, ...]]) -> float:
    conn = sqlite3.connect(db, isolation_level=None)
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=FULL"):
        conn.execute(f"PRAGMA {pragma}")
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(
        f"INSERT INTO purchases ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
    )
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _card_ids_pg(url: str) -> dict[str, int]:
    import asyncpg

    connection = await asyncpg.connect(_dsn(url))
    try:
        return {
            row["number"]: row["id"]
            for row in await connection.fetch("SELECT number, id FROM cards")
        }
    finally:
        await connection.close()


async def run_floor_pg(url: str, rows: list[tuple[Any, ...]]) -> float:
    import asyncpg

    connection = await asyncpg.connect(_dsn(url))
    try:
        started = time.perf_counter()
        async with connection.transaction():
            await connection.copy_records_to_table("purchases", records=rows, columns=COLUMNS)
        return time.perf_counter() - started
    finally:
        await connection.close()


# ---------------------------------------------------------------------------------- the till


def till_process(url: str, card: str, stop: object, ready: object, out: object) -> None:
    """Sales on `url` every TILL_INTERVAL until `stop` is set; puts [(wall time, seconds)] of
    each write (quote, confirm) on `out`."""
    asyncio.run(_till(url, card, stop, ready, out))


async def _till(url: str, card: str, stop: object, ready: object, out: object) -> None:
    from config import load_settings
    from db.database import Database
    from services.sales import SalesService

    settings = load_settings(
        env_file=None,
        bot_token="123456:TEST",
        secret_key="bench-secret-key-0123456789abcdef",
        database_url=url,
        owner_ids=[1001],
    )
    engine = create_engine(url)
    sales = SalesService(Database.of(engine), settings, lambda: datetime.now(UTC))
    writes: list[tuple[float, float]] = []
    ready.set()  # type: ignore[attr-defined]
    try:
        while not stop.is_set():  # type: ignore[attr-defined]
            summary = await sales.identify_number(card)
            now = datetime.now(UTC)
            started = time.perf_counter()
            draft = await sales.quote(summary.card_id, 250000, 2001, 2001, now)
            quoted = time.perf_counter()
            await sales.confirm(draft.id, 2001, False, now)
            confirmed = time.perf_counter()
            writes.append((time.time(), quoted - started))
            writes.append((time.time(), confirmed - quoted))
            await asyncio.sleep(TILL_INTERVAL)
    finally:
        await engine.dispose()
        out.put(writes)  # type: ignore[attr-defined]


def _describe(waits: list[float]) -> str:
    if not waits:
        return "no writes"
    waits = sorted(waits)
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    return (
        f"{len(waits)} writes, p50 {statistics.median(waits) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {waits[-1] * 1000:.1f} ms"
    )


# ------------------------------------------------------------------------------ the databases


class SqliteDatabases:
    """Fresh (import, floor) pairs of databases: copies of one migrated file with the cards."""

    def __init__(self, work: Path, cards: int) -> None:
        self.work = work
        self.template = work / "template.db"
        asyncio.run(prepare_db(f"sqlite+aiosqlite:///{self.template}", cards))

    def fresh(self) -> tuple[str, str]:
        urls = []
        for name in ("import.db", "floor.db"):
            path = self.work / name
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
            shutil.copy(self.template, path)
            urls.append(f"sqlite+aiosqlite:///{path}")
        return urls[0], urls[1]

    def close(self) -> None:
        pass


class PostgresDatabases:
    """Fresh (import, floor) pairs of databases made from one migrated template with the
    cards, on the server (a throwaway one unless `server_url`); all dropped at `close`."""

    NAMES = ("bench_import_template", "bench_import_run", "bench_import_floor")

    def __init__(self, cards: int, server_url: str | None) -> None:
        self.stack = contextlib.ExitStack()
        if server_url is None:
            from tests.servers import postgres

            root = self.stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-import-pg-"))
            server_url = self.stack.enter_context(postgres(Path(root)))
        self.server_url = server_url
        self.base = server_url.rsplit("/", 1)[0]
        self._admin(*self._drop(), f"CREATE DATABASE {self.NAMES[0]}")
        asyncio.run(prepare_db(f"{self.base}/{self.NAMES[0]}", cards))

    def fresh(self) -> tuple[str, str]:
        copies = self.NAMES[1:]
        self._admin(
            *(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)" for name in copies),
            *(f"CREATE DATABASE {name} TEMPLATE {self.NAMES[0]}" for name in copies),
        )
        return f"{self.base}/{copies[0]}", f"{self.base}/{copies[1]}"

    def close(self) -> None:
        try:
            self._admin(*self._drop())
        finally:
            self.stack.close()

    def _drop(self) -> list[str]:
        return [f"DROP DATABASE IF EXISTS {name} WITH (FORCE)" for name in self.NAMES]

    def _admin(self, *statements: str) -> None:
        async def run() -> None:
            import asyncpg

            connection = await asyncpg.connect(_dsn(self.server_url))
            try:
                for sql in statements:
                    await connection.execute(sql)
            finally:
                await connection.close()

        asyncio.run(run())


# ---------------------------------------------------------------------------------- one run


class Run:
    """One import (with the till selling meanwhile) and one floor, on fresh databases."""

    def __init__(self) -> None:
        self.import_s = self.floor_s = 0.0
        self.peak_mb = 0.0  # the process's peak RSS right after the import (before the floor)
        self.held: str | None = None
        self.before: list[float] = []  # the till's write times before the import
        self.during: list[float] = []  # … and while it ran


def measure(
    args: argparse.Namespace,
    import_url: str,
    floor_url: str,
    csv_path: Path,
    pacing: Pacing,
    held: _CardsHeld,
) -> Run:
    run = Run()
    till = None
    if not args.no_till:
        context = multiprocessing.get_context("spawn")
        stop, ready, out = context.Event(), context.Event(), context.Queue()
        card = str(FIRST_CARD + args.cards - 1)
        till = context.Process(target=till_process, args=(import_url, card, stop, ready, out))
        till.start()
        ready.wait(60)
        time.sleep(TILL_WARMUP)  # writes without an import, for comparison

    held.message = None
    import_started = time.time()
    run.import_s = run_import(import_url, csv_path, pacing)
    import_ended = time.time()
    run.peak_mb = _rss_mb()
    run.held = held.message

    if till is not None:
        stop.set()
        writes: list[tuple[float, float]] = out.get(timeout=60)
        till.join(60)
        run.before = [s for at, s in writes if at < import_started]
        run.during = [s for at, s in writes if at >= import_started and at - s <= import_ended]

    if args.engine == "postgresql":
        rows = floor_rows(asyncio.run(_card_ids_pg(floor_url)), csv_path, False)
        run.floor_s = asyncio.run(run_floor_pg(floor_url, rows))
    else:
        floor_db = Path(make_url(floor_url).database or "")
        with sqlite3.connect(floor_db) as conn:
            ids = dict(conn.execute("SELECT number, id FROM cards"))
        rows = floor_rows(ids, csv_path, True)
        run.floor_s = run_floor_sqlite(floor_db, rows)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--server-url",
        default=None,
        help="PostgreSQL: a server to use (default: a throwaway one, tests.servers)",
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs (import, then floor)")
    parser.add_argument("--no-till", action="store_true", help="no till selling meanwhile")
    parser.add_argument(
        "--hold",
        type=float,
        default=DEFAULT_PACING.hold,
        help="SQLite: seconds per write transaction",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=DEFAULT_PACING.pause,
        help="SQLite: seconds between them",
    )
    args = parser.parse_args()
    postgres = args.engine == "postgresql"
    pacing = Pacing(hold=args.hold, pause=args.pause)
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    held = _CardsHeld()
    logging.getLogger("services.history_import").addHandler(held)
    logging.getLogger("services.history_import").setLevel(logging.INFO)
    databases: SqliteDatabases | PostgresDatabases | None = None
    try:
        csv_path = work / "purchases.csv"
        generate_csv(csv_path, args.rows, args.cards)
        size_mb = csv_path.stat().st_size / 1e6
        how = (
            "PostgreSQL: COPY into a temporary table, one INSERT … SELECT, one transaction"
            if postgres
            else f"SQLite: write transactions of ~{pacing.hold:g} s, {pacing.pause:g} s apart"
        )
        floor = "bare COPY" if postgres else "bare executemany"
        print(f"rows: {args.rows:,} for {args.cards:,} cards ({size_mb:.0f} MB CSV); {how}")
        databases = (
            PostgresDatabases(args.cards, args.server_url)
            if postgres
            else SqliteDatabases(work, args.cards)
        )
        rss_before = _rss_mb()
        runs: list[Run] = []
        import_peak = 0.0
        for number in range(1, args.repeat + 1):
            run = measure(args, *databases.fresh(), csv_path, pacing, held)
            if number == 1:  # the peak is the process's: later ones include the floor's rows
                import_peak = run.peak_mb
            runs.append(run)
            print(
                f"run {number}: import {run.import_s:6.2f} s ({args.rows / run.import_s:,.0f} "
                f"rows/s), floor {run.floor_s:6.2f} s ({args.rows / run.floor_s:,.0f} rows/s, "
                f"{floor}): {run.import_s / run.floor_s:.2f}x"
            )
            if run.held:
                print(f"       {run.held}")
            if not args.no_till:
                print(f"       till writes before the import: {_describe(run.before)}")
                print(f"       till writes during the import: {_describe(run.during)}")
        ratios = sorted(run.import_s / run.floor_s for run in runs)
        print(
            f"ratio: median {statistics.median(ratios):.2f}x, {ratios[0]:.2f}-{ratios[-1]:.2f}x "
            f"over {len(runs)} runs (target <= 2x)"
        )
        print(
            f"peak RSS during the first import: {import_peak:.0f} MB (process before: "
            f"{rss_before:.0f} MB; target < 300 MB)"
        )
        if not args.no_till:
            during = [wait for run in runs for wait in run.during]
            print(f"till writes during the imports: {_describe(during)}  (target: max ~1 s)")
    finally:
        if databases is not None:
            databases.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
