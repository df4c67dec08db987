"""The fault test: a win-back sweep over 300 clients, a Bot API that answers random 429s, 5xx
and 403s, the sending process (`python -m bot jobs run deliveries`) SIGKILLed mid-way and
restarted → every eligible reachable client got exactly one offer message, and the ones who
blocked the bot are marked unreachable."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeTelegram, FaultResponse
from config import Settings
from db.database import Database
from db.models import Client, Delivery, DeliveryStatus, WinbackAssignment
from services import offers
from services.clock import utc_now
from services.delivery import OutboxMessage
from tests.conftest import FrozenClock, make_settings
from tests.engagement_helpers import (
    bot_for,
    bulk_clients,
    deliveries,
    fast_limiter,
    outbox_for,
    sender_for,
)

FIRST_TG_ID = 900_000
CLIENTS = 300
KILL_AT_SEND = 120


async def test_winback_survives_faults_and_a_kill(
    db: Database,
    tg: FakeTelegram,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    db_url: str,
    tmp_path: Path,
) -> None:
    settings: Settings = make_settings(db_url, winback_holdout_pct=10)
    now = utc_now()
    await bulk_clients(session, FIRST_TG_ID, CLIENTS, now - timedelta(days=100))
    result = await offers.winback_sweep(db, settings, now, random.Random(7))
    assert result.eligible == CLIENTS and result.control > 0
    offered_tg = {
        tg_id
        for (tg_id,) in (
            await session.execute(
                select(Client.tg_id)
                .join(WinbackAssignment, WinbackAssignment.client_id == Client.id)
                .where(WinbackAssignment.control.is_(False))
            )
        ).all()
    }
    blocked = set(random.Random(3).sample(sorted(offered_tg), 20))
    for tg_id in blocked:
        tg.block(tg_id)

    faults = random.Random(11)
    stop_accepting = asyncio.Event()
    state: dict[str, Any] = {"sends": 0, "killed": False, "429": 0, "5xx": 0}

    def hook(method: str, params: dict[str, Any]) -> FaultResponse | None:
        if method != "sendMessage":
            return None
        if state["killed"]:  # a dead process's request must not count as sent
            return FaultResponse(500)
        state["sends"] += 1
        if state["sends"] == KILL_AT_SEND:
            # From now on nothing is accepted; the kill lands as soon as the messages Telegram
            # accepted so far are recorded (the at-least-once instant between an accepted send
            # and its commit is documented in services.delivery, not tested here).
            state["killed"] = True
            stop_accepting.set()
            return FaultResponse(500)
        if state["sends"] in (30, 200):  # a couple of 429s: each pauses all sending 1 s
            state["429"] += 1
            return FaultResponse(429, retry_after=1)
        if faults.random() < 0.04:
            state["5xx"] += 1
            return FaultResponse(faults.choice([500, 502]))
        return None

    tg.set_fault_hook(hook)
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "BOT_TOKEN": tg.token,
        "TELEGRAM_API_URL": tg.base_url,
        "QUIET_HOURS": "",
        "TIMEZONE": "Europe/Moscow",
        "DELIVERY_RATE_GLOBAL": "400",
        "DELIVERY_RATE_CHAT": "50",
        "SCHEDULER_ENABLED": "false",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "jobs",
        "run",
        "deliveries",
        cwd=tmp_path,  # no developer .env
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    communicate = asyncio.ensure_future(proc.communicate())
    async with asyncio.timeout(120):
        refusing = asyncio.ensure_future(stop_accepting.wait())
        await asyncio.wait({communicate, refusing}, return_when=asyncio.FIRST_COMPLETED)
        refusing.cancel()
        while not communicate.done():
            recorded = await session.scalar(
                select(func.count()).where(Delivery.status == DeliveryStatus.SENT)
            )
            if recorded == len(tg.sent()):
                break
            await asyncio.sleep(0.02)
        if not communicate.done():
            proc.send_signal(signal.SIGKILL)
        _out, err = await communicate
    assert state["killed"], f"the sender finished before the kill: {err.decode()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    sent_before_restart = len(tg.sent())
    assert 0 < sent_before_restart < len(offered_tg) - len(blocked)

    # Restart: a new sender; time moves on past the dead sender's lease and every backoff.
    state["killed"] = False
    bot = bot_for(tg, settings)
    offset = timedelta(minutes=10)
    try:
        for _round in range(12):
            sender = sender_for(
                bot,
                sessionmaker,
                settings,
                lambda shift=offset: utc_now() + shift,
                limiter=fast_limiter(),
            )
            await sender.deliver_due()
            if not await deliveries(session, status=DeliveryStatus.PENDING):
                break
            offset += timedelta(hours=2)
    finally:
        await bot.session.close()

    per_chat = Counter(call.chat_id for call in tg.sent())
    reachable = offered_tg - blocked
    assert {chat for chat, n in per_chat.items() if n != 1} == set()  # nobody got two
    assert set(per_chat) == reachable  # everybody reachable got theirs; control got nothing
    rows = await deliveries(session)
    statuses = Counter(r.status for r in rows)
    assert statuses == {DeliveryStatus.SENT: len(reachable), DeliveryStatus.UNREACHABLE: 20}
    unreachable = set(
        (await session.scalars(select(Client.tg_id).where(Client.reachable.is_(False)))).all()
    )
    assert unreachable == blocked
    assert state["429"] >= 1 and state["5xx"] >= 1


# ----------------------------------------------------------- broken answers from the Bot API

HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@pytest.mark.manual_delivery
@pytest.mark.parametrize(
    "fault",
    [
        {"error_code": 502, "raw_body": HTML_502},
        {"error_code": 200, "raw_body": '{"ok": true, "res', "content_type": "application/json"},
        {"error_code": 502, "reset": True},
    ],
    ids=["html-502", "malformed-json", "dropped-connection"],
)
async def test_a_broken_answer_is_a_failed_attempt_and_the_pass_goes_on(
    tg: FakeTelegram,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    fault: dict[str, Any],
) -> None:
    """A proxy's HTML error page, a truncated JSON body (aiogram's ClientDecodeError, not a
    TelegramAPIError) or a dropped connection: the message is retried with backoff like a
    5xx, without a traceback, and the next message of the same pass still goes."""
    clock = FrozenClock()
    await outbox_for(sessionmaker, clock).post_many(
        [
            OutboxMessage(f"m{n}", "text", chat, {"text": f"message {n}"})
            for n, chat in enumerate((4001, 4002, 4003))
        ]
    )
    tg.fail_next("sendMessage", chat_id=4002, **fault)
    bot = bot_for(tg, settings)
    try:
        # One message at a time: the broken answer comes in the middle of the pass.
        sender = sender_for(
            bot, sessionmaker, settings, clock, limiter=fast_limiter(), concurrency=1
        )
        with caplog.at_level(logging.INFO):
            stats = await sender.deliver_due()
        assert stats.sent == 2 and stats.retried == 1 and stats.failed == 0
        assert sorted(c.chat_id for c in tg.sent()) == [4001, 4003]
        [broken] = await deliveries(session, chat_id=4002)
        assert broken.status == DeliveryStatus.PENDING and broken.attempts == 1
        assert broken.next_attempt_at == clock() + timedelta(seconds=1)  # backoff, not the lease
        assert broken.last_error
        assert not [r for r in caplog.records if r.exc_info], "no traceback for a broken answer"
        clock.advance(seconds=1)
        assert (await sender.deliver_due()).sent == 1
    finally:
        await bot.session.close()
    assert Counter(c.chat_id for c in tg.sent()) == {4001: 1, 4002: 1, 4003: 1}
    [row] = await deliveries(session, chat_id=4002)
    assert row.status == DeliveryStatus.SENT and row.attempts == 2
