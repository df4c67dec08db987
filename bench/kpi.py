"""Benchmark: the full KPI set for a year and the /digest render vs a bare aggregate floor.

    .venv/bin/python -m bench.kpi [--cards 10000] [--purchases 1000000]

Generates the cards and purchases over two years straight into a temporary, migrated SQLite
database (one executemany in one transaction, then the cards' lifetime figures are counted as
the history import does). The floor is one
`SELECT count(*), sum(amount) FROM purchases` in the same process over the same database.
Reported: each timing, the ratios (target: KPI set ≤ 5× the floor) and the peak memory
(tracemalloc peak of Python allocations and the process's max RSS; target < 300 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sqlite3
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from config import load_settings
from db.database import Database
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from db.models import SQLITE_DATETIME_FORMAT
from services.cards import refresh_totals
from services.reports import ReportService

FIRST_CARD = 100001
END = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(path: Path, cards: int, purchases: int, seed: int = 11) -> None:
    rnd = random.Random(seed)
    fmt = SQLITE_DATETIME_FORMAT
    begin = END - timedelta(days=730)
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO clients (id, tg_id, language, reachable, marketing_opt_out, "
                "created_at) VALUES (?, ?, 'ru', 1, 0, ?)",
                ((i, 500000 + i, begin.strftime(fmt)) for i in range(1, cards // 3 + 1)),
            )
            card_rows = []
            for i in range(cards):
                issued = begin + timedelta(days=rnd.randrange(700))
                bound = i % 3 == 0
                card_rows.append(
                    (
                        str(FIRST_CARD + i),
                        rnd.choice((5, 7, 10)),
                        "b2b" if i % 10 == 0 else "b2c",
                        issued.strftime(fmt),
                        i // 3 + 1 if bound else None,
                        issued.strftime(fmt) if bound else None,
                    )
                )
            conn.executemany(
                "INSERT INTO cards (number, base_pct, segment, kind, status, created_at, "
                "issued_at, client_id, bound_at, bind_failures) "
                "VALUES (?, ?, ?, 'printed', 'issued', ?, ?, ?, ?, 0)",
                ((n, p, s, begin.strftime(fmt), i, c, b) for n, p, s, i, c, b in card_rows),
            )
            seconds = 730 * 86400

            def purchase_rows():  # type: ignore[no-untyped-def]
                for k in range(purchases):
                    amount = rnd.randrange(100, 2_000_000)
                    pct = rnd.choice((5, 7, 10))
                    at = begin + timedelta(seconds=rnd.randrange(seconds))
                    voided = at.strftime(fmt) if k % 200 == 0 else None
                    disc = amount * pct // 100
                    yield (
                        rnd.randrange(cards) + 1,
                        amount,
                        pct,
                        disc,
                        amount - disc,
                        2000 + rnd.randrange(5),
                        at.strftime(fmt),
                        voided,
                    )

            conn.executemany(
                "INSERT INTO purchases (card_id, amount, discount_pct, discount_amount, "
                "paid_amount, cashier_id, source, created_at, voided_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'import', ?, ?)",
                purchase_rows(),
            )
            conn.executemany(
                "INSERT INTO surveys (client_id, created_at, score, answered_at, comment) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    (
                        rnd.randrange(1, cards // 3 + 1),
                        (at := begin + timedelta(seconds=rnd.randrange(seconds))).strftime(fmt),
                        score := rnd.randrange(11),
                        at.strftime(fmt),
                        "slow queue" if score <= 6 else None,
                    )
                    for _ in range(20_000)
                ),
            )
        conn.execute("ANALYZE")
    finally:
        conn.close()


async def fill_totals(path: Path) -> None:
    """The cards' lifetime figures, as the history import leaves them (one recount)."""
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with create_sessionmaker(engine)() as session:
            await refresh_totals(session, None)
            await session.commit()
    finally:
        await engine.dispose()


async def measure(path: Path, repeat: int) -> dict[str, float]:
    from bot.i18n import create_i18n
    from handlers.owner_reports import digest_message

    url = f"sqlite+aiosqlite:///{path}"
    settings = load_settings(env_file=None, database_url=url, timezone="Europe/Moscow")
    engine = create_engine(url)
    maker = create_sessionmaker(engine)
    reports = ReportService(Database.of(engine), settings)
    last = END.astimezone(settings.store.tz).date() - timedelta(days=1)
    first = last - timedelta(days=364)
    timings: dict[str, list[float]] = {}

    async def timed(name: str, work: Any) -> None:
        # Wall time and process CPU time (all threads: aiosqlite runs SQLite in its own);
        # CPU time is the steadier figure on a machine shared with other work.
        wall, cpu = time.perf_counter(), time.process_time()
        await work
        timings.setdefault(name, []).append(time.perf_counter() - wall)
        timings.setdefault(f"{name}_cpu", []).append(time.process_time() - cpu)

    i18n = create_i18n("ru")
    try:
        with i18n.context(), i18n.use_locale("ru"):
            async with maker() as session:
                await session.execute(text("SELECT count(*) FROM cards"))  # warm up
                for _ in range(repeat):
                    floor = text("SELECT count(*), sum(amount) FROM purchases")
                    await timed("floor", session.execute(floor))
                    await timed("kpi", reports.kpis(first, last))
                    await timed("digest", digest_message(reports, END))
    finally:
        await engine.dispose()
    return {name: min(values) for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.kpi")
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--db", type=Path, help="keep the generated database here and reuse it next time"
    )
    args = parser.parse_args()
    import handlers.owner_reports  # noqa: F401  (aiogram, matplotlib: the baseline RSS)

    baseline = _rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "bench.db"
        if not path.exists():
            asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))
            t0 = time.perf_counter()
            generate(path, args.cards, args.purchases)
            asyncio.run(fill_totals(path))
            print(
                f"generated {args.cards:,} cards, {args.purchases:,} purchases over 2 years "
                f"in {time.perf_counter() - t0:.1f} s"
            )
        # Timings first (tracemalloc slows Python down), then one traced pass for the peak.
        best = asyncio.run(measure(path, args.repeat))
        tracemalloc.start()
        asyncio.run(measure(path, 1))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print("best of runs            wall ms  ×floor     cpu ms  ×floor")
    for name, label in (
        ("floor", "floor count/sum"),
        ("kpi", "KPI set, 1 year"),
        ("digest", "/digest render"),
    ):
        wall, cpu = best[name], best[f"{name}_cpu"]
        print(
            f"{label:<22} {wall * 1000:8.1f} {wall / best['floor']:7.2f}"
            f"   {cpu * 1000:8.1f} {cpu / best['floor_cpu']:7.2f}"
        )
    print("target: KPI set <= 5x the floor")
    print(
        f"peak memory: tracemalloc {peak / 2**20:.1f} MB, max RSS {_rss_mb():.1f} MB "
        f"(of which {baseline:.1f} MB is the imported libraries; target < 300 MB)"
    )


if __name__ == "__main__":
    main()
