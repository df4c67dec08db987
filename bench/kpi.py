"""Benchmark: the full KPI set for a year and the /digest render vs a bare aggregate floor, on
SQLite and on PostgreSQL.

    .venv/bin/python -m bench.kpi [--cards 10000] [--purchases 1000000]   # SQLite
    .venv/bin/python -m bench.kpi --engine postgresql                     # a throwaway server
    .venv/bin/python -m bench.kpi --engine both                           # the same data on both
    .venv/bin/python -m bench.kpi --database-url postgresql+asyncpg://…   # a database you give

Generates the cards and purchases over two years (a fixed seed: the same rows on every engine)
into a migrated database: SQLite with one `executemany` in one transaction; PostgreSQL with COPY
through asyncpg (the purchases' secondary indexes are built after the load, as `pg_restore`
does, then `VACUUM ANALYZE`, as autovacuum does soon after a bulk load). The cards' lifetime
figures are then counted in one statement, as the history import leaves them. A throwaway
PostgreSQL server (`--engine postgresql|both`) is started with `tests.servers`' helper; a
`--database-url` database is filled when its `purchases` table is empty and reused otherwise.

The floor is `SELECT count(*), sum(amount) FROM purchases`, run exactly as the KPI set is (a
report unit, `db.report`) in the same process over the same database. Reported: best-of-N
wall time per engine and its ratio to that engine's floor (target: KPI set ≤ 5×), PostgreSQL's
KPI set against SQLite's (`--engine both`; target ≤ 1.2×), the Python process's CPU time (on
PostgreSQL the server's work is not in it), and the peak memory (tracemalloc peak of Python
allocations and the process's max RSS; target < 300 MB). `--engine both` alternates the engines
run by run, so a shared machine's drift hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import resource
import sqlite3
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateIndex

from config import load_settings
from db.database import Database
from db.engine import create_engine
from db.migrate import upgrade
from db.models import SQLITE_DATETIME_FORMAT, Card, Purchase
from services.cards import refresh_months
from services.reports import ReportService

FIRST_CARD = 100001
END = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
DAYS = 730
SURVEYS = 20_000


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------ the data


class Data:
    """Two years of a program: clients, cards, purchases and surveys as Python values (naive
    UTC datetimes). One random generator drawn in a fixed order — call `cards()`, then
    `purchases()` (consume it), then `surveys()` — so every engine gets the same rows."""

    def __init__(self, cards: int, purchases: int, seed: int = 11) -> None:
        self.n_cards = cards
        self.n_purchases = purchases
        self.rnd = random.Random(seed)
        self.begin = (END - timedelta(days=DAYS)).replace(tzinfo=None)
        self.n_clients = (cards + 2) // 3  # every third card is bound, to a client of its own

    def clients(self) -> Iterator[tuple[int, int, datetime]]:
        """(id, tg_id, created_at)"""
        return ((i, 500000 + i, self.begin) for i in range(1, self.n_clients + 1))

    def cards(self) -> list[tuple[int, str, int, str, datetime, int | None, datetime | None]]:
        """(id, number, base_pct, segment, issued_at, client_id, bound_at)"""
        rows = []
        for i in range(self.n_cards):
            issued = self.begin + timedelta(days=self.rnd.randrange(DAYS - 30))
            bound = i % 3 == 0
            rows.append(
                (
                    i + 1,
                    str(FIRST_CARD + i),
                    self.rnd.choice((5, 7, 10)),
                    "b2b" if i % 10 == 0 else "b2c",
                    issued,
                    i // 3 + 1 if bound else None,
                    issued if bound else None,
                )
            )
        return rows

    def purchases(self) -> Iterator[tuple[int, int, int, int, int, int, datetime, datetime | None]]:
        """(card_id, amount, discount_pct, discount_amount, paid_amount, cashier_id,
        created_at, voided_at); one in 200 is voided."""
        rnd, seconds = self.rnd, DAYS * 86400
        for k in range(self.n_purchases):
            amount = rnd.randrange(100, 2_000_000)
            pct = rnd.choice((5, 7, 10))
            at = self.begin + timedelta(seconds=rnd.randrange(seconds))
            disc = amount * pct // 100
            card = rnd.randrange(self.n_cards) + 1
            cashier = 2000 + rnd.randrange(5)
            yield (
                card,
                amount,
                pct,
                disc,
                amount - disc,
                cashier,
                at,
                at if k % 200 == 0 else None,
            )

    def surveys(self) -> Iterator[tuple[int, datetime, int, datetime, str | None]]:
        """(client_id, created_at, score, answered_at, comment)"""
        rnd, seconds = self.rnd, DAYS * 86400
        for _ in range(SURVEYS):
            client = rnd.randrange(1, self.n_clients + 1)
            at = self.begin + timedelta(seconds=rnd.randrange(seconds))
            score = rnd.randrange(11)
            yield (client, at, score, at, "slow queue" if score <= 6 else None)


def _totals_statement() -> Any:
    """The cards' lifetime figures from the ledger in one UPDATE … FROM (both engines)."""
    live = (
        select(
            Purchase.card_id,
            func.count().label("n"),
            func.sum(Purchase.amount).label("total"),
            func.max(Purchase.created_at).label("last"),
        )
        .where(Purchase.voided_at.is_(None))
        .group_by(Purchase.card_id)
        .subquery()
    )
    cards = Card.__table__
    return (
        update(cards)
        .where(cards.c.id == live.c.card_id)
        .values(purchase_count=live.c.n, purchase_total=live.c.total, last_purchase_at=live.c.last)
    )


async def fill_totals(url: str) -> None:
    """The cards' lifetime and monthly figures, as the history import leaves them (one
    recount each)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(_totals_statement())
            await connection.run_sync(lambda sync: refresh_months(Session(bind=sync), None))
    finally:
        await engine.dispose()


def generate(path: Path, cards: int, purchases: int, seed: int = 11) -> None:
    """Load `Data` into the migrated SQLite file `path` (stdlib driver, one transaction)."""
    data = Data(cards, purchases, seed)
    fmt = SQLITE_DATETIME_FORMAT

    def ts(value: datetime | None) -> str | None:
        return None if value is None else value.strftime(fmt)

    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO clients (id, tg_id, language, reachable, marketing_opt_out, "
                "created_at) VALUES (?, ?, 'ru', 1, 0, ?)",
                ((i, tg, ts(at)) for i, tg, at in data.clients()),
            )
            conn.executemany(
                "INSERT INTO cards (id, number, base_pct, segment, kind, status, created_at, "
                "issued_at, client_id, bound_at, bind_failures) "
                "VALUES (?, ?, ?, ?, 'printed', 'issued', ?, ?, ?, ?, 0)",
                (
                    (i, n, p, s, ts(data.begin), ts(at), c, ts(b))
                    for i, n, p, s, at, c, b in data.cards()
                ),
            )
            conn.executemany(
                "INSERT INTO purchases (card_id, amount, discount_pct, discount_amount, "
                "paid_amount, cashier_id, source, created_at, voided_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'import', ?, ?)",
                ((*row[:6], ts(row[6]), ts(row[7])) for row in data.purchases()),
            )
            conn.executemany(
                "INSERT INTO surveys (client_id, created_at, score, answered_at, comment) "
                "VALUES (?, ?, ?, ?, ?)",
                ((c, ts(at), s, ts(ans), text_) for c, at, s, ans, text_ in data.surveys()),
            )
        conn.execute("ANALYZE")
    finally:
        conn.close()


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def generate_postgres(url: str, cards: int, purchases: int, seed: int = 11) -> None:
    """Load `Data` into the migrated PostgreSQL database at `url` with COPY (asyncpg)."""
    import asyncpg

    data = Data(cards, purchases, seed)
    dialect = postgresql.dialect()
    indexes = [index for index in Purchase.__table__.indexes]
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await conn.copy_records_to_table(
            "clients",
            records=((i, tg, "ru", True, False, at) for i, tg, at in data.clients()),
            columns=["id", "tg_id", "language", "reachable", "marketing_opt_out", "created_at"],
        )
        await conn.copy_records_to_table(
            "cards",
            records=(
                (i, n, p, s, "printed", "issued", data.begin, at, c, b, 0)
                for i, n, p, s, at, c, b in data.cards()
            ),
            columns=[
                "id",
                "number",
                "base_pct",
                "segment",
                "kind",
                "status",
                "created_at",
                "issued_at",
                "client_id",
                "bound_at",
                "bind_failures",
            ],
        )
        # Build the secondary indexes once after the load instead of row by row.
        for index in indexes:
            await conn.execute(f"DROP INDEX {index.name}")
        await conn.copy_records_to_table(
            "purchases",
            records=((*row[:6], "import", *row[6:]) for row in data.purchases()),
            columns=[
                "card_id",
                "amount",
                "discount_pct",
                "discount_amount",
                "paid_amount",
                "cashier_id",
                "source",
                "created_at",
                "voided_at",
            ],
        )
        for index in indexes:
            await conn.execute(str(CreateIndex(index).compile(dialect=dialect)))
        await conn.copy_records_to_table(
            "surveys",
            records=data.surveys(),
            columns=["client_id", "created_at", "score", "answered_at", "comment"],
        )
        for table in ("clients", "cards"):  # ids were given: move the sequences past them
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
    finally:
        await conn.close()
    await fill_totals(url)
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def _purchases_in(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(text("SELECT count(*) FROM purchases"))).scalar())
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- databases


@dataclass
class Target:
    engine: str  # sqlite | postgresql
    url: str


@contextlib.asynccontextmanager
async def throwaway_postgres() -> AsyncIterator[str]:
    """A fresh PostgreSQL server (tests.servers) and an empty `kpibench` database on it; the
    server and its files are removed afterwards."""
    import asyncpg

    from tests.servers import postgres

    with (
        tempfile.TemporaryDirectory(prefix="kpibench-pg-") as root,
        postgres(Path(root)) as admin_url,
    ):
        admin = await asyncpg.connect(_asyncpg_dsn(admin_url))
        try:
            await admin.execute("CREATE DATABASE kpibench")
        finally:
            await admin.close()
        yield admin_url.rsplit("/", 1)[0] + "/kpibench"


async def prepare(target: Target, cards: int, purchases: int) -> None:
    """Migrate the database and fill it, unless it holds purchases already (reused)."""
    await upgrade(target.url)
    existing = await _purchases_in(target.url)
    if existing:
        print(f"{target.engine}: reusing the database ({existing:,} purchases)")
        return
    t0 = time.perf_counter()
    if target.engine == "sqlite":
        path = Path(make_url(target.url).database or "")
        await asyncio.to_thread(generate, path, cards, purchases)
        await fill_totals(target.url)
    else:
        await generate_postgres(target.url, cards, purchases)
    print(
        f"{target.engine}: generated {cards:,} cards, {purchases:,} purchases over 2 years "
        f"in {time.perf_counter() - t0:.1f} s"
    )


# ----------------------------------------------------------------------------- timing


def _floor(session: Session) -> Any:
    return session.execute(text("SELECT count(*), sum(amount) FROM purchases")).one()


class Runner:
    """One engine's database, its `ReportService` and the timings of its runs."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.settings = load_settings(
            env_file=None, database_url=target.url, timezone="Europe/Moscow"
        )
        self.engine = create_engine(target.url)
        self.db = Database.of(self.engine)
        self.reports = ReportService(self.db, self.settings)
        self.timings: dict[str, list[float]] = {}

    async def run(self) -> None:
        """One run: the floor, the KPI set for a year, the digest."""
        from handlers.owner_reports import digest_message

        last = END.astimezone(self.settings.store.tz).date() - timedelta(days=1)
        first = last - timedelta(days=364)
        await self._timed("floor", self.db.report(_floor))
        await self._timed("kpi", self.reports.kpis(first, last))
        await self._timed("digest", digest_message(self.reports, END))

    async def _timed(self, name: str, work: Any) -> None:
        # Wall time and the process's CPU time (all threads: SQLite runs on the report lane);
        # CPU time is the steadier figure on a machine shared with other work, for SQLite.
        wall, cpu = time.perf_counter(), time.process_time()
        await work
        self.timings.setdefault(name, []).append(time.perf_counter() - wall)
        self.timings.setdefault(f"{name}_cpu", []).append(time.process_time() - cpu)

    def best(self) -> dict[str, float]:
        return {name: min(values) for name, values in self.timings.items()}

    async def close(self) -> None:
        await self.engine.dispose()


async def measure(targets: list[Target], repeat: int) -> list[Runner]:
    from bot.i18n import create_i18n

    runners = [Runner(target) for target in targets]
    i18n = create_i18n("ru")
    try:
        with i18n.context(), i18n.use_locale("ru"):
            for runner in runners:  # warm up: connections, caches, the first compile
                await runner.db.report(_floor)
            for _ in range(repeat):
                for runner in runners:  # alternate, so that drift hits every engine alike
                    await runner.run()
    finally:
        for runner in runners:
            await runner.close()
    return runners


async def _main(args: argparse.Namespace, tmp: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        targets = []
        if args.engine in ("sqlite", "both"):
            path = args.db or tmp / "bench.db"
            targets.append(Target("sqlite", f"sqlite+aiosqlite:///{path}"))
        if args.engine in ("postgresql", "both"):
            url = args.database_url or await stack.enter_async_context(throwaway_postgres())
            targets.append(Target("postgresql", url))
        for target in targets:
            await prepare(target, args.cards, args.purchases)
        runners = await measure(targets, args.repeat)
        # Timings first (tracemalloc slows Python down), then one traced pass for the peak.
        tracemalloc.start()
        await measure(targets, 1)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    report(runners, args, peak)


def report(runners: list[Runner], args: argparse.Namespace, peak: int) -> None:
    print(f"best of {args.repeat}, {args.cards:,} cards, {args.purchases:,} purchases")
    print("engine      query                     wall ms  ×floor    cpu ms")
    best = {runner.target.engine: runner.best() for runner in runners}
    for engine, figures in best.items():
        for name, label in (
            ("floor", "floor count/sum"),
            ("kpi", "KPI set, 1 year"),
            ("digest", "/digest render"),
        ):
            wall, cpu = figures[name], figures[f"{name}_cpu"]
            print(
                f"{engine:<11} {label:<24} {wall * 1000:8.1f} {wall / figures['floor']:7.2f}"
                f"  {cpu * 1000:8.1f}"
            )
    print("target: KPI set <= 5x the floor of its engine")
    if "sqlite" in best and "postgresql" in best:
        ratio = best["postgresql"]["kpi"] / best["sqlite"]["kpi"]
        print(f"PostgreSQL / SQLite, KPI set (wall): {ratio:.2f}x  (target <= 1.2x)")
    print(
        f"peak memory: tracemalloc {peak / 2**20:.1f} MB, max RSS {_rss_mb():.1f} MB "
        f"(of which {args.baseline:.1f} MB is the imported libraries; target < 300 MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.kpi")
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--engine",
        choices=("sqlite", "postgresql", "both"),
        help="sqlite (the default), postgresql, or both on the same data; PostgreSQL is a "
        "throwaway server (tests.servers) unless --database-url names a database",
    )
    parser.add_argument(
        "--database-url",
        dest="database_url",
        metavar="URL",
        help="the PostgreSQL database to use (postgresql+asyncpg://…; filled when it has no "
        "purchases, else reused); implies --engine postgresql unless --engine both",
    )
    parser.add_argument(
        "--db", type=Path, help="SQLite: keep the generated database here and reuse it next time"
    )
    args = parser.parse_args()
    if args.database_url and make_url(args.database_url).get_backend_name() != "postgresql":
        parser.error("--database-url takes a PostgreSQL URL (SQLite: --db PATH)")
    if args.engine is None:
        args.engine = "postgresql" if args.database_url else "sqlite"
    import handlers.owner_reports  # noqa: F401  (aiogram, matplotlib: the baseline RSS)

    args.baseline = _rss_mb()
    with tempfile.TemporaryDirectory(prefix="kpibench-") as tmp:
        asyncio.run(_main(args, Path(tmp)))


if __name__ == "__main__":
    main()
