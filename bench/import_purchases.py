"""Benchmark: `purchases import` of 1,000,000 rows for 10,000 cards vs a bare executemany floor,
and what a till selling on the same database waits meanwhile.

    .venv/bin/python -m bench.import_purchases [--rows 1000000] [--cards 10000] [--no-till]
        [--hold 0.2] [--pause 0.06]

The floor inserts the same rows (already parsed, as tuples) with one sqlite3 `executemany` in
one transaction into the same table of an identically migrated database, in this process. The
import reads the CSV from disk, validates every line, then writes in short transactions with
pauses for the tills. Reported: rows/s of both, the ratio (target ≤ 2×) and the import's peak
memory (target < 300 MB).

The till: a separate process (as the bot is) records a sale (`SalesService.quote` and
`.confirm`, two write transactions) every 50 ms on the import's database, from a few seconds
before the import until it ends. Reported: how long its writes take while the import runs
against before it starts — p50/p99/max (target: the write lock within about 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
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
from zoneinfo import ZoneInfo

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


async def prepare_db(path: Path, cards: int) -> None:
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade(url)
    engine = create_engine(url)
    await add_range(
        Database.of(engine), FIRST_CARD, FIRST_CARD + cards - 1, 5, now=datetime.now(UTC)
    )
    await engine.dispose()


def run_import(db: Path, csv_path: Path, pacing: Pacing = DEFAULT_PACING) -> float:
    errors: list[tuple[int, str]] = []
    started = time.perf_counter()
    summary = import_purchases(
        f"sqlite+aiosqlite:///{db}",
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


def floor_rows(db: Path, csv_path: Path) -> list[tuple[object, ...]]:
    """The same rows the import writes, parsed ahead of time (not timed)."""
    with sqlite3.connect(db) as conn:
        ids = dict(conn.execute("SELECT number, id FROM cards"))
    rows: list[tuple[object, ...]] = []
    with csv_path.open(encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        for number, day, amount in reader:
            minor = int(amount.replace(".", ""))
            moment = datetime.fromisoformat(day).replace(tzinfo=TZ).astimezone(UTC)
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
                    moment.replace(tzinfo=None).strftime(SQLITE_DATETIME_FORMAT),
                )
            )
    return rows


def run_floor(db: Path, rows: list[tuple[object, ...]]) -> float:
    conn = sqlite3.connect(db, isolation_level=None)
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=FULL"):
        conn.execute(f"PRAGMA {pragma}")
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO purchases (card_id, amount, discount_pct, discount_amount, paid_amount, "
        "source, import_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


# ---------------------------------------------------------------------------------- the till


def till_process(db: str, card: str, stop: object, ready: object, out: object) -> None:
    """Sales on `db` every TILL_INTERVAL until `stop` is set; puts [(wall time, seconds)] of
    each write (quote, confirm) on `out`."""
    asyncio.run(_till(db, card, stop, ready, out))


async def _till(db: str, card: str, stop: object, ready: object, out: object) -> None:
    from config import load_settings
    from db.database import Database
    from services.sales import SalesService

    url = f"sqlite+aiosqlite:///{db}"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--no-till", action="store_true", help="no till selling meanwhile")
    parser.add_argument(
        "--hold", type=float, default=DEFAULT_PACING.hold, help="seconds per write transaction"
    )
    parser.add_argument(
        "--pause", type=float, default=DEFAULT_PACING.pause, help="seconds between them"
    )
    args = parser.parse_args()
    pacing = Pacing(hold=args.hold, pause=args.pause)
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        csv_path = work / "purchases.csv"
        generate_csv(csv_path, args.rows, args.cards)
        template = work / "template.db"
        asyncio.run(prepare_db(template, args.cards))
        import_db, floor_db = work / "import.db", work / "floor.db"
        shutil.copy(template, import_db)
        shutil.copy(template, floor_db)

        till = None
        if not args.no_till:
            context = multiprocessing.get_context("spawn")
            stop, ready, out = context.Event(), context.Event(), context.Queue()
            card = str(FIRST_CARD + args.cards - 1)
            till = context.Process(
                target=till_process, args=(str(import_db), card, stop, ready, out)
            )
            till.start()
            ready.wait(60)
            time.sleep(TILL_WARMUP)  # writes without an import, for comparison

        rss_before = _rss_mb()
        import_started = time.time()
        import_s = run_import(import_db, csv_path, pacing)
        import_ended = time.time()
        import_peak = _rss_mb()

        writes: list[tuple[float, float]] = []
        if till is not None:
            stop.set()
            writes = out.get(timeout=60)
            till.join(60)

        rows = floor_rows(floor_db, csv_path)
        floor_s = run_floor(floor_db, rows)

        size_mb = csv_path.stat().st_size / 1e6
        print(
            f"rows: {args.rows:,} for {args.cards:,} cards ({size_mb:.0f} MB CSV); "
            f"write transactions of ~{pacing.hold:g} s, {pacing.pause:g} s apart"
        )
        print(f"import: {import_s:6.2f} s  {args.rows / import_s:>10,.0f} rows/s")
        print(f"floor:  {floor_s:6.2f} s  {args.rows / floor_s:>10,.0f} rows/s  (bare executemany)")
        print(f"ratio:  {import_s / floor_s:.2f}x  (target <= 2x)")
        print(
            f"peak RSS during import: {import_peak:.0f} MB (process before: {rss_before:.0f} MB;"
            " target < 300 MB)"
        )
        if till is not None:
            before = [s for at, s in writes if at < import_started]
            during = [s for at, s in writes if at >= import_started and at - s <= import_ended]
            print(f"till writes before the import: {_describe(before)}")
            print(f"till writes during the import: {_describe(during)}  (target: max ~1 s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
