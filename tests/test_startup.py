"""The first start as an operator meets it, through the real entry point in a subprocess:
a token Telegram refuses and an unreachable Bot API are one line each (no traceback), and a
bot without owners or a staff group starts but says, once, what will not work."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

from bot.demo.emulator import FakeTelegram
from config import PROJECT_ROOT

SECRET_KEY = "test-secret-key-0123456789abcdef"


def _env(db_url: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"OWNER_IDS", "STAFF_CHAT_ID"}}
    env.update(
        PYTHONPATH=str(PROJECT_ROOT),
        DATABASE_URL=db_url,  # already migrated: the start is quicker
        SECRET_KEY=SECRET_KEY,
        SCHEDULER_ENABLED="false",
    )
    env.update(settings)
    return env


async def _run_to_exit(env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=PROJECT_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe is closed


async def test_a_token_telegram_refuses_is_one_line(tg: FakeTelegram, db_url: str) -> None:
    wrong = "123456789:AAWrongWrongWrongWrongWrongWrongWro"
    env = _env(db_url, BOT_TOKEN=wrong, TELEGRAM_API_URL=tg.base_url)
    code, stdout, stderr = await _run_to_exit(env)
    assert code == 2, stderr
    assert stdout == ""
    assert stderr.splitlines() == [
        "error: Telegram refused BOT_TOKEN (401 Unauthorized): the token is wrong or was "
        "revoked; copy the current one from @BotFather (/mybots → your bot → API Token)"
    ]
    assert [c.method for c in tg.calls] == ["getMe"]  # asked once, nothing else attempted


async def test_no_route_to_the_bot_api_is_one_line_naming_the_url(db_url: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    token = "123456789:AASecretSecretSecretSecretSecretSec"
    code, stdout, stderr = await _run_to_exit(_env(db_url, BOT_TOKEN=token, TELEGRAM_API_URL=url))
    assert code == 1, stderr
    assert stdout == ""
    (line,) = stderr.splitlines()
    assert line.startswith(f"error: cannot reach the Telegram Bot API at {url}: ")
    assert line.endswith("; check the network and TELEGRAM_API_URL")
    assert "Cannot connect to host" in line
    assert "AASecret" not in line


async def test_a_server_that_is_not_the_bot_api_is_one_line(db_url: str) -> None:
    from aiohttp import web

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>captive portal</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", html)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        url = f"http://127.0.0.1:{port}"
        env = _env(db_url, BOT_TOKEN="1:x", TELEGRAM_API_URL=url)
        code, _, stderr = await _run_to_exit(env)
    finally:
        await runner.cleanup()
    assert code == 1, stderr
    assert stderr.splitlines() == [
        f"error: {url} did not answer like a Telegram Bot API server; check TELEGRAM_API_URL"
    ]


OWNERS_WARNING = "OWNER_IDS is empty: nobody is an owner"
STAFF_WARNING = "STAFF_CHAT_ID is empty: there are no cashiers"


async def _start_and_stop(tg: FakeTelegram, env: dict[str, str]) -> str:
    """Start the bot, check that it answers, stop it with Ctrl+C; its whole output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=PROJECT_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await tg.wait_for(lambda call: call.method == "getUpdates", timeout=60)
        user = tg.user(4242, language_code="en")
        await user.send("/help")
        await user.wait_message(timeout=20)  # it runs
        process.send_signal(signal.SIGINT)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, output.decode()[-2000:]
    return output.decode()


async def test_no_owners_and_no_staff_group_warn_once_and_the_bot_runs(
    tg: FakeTelegram, db_url: str
) -> None:
    output = await _start_and_stop(
        tg, _env(db_url, BOT_TOKEN=tg.token, TELEGRAM_API_URL=tg.base_url)
    )
    warnings = [line for line in output.splitlines() if " WARNING bot.commands.run: " in line]
    assert len(warnings) == 2, output
    assert OWNERS_WARNING in warnings[0]
    assert "the weekly digest or the owner alerts" in warnings[0]
    assert STAFF_WARNING in warnings[1]
    assert "only owners can record sales" in warnings[1]
