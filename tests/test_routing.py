"""Routing rules that hold for every router: nothing is handed to a worker thread."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.dispatcher.event.handler import CallableObject
from aiogram.types import Message, Update

from handlers import feature_routers
from handlers.filters import Match


def _callables(router: Router) -> list[tuple[str, CallableObject]]:
    found: list[tuple[str, CallableObject]] = []
    for name, observer in router.observers.items():
        # Router-level filters (`router.message.filter(...)`) live in the observer's own
        # handler object; aiogram has no public accessor for them.
        for item in observer._handler.filters or []:
            found.append((f"{router.name}.{name} router filter {item.callback!r}", item))
        for handler in observer.handlers:
            label = f"{router.name}.{name} {handler.callback.__name__}"
            found.append((label, handler))
            for item in handler.filters or []:
                found.append((f"{label} filter {item.callback!r}", item))
    return found


def test_no_filter_or_handler_runs_in_a_worker_thread() -> None:
    """aiogram runs a sync callable (a bare `F` expression, a `State`) via asyncio.to_thread:
    two thread switches per check. Every router writes `Match(F…)` and `StateFilter(…)`."""
    routers = feature_routers()
    offenders = [
        label for router in routers for label, item in _callables(router) if not item.awaitable
    ]
    assert offenders == []
    assert sum(len(_callables(router)) for router in routers) > 50  # the walk saw them all


async def test_match_gives_the_same_answers_as_the_bare_expression() -> None:
    text = Message.model_validate(
        {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "text": "/sale 12"}
    )
    photo = Message.model_validate(
        {"message_id": 2, "date": 0, "chat": {"id": -5, "type": "group"}, "photo": []}
    )
    for magic in (
        F.text,
        ~F.text.startswith("/"),
        F.chat.type == "private",
        F.text.regexp(r"\d+"),
        F.text.as_("raw"),
    ):
        for message in (text, photo):
            assert await Match(magic)(message) == magic.resolve(message)
    assert await (~Match(F.text))(photo) is True


@pytest.mark.parametrize("use_match", [True, False])
async def test_a_bare_magic_filter_really_goes_to_a_thread(
    use_match: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards the premise of `Match`: should aiogram stop using threads, this says so."""
    threads: list[object] = []
    real = asyncio.to_thread

    async def spy(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        threads.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    router = Router()
    answers: list[str] = []

    @router.message(Match(F.text) if use_match else F.text)
    async def echo(message: Message) -> None:
        answers.append(message.text or "")

    dp = Dispatcher()
    dp.include_router(router)
    bot = Bot("123456:TEST")  # the handler makes no API call
    message = Message.model_validate(
        {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "text": "hi"}
    )
    await dp.feed_update(bot, Update(update_id=1, message=message))
    await bot.session.close()
    assert answers == ["hi"]
    assert threads == [] if use_match else len(threads) == 1
