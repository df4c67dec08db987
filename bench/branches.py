"""Benchmark: a chain of branches — the whole chain's KPI set, the per-branch table and one
branch's /stats, on SQLite or PostgreSQL.

    .venv/bin/python -m bench.branches                                   # SQLite, 1M purchases
    .venv/bin/python -m bench.branches --database-url postgresql+asyncpg://…/brbench \\
        --purchases 10000000                                             # PostgreSQL, 10M

A chain of `--branches` (100) shops of unequal size (branch b draws a share ∝ 1/b^0.7 of the
cards and sales: the first shop is the biggest), `--cards` (100k) cards, each with a home
branch, and `--purchases` over two years: 80 % of a card's purchases in its home branch, the
rest anywhere (by the same shares); five cashiers per branch, one purchase in 200 voided,
20k survey answers about purchases, every branch's store totals for every day. The rows are
made by the database itself (one INSERT … SELECT over a number series per table: PostgreSQL's
`generate_series`, a recursive CTE on SQLite), from integer hashes of the row number, so the
same options give the same rows on both engines; the purchases' secondary indexes are built
after the load on PostgreSQL, then the cards' lifetime and monthly figures are counted
(`bench.kpi.fill_totals`, as the history import leaves them) and the statistics gathered.
A `--database-url` database is created when missing, filled when it has no purchases and
reused otherwise (`--db PATH` keeps the SQLite file the same way).

Measured in one process, best of `--repeat`, each as the bot runs it (a report unit,
`db.report`), for a year and for 30 days up to the data's last day:
  chain     `kpi.compute` of the whole chain (the `kpi` CLI's KPI set, with the impact);
  table     `kpi.by_branch` (the per-branch table of `kpi --json` and the digest);
  stats     /stats of the whole chain: `compute` of P and of the period before (impact=False);
  branch    /stats of one mid-size branch (the 50th of 100 by size): the same two, of it;
  largest   /stats of the largest branch (the first shop), for scale.
Targets: table ≤ 2 × chain; branch stats ≤ chain stats.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateIndex

from bench.kpi import DAYS, END, _asyncpg_dsn, _purchases_in, fill_totals
from config import load_settings
from db.database import Database
from db.engine import create_engine
from db.migrate import upgrade
from db.models import MAIN_BRANCH_ID, Purchase
from services import kpi

PRIME = 2147483629  # the hashes' modulus: h(i) = (i × a + b) mod PRIME, exact in 64 bits
SLOTS = 1000  # the branch shares as a table of slots (bench_pick)
SURVEYS = 20_000
HOME_SHARE = 8  # of 10 purchases in the card's home branch


def shares(branches: int) -> list[int]:
    """Slots per branch (∝ 1/b^0.7, summing to SLOTS, each ≥ 1): branch 1 is the biggest."""
    weights = [1 / (b**0.7) for b in range(1, branches + 1)]
    total = sum(weights)
    slots = [max(1, int(w / total * SLOTS)) for w in weights]
    slots[0] += SLOTS - sum(slots)
    return slots


def mid_branch(branches: int) -> int:
    """The branch in the middle by size (ids follow size)."""
    return branches // 2


class Sql:
    """The seeding statements' engine-dependent pieces."""

    def __init__(self, engine: str) -> None:
        self.pg = engine == "postgresql"
        self.begin = (END - timedelta(days=DAYS)).replace(tzinfo=None)

    def series(self, n: int) -> str:
        """A CTE prefix and the FROM item giving `i` = 1…n."""
        if self.pg:
            return "", f"generate_series(1::bigint, {n}::bigint) AS s(i)"
        return (
            f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) ",
            "s",
        )

    @staticmethod
    def h(expr: str, a: int, b: int) -> str:
        return f"(({expr}) * {a} + {b}) % {PRIME}"

    def at(self, seconds: str) -> str:
        """The data's first instant + `seconds` as the engine stores a UTC datetime."""
        start = self.begin.strftime("%Y-%m-%d %H:%M:%S")
        if self.pg:
            return f"(TIMESTAMP '{start}' + ({seconds}) * INTERVAL '1 second')"
        moved = f"strftime('%Y-%m-%d %H:%M:%S', '{start}', '+' || ({seconds}) || ' seconds')"
        return f"({moved} || '.000000')"

    def day(self, days: str) -> str:
        first = self.begin.date().isoformat()
        if self.pg:
            return f"(DATE '{first}' + ({days})::integer)"
        return f"date('{first}', '+' || ({days}) || ' days')"

    def true(self, flag: bool) -> str:
        return ("true" if flag else "false") if self.pg else ("1" if flag else "0")


def seed_statements(engine: str, branches: int, cards: int, purchases: int) -> list[str]:
    """Everything but the secondary indexes and the card totals, as SQL statements."""
    q = Sql(engine)
    h = q.h
    clients = (cards + 2) // 3
    seconds = DAYS * 86400
    stmts = [
        "CREATE TABLE bench_pick (k INTEGER PRIMARY KEY, branch_id INTEGER NOT NULL)",
    ]
    rows, k = [], 0
    for b, n in enumerate(shares(branches), start=1):
        for _ in range(n):
            rows.append(f"({k}, {b})")
            k += 1
    stmts.append(f"INSERT INTO bench_pick (k, branch_id) VALUES {', '.join(rows)}")
    with_, src = q.series(branches - 1)
    stmts.append(
        f"{with_}INSERT INTO branches (id, name, address, hours, phone, staff_chat_id, "
        f"created_at) SELECT i + 1, 'Branch ' || (i + 1), '', '', '', -1000000000000 - i, "
        f"{q.at('0')} FROM {src}"
    )
    with_, src = q.series(clients)
    stmts.append(
        f"{with_}INSERT INTO clients (id, tg_id, language, reachable, marketing_opt_out, "
        f"created_at) SELECT i, 500000 + i, 'ru', {q.true(True)}, {q.true(False)}, {q.at('0')} "
        f"FROM {src}"
    )
    with_, src = q.series(cards)
    issued = q.at(h("i", 48271, 11) + f" % {(DAYS - 30) * 86400}")
    stmts.append(
        f"{with_}INSERT INTO cards (id, number, base_pct, segment, kind, status, created_at, "
        f"issued_at, client_id, bound_at, bind_failures, branch_id) "
        f"SELECT i, CAST(100000 + i AS VARCHAR(16)), "
        f"CASE {h('i', 69621, 7)} % 3 WHEN 0 THEN 5 WHEN 1 THEN 7 ELSE 10 END, "
        f"CASE WHEN i % 10 = 1 THEN 'b2b' ELSE 'b2c' END, 'printed', 'issued', {q.at('0')}, "
        f"{issued}, CASE WHEN i % 3 = 1 THEN (i - 1) / 3 + 1 END, "
        f"CASE WHEN i % 3 = 1 THEN {issued} END, 0, p.branch_id "
        f"FROM {src} JOIN bench_pick p ON p.k = {h('i', 16807, 3)} % {SLOTS}"
    )
    with_, src = q.series(purchases)
    stmts.append(
        f"{with_}INSERT INTO purchases (id, card_id, amount, discount_pct, discount_amount, "
        f"paid_amount, cashier_id, source, created_at, voided_at, branch_id) "
        f"SELECT i, card_id, amount, pct, amount * pct / 100, amount - amount * pct / 100, "
        f"10000 + branch_id * 10 + {h('i', 39373, 5)} % 5, 'import', at, "
        f"CASE WHEN i % 200 = 0 THEN at END, branch_id FROM ("
        f"SELECT i, c.id AS card_id, 100 + {h('i', 1103515245 % PRIME, 12345)} % 1999900 "
        f"AS amount, c.base_pct AS pct, {q.at(h('i', 950706376, 1) + f' % {seconds}')} AS at, "
        f"CASE WHEN {h('i', 742938285, 9)} % 10 < {HOME_SHARE} THEN c.branch_id "
        f"ELSE p.branch_id END AS branch_id "
        f"FROM {src} JOIN cards c ON c.id = {h('i', 1583458089, 17)} % {cards} + 1 "
        f"JOIN bench_pick p ON p.k = {h('i', 784588716, 23)} % {SLOTS}) AS x"
    )
    step = max(1, purchases // SURVEYS)
    with_, src = q.series(min(SURVEYS, purchases))
    stmts.append(
        f"{with_}INSERT INTO surveys (client_id, purchase_id, created_at, sent_at, score, "
        f"answered_at) SELECT {h('i', 48271, 29)} % {clients} + 1, pu.id, pu.created_at, "
        f"pu.created_at, {h('i', 69621, 31)} % 11, pu.created_at "
        f"FROM {src} JOIN purchases pu ON pu.id = i * {step}"
    )
    with_, src = q.series(DAYS)
    stmts.append(
        f"{with_}INSERT INTO store_days (day, branch_id, revenue, checks, imported_at) "
        f"SELECT {q.day('i - 1')}, b.id, 50000000 + {h('i * 1000 + b.id', 16807, 1)} % 5000000,"
        f" 400 + {h('i * 1000 + b.id', 48271, 2)} % 100, {q.at('0')} "
        f"FROM {src} CROSS JOIN branches b"
    )
    stmts.append("DROP TABLE bench_pick")
    if q.pg:
        for table in ("clients", "cards", "purchases", "surveys", "branches"):
            stmts.append(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
    return stmts


async def ensure_database(url: str) -> None:
    """Create the PostgreSQL database of `url` when it does not exist yet."""
    import asyncpg

    name = make_url(url).database
    admin = await asyncpg.connect(_asyncpg_dsn(str(make_url(url).set(database="postgres"))))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def prepare(engine: str, url: str, args: argparse.Namespace) -> None:
    """Migrate and fill the database unless it holds purchases already (reused)."""
    await upgrade(url)
    existing = await _purchases_in(url)
    if existing:
        print(f"{engine}: reusing the database ({existing:,} purchases)")
        return
    t0 = time.perf_counter()
    statements = seed_statements(engine, args.branches, args.cards, args.purchases)
    db_engine = create_engine(url)
    indexes = list(Purchase.__table__.indexes)
    try:
        async with db_engine.begin() as conn:
            if engine == "postgresql":  # built once after the load, as pg_restore does
                for index in indexes:
                    await conn.execute(text(f"DROP INDEX {index.name}"))
            for statement in statements:
                await conn.exec_driver_sql(statement)
            if engine == "postgresql":
                dialect = postgresql.dialect()
                await conn.execute(text("SET maintenance_work_mem = '512MB'"))
                for index in indexes:
                    await conn.execute(text(str(CreateIndex(index).compile(dialect=dialect))))
    finally:
        await db_engine.dispose()
    loaded = time.perf_counter()
    await fill_totals(url)
    db_engine = create_engine(url)
    try:
        if engine == "postgresql":
            async with db_engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("VACUUM ANALYZE"))
        else:
            async with db_engine.begin() as conn:
                await conn.execute(text("ANALYZE"))
    finally:
        await db_engine.dispose()
    done = time.perf_counter()
    print(
        f"{engine}: generated {args.branches} branches, {args.cards:,} cards, "
        f"{args.purchases:,} purchases over 2 years in {done - t0:.1f} s "
        f"(rows {loaded - t0:.1f} s, card totals and statistics {done - loaded:.1f} s)"
    )


# ----------------------------------------------------------------------------- timing


def _stats(session: Session, settings: Any, first: date, last: date, branch_id: int | None) -> Any:
    """What /stats computes: the period and the one before it (no impact for the latter)."""
    current = kpi.compute(session, settings, first, last, branch_id=branch_id)
    previous = kpi.compute(
        session, settings, *kpi.previous_period(first, last), impact=False, branch_id=branch_id
    )
    return current, previous


class Runner:
    def __init__(self, url: str, branch_id: int) -> None:
        self.settings = load_settings(env_file=None, database_url=url, timezone="Europe/Moscow")
        self.engine = create_engine(url)
        self.db = Database.of(self.engine)
        self.branch_id = branch_id
        self.timings: dict[str, list[float]] = {}
        self.sizes: dict[str, Any] = {}

    async def run(self, first: date, last: date, label: str) -> None:
        s, b = self.settings, self.branch_id
        chain = await self._timed(f"chain {label}", self.db.report(kpi.compute, s, first, last))
        table = await self._timed(f"table {label}", self.db.report(kpi.by_branch, s, first, last))
        await self._timed(f"stats {label}", self.db.report(_stats, s, first, last, None))
        one, _prev = await self._timed(f"branch {label}", self.db.report(_stats, s, first, last, b))
        big, _prev = await self._timed(
            f"largest {label}", self.db.report(_stats, s, first, last, MAIN_BRANCH_ID)
        )
        self.sizes[label] = (chain.purchases, len(table), one.purchases, big.purchases)
        assert sum(row.purchases for row in table) == chain.purchases
        assert next(row for row in table if row.branch_id == b).purchases == one.purchases

    async def _timed(self, name: str, work: Any) -> Any:
        wall = time.perf_counter()
        result = await work
        self.timings.setdefault(name, []).append(time.perf_counter() - wall)
        return result

    def best(self, name: str) -> float:
        return min(self.timings[name])

    async def close(self) -> None:
        await self.engine.dispose()


async def measure(engine: str, url: str, args: argparse.Namespace) -> None:
    runner = Runner(url, mid_branch(args.branches))
    last = END.astimezone(runner.settings.store.tz).date() - timedelta(days=1)
    periods = {
        "1 year": (last - timedelta(days=364), last),
        "30 days": (last - timedelta(29), last),
    }
    try:
        await runner.db.report(kpi.by_branch, runner.settings, last, last)  # warm up
        for _ in range(args.repeat):
            for label, (first, end) in periods.items():
                await runner.run(first, end, label)
    finally:
        await runner.close()
    print(
        f"{engine}: best of {args.repeat}; {args.branches} branches, {args.cards:,} cards, "
        f"{args.purchases:,} purchases; one branch = branch {runner.branch_id}"
    )
    print("period    what".ljust(58) + "  wall ms   ratio  target")
    for label in periods:
        chain, rows, one, big = runner.sizes[label]
        c, t = runner.best(f"chain {label}"), runner.best(f"table {label}")
        s, b = runner.best(f"stats {label}"), runner.best(f"branch {label}")
        g = runner.best(f"largest {label}")
        mid = f"/stats, branch {runner.branch_id} ({one:,} purchases in P)"
        for what, wall, ratio in (
            (f"chain KPI set ({chain:,} purchases in P)", c, ""),
            (f"per-branch table ({rows} rows)", t, f"{t / c:5.2f}x  <= 2x chain KPI set"),
            ("/stats, whole chain", s, ""),
            (mid, b, f"{b / s:5.2f}x  <= 1x chain /stats"),
            (f"/stats, largest branch ({big:,} purchases in P)", g, f"{g / s:5.2f}x"),
        ):
            print((f"{label:<9} {what}".ljust(58) + f"{wall * 1000:9.1f}  {ratio}").rstrip())


async def _main(args: argparse.Namespace, tmp: Path) -> None:
    if args.database_url:
        engine, url = "postgresql", args.database_url
        await ensure_database(url)
    else:
        engine, url = "sqlite", f"sqlite+aiosqlite:///{args.db or tmp / 'branches.db'}"
    await prepare(engine, url, args)
    await measure(engine, url, args)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.branches")
    parser.add_argument("--branches", type=int, default=100)
    parser.add_argument("--cards", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--database-url",
        dest="database_url",
        metavar="URL",
        help="a PostgreSQL database (postgresql+asyncpg://…): created when missing, filled "
        "when it has no purchases, else reused",
    )
    parser.add_argument("--db", type=Path, help="SQLite: keep the database here and reuse it")
    args = parser.parse_args()
    if args.database_url and make_url(args.database_url).get_backend_name() != "postgresql":
        parser.error("--database-url takes a PostgreSQL URL (SQLite: --db PATH)")
    if args.branches < 2:
        parser.error("--branches: at least 2")
    with tempfile.TemporaryDirectory(prefix="branchbench-") as tmp:
        asyncio.run(_main(args, Path(tmp)))


if __name__ == "__main__":
    main()
