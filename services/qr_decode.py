"""Read a QR code from a photo the cashier sent (the customer's phone screen or a printed card).

The image comes from a chat, so it is untrusted: the byte size is checked first, then the pixel
count from the header (`Image.open` is lazy and reads only the header), and only then is the
image decoded. Pillow's own decompression-bomb guard raises for absurd sizes too. zxing-cpp
does the decoding (it finds QR codes at any angle, inverted or small).

Decoding is the one thing a chat can make expensive: a 40-megapixel PNG compresses to a few
kilobytes but decodes to 160 MB of pixels, and six sent at once took the process from 277 MB to
2 GB. `QrReader` therefore decodes one photo at a time (others wait their turn), and each is
brought down to `DECODE_MAX_SIDE` as early as its format allows (JPEG decodes at a reduced
scale; other formats are reduced right after loading, the full-size pixels freed at once).
"""

from __future__ import annotations

import asyncio
import io
import warnings
from concurrent.futures import ThreadPoolExecutor

import zxingcpp
from PIL import Image, UnidentifiedImageError

from services.errors import DomainError

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
# Large photos are shrunk before decoding: a QR filling part of a phone photo stays readable
# and decoding a 40-megapixel image would take seconds.
DECODE_MAX_SIDE = 2000


class ImageRejected(DomainError):
    """The photo cannot be read: `reason` is `too_big` or `not_image`."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"image rejected: {reason}")
        self.reason = reason


class QrReader:
    """Decodes photos on its own worker threads, at most `concurrency` at a time (one by
    default: a decode uses one core and up to ~200 MB for the largest accepted image).

    Its own threads rather than the loop's default executor: the C allocator keeps a memory
    arena per thread, so big decodes spread over many threads each leave their arena's pages
    resident; on the same thread the next decode reuses them."""

    def __init__(self, concurrency: int = 1) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._threads = ThreadPoolExecutor(concurrency, thread_name_prefix="qr-decode")
        self.concurrency = concurrency

    async def read(self, data: bytes) -> list[str]:
        """Texts of the QR codes in the image; `ImageRejected` for an unusable one."""
        if len(data) > MAX_IMAGE_BYTES:  # refused before waiting for a slot
            raise ImageRejected("too_big")
        async with self._slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._threads, decode_qr, data)

    def close(self) -> None:
        """Let the worker thread end once it is idle (on the dispatcher's shutdown)."""
        self._threads.shutdown(wait=False)


def decode_qr(data: bytes) -> list[str]:
    """Texts of the QR codes found in the image (empty when none); `ImageRejected` for bad input."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageRejected("too_big")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageRejected("too_big")
            image.draft("L", (DECODE_MAX_SIDE, DECODE_MAX_SIDE))  # JPEG: decode at reduced scale
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("too_big") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageRejected("not_image") from exc
    # Grey first (a quarter of RGBA's pixels; reducing RGBA would first copy it premultiplied),
    # then smaller; each full-size buffer is freed as soon as the next one exists.
    if image.mode != "L":
        image = image.convert("L")
    if max(image.size) > DECODE_MAX_SIDE:
        image = image.reduce(-(-max(image.size) // DECODE_MAX_SIDE))
    results = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    return [result.text for result in results if result.text]
