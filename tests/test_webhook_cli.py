"""Webhook mode through the real entry point: `python -m bot run --webhook` in a subprocess
listens, registers the webhook only once it listens, refuses a request without the secret,
processes a retried update once, and exits cleanly on SIGTERM (what systemd sends)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp

from bot.demo.emulator import FakeTelegram
from config import PROJECT_ROOT
from tests.servers import free_port
from tests.test_webhook import PATH, SECRET, USER_ID, update


async def test_python_m_bot_run_webhook_serves_and_stops_on_sigterm(
    tg: FakeTelegram, db_url: str
) -> None:
    """The real entry point in a subprocess: listens, sets the webhook, answers, exits on TERM."""
    port = free_port()
    env = {
        **os.environ,
        "BOT_TOKEN": tg.token,
        "SECRET_KEY": "test-secret-key-0123456789abcdef",
        "TELEGRAM_API_URL": tg.base_url,
        "DATABASE_URL": db_url,  # already migrated: the start is quicker
        "WEBHOOK_URL": "https://bot.example.test",
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_PORT": str(port),
        "SCHEDULER_ENABLED": "false",
        "OWNER_IDS": "1001",
        "STAFF_CHAT_ID": "-1009000",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        "--webhook",
        cwd=PROJECT_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await tg.wait_for(lambda c: c.method == "setWebhook", timeout=60)
        url = f"http://127.0.0.1:{port}{PATH}"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=update(7)) as response:
                assert response.status == 403
            headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
            for _ in range(2):
                async with http.post(url, json=update(8), headers=headers) as response:
                    assert response.status == 200
        texts = [m.text or "" for m in tg.messages_in(USER_ID)]
        assert sum("what this bot can do" in t for t in texts) == 1
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=20)
        assert process.returncode == 0, output.decode()[-2000:]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
