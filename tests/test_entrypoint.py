"""`python -m bot run` as the owner starts it: refuses without a token, else migrates and polls."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from bot.demo.emulator import FakeTelegram
from config import PROJECT_ROOT


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"BOT_TOKEN", "DATABASE_URL"}}
    env.update(PYTHONPATH=str(PROJECT_ROOT), DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/b.db")
    env.update(extra)
    return env


def test_run_without_env_file_explains_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: BOT_TOKEN is empty: to try the bot without Telegram, run `make demo`; to run "
        "it, copy .env.example to .env, get a token from @BotFather and set BOT_TOKEN, "
        "SECRET_KEY, OWNER_IDS and STAFF_CHAT_ID",
    ]
    assert not (tmp_path / "b.db").exists()


def test_run_reports_every_bad_setting_in_one_go(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "BOT_TOKEN=123456:ABC\nSECRET_KEY=short\nOWNER_IDS=me\nSTAFF_CHAT_ID=staff\n"
        "TIMEZONE=Europe/Tallin\nMAX_PURCHASE=lots\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "SECRET_KEY must be at least 16 characters (it signs the QR codes); generate one with",
        "Invalid setting OWNER_IDS",
        "Invalid setting STAFF_CHAT_ID",
        "Invalid setting TIMEZONE",
        "Invalid setting MAX_PURCHASE",
    ], result.stderr
    assert lines[4] == "error: Invalid setting MAX_PURCHASE: expected a number such as 1234.50"
    assert not (tmp_path / "b.db").exists()


def test_run_reads_env_file_migrates_and_answers(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FakeTelegram() as tg:
            (tmp_path / ".env").write_text(
                f"BOT_TOKEN={tg.token}\nTELEGRAM_API_URL={tg.base_url}\n"
                "SECRET_KEY=0123456789abcdef0123\nOWNER_IDS=1\nSCHEDULER_ENABLED=false\n"
                "STORE_NAME=Corner Shop\n",
                encoding="utf-8",
            )
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                cwd=tmp_path,
                env=_env(tmp_path),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                await tg.wait_for(lambda call: call.method == "getUpdates", timeout=60)
                user = tg.user(4242, language_code="en")
                await user.send("/help")
                reply = await user.wait_message(timeout=20)
                assert "Corner Shop" in reply.text
            finally:
                process.send_signal(signal.SIGINT)
                output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
            assert process.returncode == 0, output.decode()
            text = output.decode()
            # OWNER_IDS is set, STAFF_CHAT_ID is not: only the staff group's warning.
            assert "OWNER_IDS is empty" not in text
            assert text.count("WARNING bot.commands.run: STAFF_CHAT_ID is empty") == 1, text
            # The migration says what it did, without alembic's dialect preamble.
            assert "Running upgrade  -> 0001" in text, text
            assert "Context impl" not in text and "Will assume" not in text, text

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / "b.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() is not None
