"""Benchmark: `purchases import` of 1,000,000 rows for 10,000 cards vs a bare executemany floor.

    .venv/bin/python -m bench.import_purchases [--rows 1000000] [--cards 10000]

The floor inserts the same rows (already parsed, as tuples) with one sqlite3 `executemany` in one
transaction into the same table of an identically migrated database, in this process. The
import reads the CSV from disk, validates every line and inserts in batches. Reported: rows/s of
both, the ratio (target ≤ 2×) and the import's peak memory (target < 300 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import resource
import shutil
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from db.models import SQLITE_DATETIME_FORMAT
from services.history_import import import_purchases
from services.inventory import add_range

FIRST_CARD = 100001
TZ = ZoneInfo("Europe/Moscow")


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
    async with create_sessionmaker(engine)() as session:
        await add_range(session, FIRST_CARD, FIRST_CARD + cards - 1, 5, now=datetime.now(UTC))
    await engine.dispose()


async def run_import(db: Path, csv_path: Path) -> float:
    engine = create_engine(f"sqlite+aiosqlite:///{db}")
    errors: list[tuple[int, str]] = []
    started = time.perf_counter()
    async with create_sessionmaker(engine)() as session:
        summary = await import_purchases(
            session,
            csv_path,
            now=datetime.now(UTC),
            tz=TZ,
            exponent=2,
            max_amount_minor=10**12,
            on_error=lambda line, reason: errors.append((line, reason)),
        )
    elapsed = time.perf_counter() - started
    await engine.dispose()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cards", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        csv_path = work / "purchases.csv"
        generate_csv(csv_path, args.rows, args.cards)
        template = work / "template.db"
        asyncio.run(prepare_db(template, args.cards))
        import_db, floor_db = work / "import.db", work / "floor.db"
        shutil.copy(template, import_db)
        shutil.copy(template, floor_db)

        rss_before = _rss_mb()
        import_s = asyncio.run(run_import(import_db, csv_path))
        import_peak = _rss_mb()
        rows = floor_rows(floor_db, csv_path)
        floor_s = run_floor(floor_db, rows)

        size_mb = csv_path.stat().st_size / 1e6
        print(f"rows: {args.rows:,} for {args.cards:,} cards ({size_mb:.0f} MB CSV)")
        print(f"import: {import_s:6.2f} s  {args.rows / import_s:>10,.0f} rows/s")
        print(f"floor:  {floor_s:6.2f} s  {args.rows / floor_s:>10,.0f} rows/s  (bare executemany)")
        print(f"ratio:  {import_s / floor_s:.2f}x  (target <= 2x)")
        print(
            f"peak RSS during import: {import_peak:.0f} MB (process before: {rss_before:.0f} MB;"
            " target < 300 MB)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
