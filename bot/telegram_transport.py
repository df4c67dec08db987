"""The delivery sender's way out: `services.delivery.Transport` over aiogram's Bot API client.

The domain hands over a rendered message as plain data (text, rows of buttons with their
callback data, an optional photo); this turns it into a Bot API call and what Telegram answers
into the sender's outcomes:

* 429 → `RetryAfter` (every send pauses, then the same message goes again);
* 403 → `Unreachable` (the user blocked the bot, the bot left the group);
* 5xx, network errors, timeouts and answers that are not the Bot API's JSON (a proxy's HTML
  error page, a truncated body: aiogram's `ClientDecodeError`) → `TemporaryFailure`: the
  message may not have gone out, so it is tried again later;
* any other API error (400 & co) → `Rejected`: sending it again would not help.
"""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup

from services.delivery import (
    Rejected,
    Rendered,
    RetryAfter,
    TemporaryFailure,
    Unreachable,
)

log = logging.getLogger(__name__)


def keyboard(message: Rendered) -> InlineKeyboardMarkup | None:
    """The message's buttons as an inline keyboard (None without buttons)."""
    if not message.buttons:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=button.text, callback_data=button.data) for button in row]
            for row in message.buttons
        ]
    )


class TelegramTransport:
    """`services.delivery.Transport` through the bot's `Bot`."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def send(self, chat_id: int, message: Rendered) -> int:
        try:
            if message.photo is not None:
                sent = await self.bot.send_photo(
                    chat_id,
                    BufferedInputFile(message.photo, message.photo_name),
                    caption=message.text,
                    reply_markup=keyboard(message),
                )
            else:
                sent = await self.bot.send_message(
                    chat_id, message.text, reply_markup=keyboard(message)
                )
        except TelegramRetryAfter as exc:
            raise RetryAfter(exc.retry_after, str(exc)) from exc
        except TelegramForbiddenError as exc:
            raise Unreachable(str(exc)) from exc
        except (TelegramServerError, TelegramNetworkError, TimeoutError) as exc:
            raise TemporaryFailure(repr(exc)) from exc
        except ClientDecodeError as exc:
            log.warning("sending to %s: the Bot API's answer was not JSON", chat_id)
            raise TemporaryFailure(f"ClientDecodeError: {exc.message}") from exc
        except TelegramAPIError as exc:
            raise Rejected(str(exc)) from exc
        return sent.message_id
