"""After a sale is committed: one lock per receipt, and Telegram failures that must not read
as a failed sale."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramServerError,
)
from aiogram.types import (
    InlineKeyboardMarkup,
    Message,
)

from handlers.till.base import log


class ReceiptLocks:
    """One lock per receipt message (chat, message id), held while a ✅ or a void decides what
    the message shows and edits it: a late ✅ racing a ↩️ then edits either before the void
    (and the void's edit comes last) or after it (and reads the purchase as voided). Per
    process, the locks vanishing with their last holder; with several workers (`shared`: a
    lock by name in Redis, see bot/app.py) a cashier's ✅ and an owner's ↩️ may land on two
    workers, so the lock is theirs in common."""

    def __init__(
        self, shared: Callable[[str], contextlib.AbstractAsyncContextManager[None]] | None = None
    ) -> None:
        self.shared = shared
        self._locks: weakref.WeakValueDictionary[tuple[int, int], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @contextlib.asynccontextmanager
    async def hold(self, chat_id: int | None, message_id: int | None) -> AsyncIterator[None]:
        if chat_id is None or message_id is None:
            yield
            return
        if self.shared is not None:
            async with self.shared(f"receipt:{chat_id}:{message_id}"):
                yield
            return
        key = (chat_id, message_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            yield


# Telegram failing after the sale is committed (5xx, a dropped connection, a proxy's HTML page)
# must not read as "something went wrong": the cashier would ring the sale up again.
_TRANSIENT = (TelegramServerError, TelegramNetworkError, ClientDecodeError, TimeoutError)
AFTER_COMMIT_RETRIES = (0.5, 1.5)


async def after_commit(call: Callable[[], Awaitable[Any]], what: str) -> bool:
    """A Telegram call that reports something already recorded: retried on transient failures,
    never raised. False when it did not go through."""
    for delay in (0.0, *AFTER_COMMIT_RETRIES):
        if delay:
            await asyncio.sleep(delay)
        try:
            await call()
            return True
        except TelegramBadRequest as exc:
            if "not modified" in str(exc):  # a repeat that changes nothing: already shown
                return True
            log.warning("%s after the commit was refused: %s", what, exc)
            return False
        except _TRANSIENT as exc:
            log.info("%s after the commit failed (%r); retrying", what, exc)
        except TelegramAPIError as exc:
            log.warning("%s after the commit failed: %s", what, exc)
            return False
    log.warning("%s after the commit kept failing; giving up", what)
    return False


async def show_receipt(
    bot: Bot, message: Message, text: str, markup: InlineKeyboardMarkup | None
) -> None:
    """Turn the quote into the receipt; if Telegram keeps failing at that, send it anew."""
    if not await after_commit(
        lambda: message.edit_text(text, reply_markup=markup), "editing the receipt"
    ):
        await after_commit(
            lambda: bot.send_message(message.chat.id, text, reply_markup=markup),
            "sending the receipt anew",
        )
