"""Slow clients against the real `python -m bot run --webhook` in a subprocess: hundreds of
connections that send half a request head and then trickle, reconnecting whenever they are
closed. The process has fewer file descriptors than there are attackers, as on the server
where 1,100 such connections used them all up and asyncio logged a traceback per failed
accept() (168 MB in 50 s). With WEBHOOK_MAX_CONNECTIONS the process keeps its descriptors,
its log stays a few lines, and a real update still gets through afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.demo.emulator import FakeTelegram
from bot.webhook import BACKLOG
from config import PROJECT_ROOT
from tests.servers import free_port
from tests.test_webhook import PATH, SECRET, USER_ID, update

ATTACKERS = 500
NOFILE = 450  # the bot's open-file limit (soft and hard): fewer than ATTACKERS
CAP = 8  # WEBHOOK_MAX_CONNECTIONS; 8 + the reserve of 384 fit in NOFILE
ATTACK_SECONDS = 4.0  # several rounds of WEBHOOK_REQUEST_TIMEOUT=1
# The bot with a lower open-file limit, like a systemd unit with LimitNOFILE=450.
LAUNCH = (
    "import resource, sys\n"
    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({NOFILE}, {NOFILE}))\n"
    "from bot.cli import main\n"
    "sys.exit(main(['run', '--webhook']))\n"
)


@pytest.fixture
def room_for_attackers() -> Iterator[None]:
    """This test process holds every attacking socket: make sure it may."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = ATTACKERS + 512
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:  # the process is gone, or /proc is not there
        return 0


async def slow_client(port: int, stop: asyncio.Event) -> None:
    """Half a request head, then one more header line now and then; again when closed."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        try:
            writer.write(f"POST {PATH} HTTP/1.1\r\nHost: bot\r\n".encode())
            n = 0
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1024), timeout=0.3) == b"":
                        break  # closed by the server
                writer.write(b"X-Slow-%d: 1\r\n" % n)
                n += 1
        except OSError:  # reset by the server
            pass
        finally:
            writer.close()
        await asyncio.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
async def test_slow_clients_neither_exhaust_descriptors_nor_flood_the_log(
    tg: FakeTelegram, db_url: str, tmp_path: Path, room_for_attackers: None
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BOT_TOKEN": tg.token,
        "SECRET_KEY": "test-secret-key-0123456789abcdef",
        "TELEGRAM_API_URL": tg.base_url,
        "DATABASE_URL": db_url,
        "WEBHOOK_URL": "https://bot.example.test",
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_PORT": str(port),
        "WEBHOOK_MAX_CONNECTIONS": str(CAP),
        "WEBHOOK_REQUEST_TIMEOUT": "1",
        "SCHEDULER_ENABLED": "false",
        "OWNER_IDS": "1001",
        "STAFF_CHAT_ID": "-1009000",
    }
    log_path = tmp_path / "bot.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            LAUNCH,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        await tg.wait_for(lambda c: c.method == "setWebhook", timeout=60)
        await asyncio.sleep(0.2)  # past "listening"
        before = open_fds(process.pid)

        stop = asyncio.Event()
        attackers = [asyncio.create_task(slow_client(port, stop)) for _ in range(ATTACKERS)]
        peak = before
        loop = asyncio.get_running_loop()
        until = loop.time() + ATTACK_SECONDS
        while loop.time() < until:
            peak = max(peak, open_fds(process.pid))
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*attackers), timeout=30)

        # The cap plus, at worst, a few accept() batches of refused connections being closed.
        assert peak <= before + CAP + 4 * BACKLOG, (before, peak)

        # Telegram retries until it gets through; the attackers' connections are closing.
        status = 0
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.post(
                        f"http://127.0.0.1:{port}{PATH}",
                        json=update(5),
                        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
                    ) as response:
                        status = response.status
                        break
                await asyncio.sleep(0.1)
        assert status == 200
        texts = [m.text or "" for m in tg.messages_in(USER_ID)]
        assert sum("what this bot can do" in t for t in texts) == 1

        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=20)
        log = log_path.read_text(errors="replace")
        assert process.returncode == 0, log[-2000:]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "Traceback" not in log, log[-3000:]
    assert len(log) < 10_000, log[-3000:]  # a few lines, not one per connection
    assert "connection refused" in log
