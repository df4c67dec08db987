"""Benchmark: till sales through several webhook workers on PostgreSQL + Redis.

    .venv/bin/python -m bench.workers [--sales 40] [--cashiers 6] [--workers 1,3]
        [--database-url postgresql+asyncpg://…/postgres --redis-url redis://…]

A chain runs `python -m bot run --webhook` several times behind a reverse proxy. This starts
that for real: N worker processes on one PostgreSQL database and one Redis (throwaway servers
from tests/servers.py unless URLs are given; the role must be allowed to create databases),
the fake Bot API of the tests pushing updates to them round-robin, and cashiers making
complete sales at once — the QR payload pasted, the amount, ✅ — with bound customers, so every
sale also queues the customer's receipt and the staff-chat line, which the leader sends.

Reported per worker count: sales per second over the whole run, and each sale's time from the
scan to the ✅'s answer at the median, p95 and p99. Each count gets a fresh database. The
1-worker run is the floor the others are read against: on one machine the workers share its
cores, so more workers buy resilience (any of them can die) more than speed; on several
machines they add up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
from sqlalchemy.engine import make_url

from bench.sale_flow import FIRST_CARD, FIRST_CASHIER, SECRET, STAFF_CHAT_ID, seed
from bot.demo.emulator import FakeTelegram, FakeUser
from config import PROJECT_ROOT
from services import qr_payload
from tests import servers

WEBHOOK_SECRET = "bench-workers-secret"
PATH = "/telegram/webhook"


async def _fresh_database(server_url: str, name: str) -> str:
    url = make_url(server_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await connection.execute(f"CREATE DATABASE {name}")
    finally:
        await connection.close()
    return url.set(database=name).render_as_string(hide_password=False)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def _start_worker(env: dict[str, str], port: int, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            "--webhook",
            cwd=PROJECT_ROOT,
            env={**env, "WEBHOOK_PORT": str(port)},
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}{PATH}"
    async with asyncio.timeout(90), aiohttp.ClientSession() as http:
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"worker on {port} exited: {_tail(log)}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.post(url, json={}) as answer:
                    if answer.status == 403:  # listening (and refusing a request without secret)
                        return process
            await asyncio.sleep(0.2)


async def _cashier(cashier: FakeUser, numbers: list[str], times: list[float]) -> None:
    for number in numbers:
        started = time.perf_counter()
        await cashier.send(qr_payload.sign(SECRET, number))
        await cashier.wait_message("сумму покупки", timeout=60)
        await cashier.send("2 500")
        quote = await cashier.wait_message("К оплате", timeout=60)
        await cashier.press(quote, "✅", timeout=60)
        times.append(time.perf_counter() - started)


async def run(
    server_url: str, redis_url: str, workers: int, cashiers: int, sales: int, root: Path
) -> tuple[float, list[float]]:
    """Sales/s and the per-sale times with `workers` worker processes."""
    db_url = await _fresh_database(server_url, f"bench_workers_{workers}")
    await seed(db_url, cashiers * sales)
    tg = FakeTelegram()
    await tg.start()
    env = {
        **os.environ,
        "BOT_TOKEN": tg.token,
        "SECRET_KEY": SECRET,
        "TELEGRAM_API_URL": tg.base_url,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "WEBHOOK_URL": "https://bot.example.test",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "OWNER_IDS": "1001",
        "STAFF_CHAT_ID": str(STAFF_CHAT_ID),
        "SCHEDULER_ENABLED": "false",  # the leader sends; no jobs during the measurement
        "QUIET_HOURS": "",
        "FLOOD_LIMIT": "1000000",
        "LOG_LEVEL": "WARNING",
        "BACKUP_DIR": str(root / "backups"),
    }
    processes: list[asyncio.subprocess.Process] = []
    try:
        ports = [servers.free_port() for _ in range(workers)]
        processes = list(
            await asyncio.gather(
                *(_start_worker(env, p, root / f"w{workers}-{p}.log") for p in ports)
            )
        )
        tg.start_webhook_delivery([f"http://127.0.0.1:{p}{PATH}" for p in ports], WEBHOOK_SECRET)
        users = []
        for i in range(cashiers):
            tg.set_member(STAFF_CHAT_ID, FIRST_CASHIER + i, "member")
            users.append(tg.user(FIRST_CASHIER + i, f"Cashier{i}", language_code="ru"))
        numbers = [str(FIRST_CARD + n) for n in range(cashiers * sales)]
        times: list[float] = []
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _cashier(user, numbers[i * sales : (i + 1) * sales], times)
                for i, user in enumerate(users)
            )
        )
        elapsed = time.perf_counter() - started
        return len(times) / elapsed, times
    finally:
        tg.stop_webhook_delivery()
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
        await tg.stop()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(args: argparse.Namespace, server_url: str, redis_url: str, root: Path) -> None:
    counts = [int(n) for n in args.workers.split(",")]
    print(f"{args.cashiers} cashiers × {args.sales} sales; PostgreSQL + Redis, webhook workers")
    print(f"{'workers':>8} {'sales/s':>8} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7}")
    for count in counts:
        rate, times = await run(server_url, redis_url, count, args.cashiers, args.sales, root)
        print(
            f"{count:>8} {rate:>8.1f} {statistics.median(times):>7.3f} "
            f"{_percentile(times, 0.95):>7.3f} {_percentile(times, 0.99):>7.3f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sales", type=int, default=40, help="sales per cashier")
    parser.add_argument("--cashiers", type=int, default=6)
    parser.add_argument("--workers", default="1,3", help="worker counts to run, e.g. 1,3")
    parser.add_argument("--database-url", help="a PostgreSQL server (its role creates databases)")
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # the throwaway servers run as nobody: they must reach root / "s"
        (root / "s").mkdir()
        with contextlib.ExitStack() as stack:
            server_url = args.database_url or stack.enter_context(servers.postgres(root / "s"))
            redis_url = args.redis_url or stack.enter_context(servers.redis(root / "s"))
            asyncio.run(measure(args, server_url, redis_url, root))


if __name__ == "__main__":
    main()
