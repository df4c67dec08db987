"""QR codes in pictures people send: the till's photo scans and a customer's photo of a card.

One way to get from a message to the texts of its QR codes, so that both features check the
size Telegram reports before downloading and share the process's one-at-a-time decoder
(`services.qr_decode.QrReader`).
"""

from __future__ import annotations

from aiogram import Bot, F
from aiogram.types import Message

from handlers.filters import Match
from services.qr_decode import MAX_IMAGE_BYTES, ImageRejected, QrReader

# A photo, or an image sent as a file (uncompressed: what a scanner app or a screenshot gives).
IMAGE = Match(F.photo | F.document.mime_type.startswith("image/"))


async def qr_texts(message: Message, bot: Bot, reader: QrReader) -> list[str]:
    """The texts of the QR codes in the message's picture (empty when there is none);
    `ImageRejected` when it is too big or not an image."""
    media = message.photo[-1] if message.photo else message.document
    if media is None:
        return []
    if (media.file_size or 0) > MAX_IMAGE_BYTES:  # refused before downloading a byte
        raise ImageRejected("too_big")
    data = await bot.download(media.file_id)
    return [] if data is None else await reader.read(data.read())
