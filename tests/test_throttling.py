"""Abuse limit: more than FLOOD_LIMIT updates in 10 s → ignored for a while, told once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import Call, FakeTelegram
from bot.throttling import FloodGuard, RedisFloodGuard
from config import Settings
from tests.conftest import OWNER_ID, REDIS_URL, App, FrozenClock, make_settings, running_app

LIMIT = 3


async def wait_count(tg: FakeTelegram, chat_id: int, text: str, count: int) -> None:
    """Until `count` bot messages containing `text` reached `chat_id` (replies may interleave)."""
    seen = 0

    def check(call: Call) -> bool:
        nonlocal seen
        if call.ok and call.chat_id == chat_id and text in (call.text or ""):
            seen += 1
        return seen >= count

    await tg._wait_call(check, 0, 10.0, f"{count} messages with {text!r}")


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_flood_guard_window_and_penalty() -> None:
    ticks = Ticks()
    guard = FloodGuard(3, window=10, penalty=30, clock=ticks)
    assert [guard.check(1) for _ in range(3)] == ["ok"] * 3
    assert guard.check(2) == "ok"  # per user
    assert guard.check(1) == "warn"
    assert guard.check(1) == "drop"
    ticks.now += 29
    assert guard.check(1) == "drop"
    ticks.now += 1.5
    assert guard.check(1) == "ok"  # penalty over, a fresh window
    # A steady pace under the limit is never throttled.
    for _ in range(50):
        ticks.now += 4
        assert guard.check(3) == "ok"


def test_flood_guard_forgets_idle_users() -> None:
    ticks = Ticks()
    guard = FloodGuard(3, clock=ticks)
    for user_id in range(999):
        guard.check(user_id)
    ticks.now += 100
    guard.check(5000)  # the 1000th check prunes
    assert len(guard) == 1


@pytest.fixture
def flood_settings(db_url: str) -> Settings:
    return make_settings(db_url, flood_limit=LIMIT)


@pytest.fixture
async def flood_app(
    tg: FakeTelegram,
    flood_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> AsyncIterator[App]:
    async with running_app(tg, flood_settings, sessionmaker, clock) as application:
        yield application


async def test_a_flooding_user_is_told_once_then_ignored(flood_app: App) -> None:
    tg = flood_app.tg
    user = tg.user(3501, language_code="en")
    for i in range(LIMIT + 5):
        await user.send(f"/help {i}")
    await wait_count(tg, user.id, "what this bot can do", LIMIT)
    await wait_count(tg, user.id, "Too many messages", 1)
    await tg.wait_for_idle()
    texts = [m.text for m in tg.messages_in(user.id)]
    warnings = [t for t in texts if "Too many messages" in t]
    assert warnings == ["Too many messages. Please wait 30 seconds."]
    assert sum("what this bot can do" in t for t in texts) == LIMIT

    # Others are not affected, and the warning speaks their language.
    other = tg.user(3502, language_code="et")
    await other.send("/help")
    assert "mida see bot oskab" in (await other.wait_message()).text
    for _ in range(LIMIT + 1):
        await other.send("/help")
    await other.wait_message("Liiga palju sõnumeid")


async def test_button_floods_get_one_alert(flood_app: App) -> None:
    tg = flood_app.tg
    user = tg.user(3503, language_code="ru")
    calls = [await user.press_data(1, "pv:keep", timeout=5) for _ in range(LIMIT + 1)]
    alert = calls[-1]
    assert "Слишком много сообщений" in alert.params.get("text", "")
    assert alert.params.get("show_alert") is True


async def test_owners_are_never_throttled(flood_app: App) -> None:
    tg = flood_app.tg
    owner = tg.user(OWNER_ID, language_code="en")
    for _ in range(LIMIT + 3):
        await owner.send("/help")
    await wait_count(tg, OWNER_ID, "/help", LIMIT + 3)
    await tg.wait_for_idle()
    texts = [m.text for m in tg.messages_in(OWNER_ID)]
    assert not any("Too many" in t for t in texts)
    assert len(texts) == LIMIT + 3


@pytest.mark.skipif(not REDIS_URL, reason="needs Redis (python -m tests.servers)")
async def test_several_workers_share_one_limit_through_redis() -> None:
    """With several workers an update lands on any of them: the flood limit is the bot's.
    Two guards (two processes) on one Redis: the hits add up, and exactly one warns."""
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    now = [1000.0]
    first, second = (RedisFloodGuard(redis, 4, clock=lambda: now[0]) for _ in range(2))
    try:
        verdicts = [await (first if i % 2 else second).verdict(77) for i in range(4)]
        assert verdicts == ["ok"] * 4
        crossing = await asyncio.gather(first.verdict(77), second.verdict(77))
        assert sorted(crossing) == ["drop", "warn"]  # the fifth and sixth hit: one warning
        assert await first.verdict(77) == "drop"  # the penalty holds on every worker
        assert await second.verdict(78) == "ok"  # other people are not affected
    finally:
        await redis.aclose()
