"""Photos of QR codes are untrusted input: a chat can send a 40-megapixel PNG that compresses to
kilobytes. The reader decodes one at a time and at a reduced size, refuses what is too big, and
still finds a card's code in a huge photo."""

from __future__ import annotations

import asyncio
import io
import threading

import pytest
import qrcode
from PIL import Image

from services import qr_decode
from services.qr_decode import ImageRejected, QrReader
from tests.conftest import CASHIER_ID, App
from tests.till_helpers import payload, seed_card

LINK = "https://t.me/loyalty_test_bot?start=c100045_abc"


def huge_png(text: str, mode: str = "RGBA", size: tuple[int, int] = (8000, 5000)) -> bytes:
    """40 megapixels, mostly white: a few hundred kilobytes of PNG."""
    image = Image.new(mode, size, "white")
    code = qrcode.make(text).get_image().convert(mode).resize((1600, 1600))
    image.paste(code, (size[0] // 2 - 800, size[1] // 2 - 800))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_six_huge_photos_at_once_are_decoded_one_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = QrReader()
    running = 0
    most = 0
    lock = threading.Lock()
    real = qr_decode.decode_qr

    def counting(data: bytes) -> list[str]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return real(data)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(qr_decode, "decode_qr", counting)
    data = huge_png(LINK)
    assert len(data) < qr_decode.MAX_IMAGE_BYTES
    results = await asyncio.gather(*(reader.read(data) for _ in range(6)))
    assert results == [[LINK]] * 6  # the code is still found after the reduction
    assert most == 1


def test_a_picture_over_the_pixel_limit_is_refused_before_decoding() -> None:
    data = huge_png("x", mode="L", size=(9000, 5000))  # 45 megapixels
    with pytest.raises(ImageRejected) as refused:
        qr_decode.decode_qr(data)
    assert refused.value.reason == "too_big"


async def test_a_huge_photo_at_the_till_still_finds_the_card(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    link = f"https://t.me/{app.tg.username}?start={payload(app.settings)}"
    await cashier.send_document(huge_png(link), "scan.png", mime_type="image/png")
    assert "100 045" in (await cashier.wait_message("Card")).text
