"""Read a QR code from a photo the cashier sent (the customer's phone screen or a printed card).

The image comes from a chat, so it is untrusted: the byte size is checked first, then the pixel
count from the header (`Image.open` is lazy and reads only the header), and only then is the
image decoded. Pillow's own decompression-bomb guard raises for absurd sizes too. zxing-cpp
does the decoding (it finds QR codes at any angle, inverted or small).
"""

from __future__ import annotations

import io
import warnings

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
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    if max(image.size) > DECODE_MAX_SIDE:
        image.thumbnail((DECODE_MAX_SIDE, DECODE_MAX_SIDE))
    results = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    return [result.text for result in results if result.text]
