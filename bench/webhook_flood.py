"""Reproduction: slow clients against `python -m bot run --webhook` (the incident in numbers).

    .venv/bin/python -m bench.webhook_flood [--clients 1100] [--seconds 15] [--nofile 1024]

The real entry point runs in a subprocess with an open-file limit of `--nofile` (systemd's
default soft limit is 1024) against the fake Bot API. `--clients` connections each send half a
request head, then one more header line every 0.3 s, and reconnect 50 ms after the server
closes them. Reported: connections made and closed by the server, the bot's peak count of open
file descriptors (sampled every 20 ms from /proc), the size of its log and its most repeated
lines, and whether a real update sent after the flood is answered 200. Not a timing: the
figures to compare are the peak descriptors against the limit and the log size.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import re
import resource
import sys
import tempfile
from pathlib import Path

import aiohttp

from bot.demo.emulator import FakeTelegram
from config import PROJECT_ROOT
from db.migrate import upgrade
from tests.servers import free_port

SECRET = "bench-webhook-secret"
PATH = "/telegram/webhook"


def _open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


async def _slow_client(port: int, stop: asyncio.Event, stats: collections.Counter[str]) -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats["connect failed"] += 1
            await asyncio.sleep(0.2)
            continue
        stats["connected"] += 1
        try:
            writer.write(f"POST {PATH} HTTP/1.1\r\nHost: bot\r\n".encode())
            n = 0
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1024), timeout=0.3) == b"":
                        stats["closed by the server"] += 1
                        break
                writer.write(b"X-Slow-%d: 1\r\n" % n)
                n += 1
        except OSError:
            stats["reset by the server"] += 1
        finally:
            writer.close()
        await asyncio.sleep(0.05)


async def _post_update(port: int) -> int:
    update = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": 1_763_000_000,
            "chat": {"id": 42, "type": "private", "first_name": "A"},
            "from": {"id": 42, "is_bot": False, "first_name": "A", "language_code": "en"},
            "text": "/help",
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        },
    }
    async with aiohttp.ClientSession() as http:
        for _ in range(50):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.post(
                    f"http://127.0.0.1:{port}{PATH}",
                    json=update,
                    headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as response:
                    return response.status
            await asyncio.sleep(0.2)
    return 0


async def run(clients: int, seconds: float, nofile: int, extra_env: dict[str, str]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < clients + 512 <= hard:  # this process holds every client socket
        resource.setrlimit(resource.RLIMIT_NOFILE, (clients + 512, hard))
    workdir = Path(tempfile.mkdtemp(prefix="webhook-flood-"))
    db_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    await upgrade(db_url)
    port = free_port()
    async with FakeTelegram() as tg:
        env = {
            **os.environ,
            "BOT_TOKEN": tg.token,
            "SECRET_KEY": "bench-secret-key-0123456789abcdef",
            "TELEGRAM_API_URL": tg.base_url,
            "DATABASE_URL": db_url,
            "WEBHOOK_URL": "https://bot.example.test",
            "WEBHOOK_SECRET": SECRET,
            "WEBHOOK_PORT": str(port),
            "SCHEDULER_ENABLED": "false",
            "OWNER_IDS": "1001",
            "STAFF_CHAT_ID": "-1009000",
            **extra_env,
        }
        launch = (
            "import resource, sys\n"
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}))\n"
            "from bot.cli import main\n"
            "sys.exit(main(['run', '--webhook']))\n"
        )
        log_path = workdir / "bot.log"
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                launch,
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
            )
        try:
            await tg.wait_for(lambda c: c.method == "setWebhook", timeout=60)
            await asyncio.sleep(0.2)
            idle = _open_fds(process.pid)
            stop = asyncio.Event()
            stats: collections.Counter[str] = collections.Counter()
            tasks = [asyncio.create_task(_slow_client(port, stop, stats)) for _ in range(clients)]
            peak = idle
            loop = asyncio.get_running_loop()
            until = loop.time() + seconds
            while loop.time() < until:
                peak = max(peak, _open_fds(process.pid))
                await asyncio.sleep(0.02)
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            status = await _post_update(port)
            process.terminate()
            await asyncio.wait_for(process.wait(), timeout=30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    log = log_path.read_bytes()
    lines = log.decode(errors="replace").splitlines()
    print(
        f"{clients} slow clients for {seconds:g} s, open-file limit {nofile}: "
        f"{dict(stats)}\n"
        f"bot descriptors: {idle} idle, peak {peak} (limit {nofile})\n"
        f"bot log: {len(log):,} bytes, {len(lines):,} lines; "
        f"a real update afterwards: {status or 'no answer'}\n"
        "most repeated log lines:"
    )
    timestamp = re.compile(r"^[\d-]+ [\d:,]+Z ")
    for line, count in collections.Counter(timestamp.sub("", x)[:110] for x in lines).most_common(
        6
    ):
        print(f"  {count:>7,}  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1100)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--nofile", type=int, default=1024, help="the bot's open-file limit")
    parser.add_argument(
        "--set", action="append", default=[], metavar="VAR=VALUE", help="extra bot setting"
    )
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.set)
    asyncio.run(run(args.clients, args.seconds, args.nofile, extra))


if __name__ == "__main__":
    main()
