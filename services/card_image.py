"""The wallet-style card image: credit-card proportions, colours by tier, and the QR of the signed
deep link on a white panel (≥ 4 px per module, a quiet zone of 4 modules).

Texts drawn on the card arrive already translated (services hold no user-facing text). The
image is deterministic for its inputs; `image_key` names that version so that the uploaded
Telegram file can be re-sent by `file_id` until something drawn changes.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont
from qrcode.constants import ERROR_CORRECT_M

from services.cards import group_number

# ISO/IEC 7810 ID-1: 85.60 × 53.98 mm.
WIDTH = 1200
HEIGHT = round(WIDTH * 53.98 / 85.6)  # 757
QUIET_ZONE = 4  # modules of white around the code, as the QR spec asks
MIN_MODULE_PX = 4
QR_SIDE = 500  # px available for the QR with its quiet zone
_RADIUS = 36
_MARGIN = 64
_LAYOUT_VERSION = "1"

# (top-left colour, bottom-right colour, text colour) per printed/tier percentage.
_PALETTES: dict[int, tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]] = {
    5: ((20, 122, 108), (9, 63, 77), (255, 255, 255)),  # teal
    7: ((52, 84, 209), (28, 30, 110), (255, 255, 255)),  # royal blue
    10: ((38, 38, 44), (120, 94, 38), (250, 226, 160)),  # black and gold
}
_OTHER = ((96, 62, 148), (44, 26, 78), (255, 255, 255))  # violet for any other tier

_FONT_CANDIDATES = (
    "DejaVuSans-Bold.ttf",  # found by FreeType on most Linux machines
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/Library/Fonts/Arial Bold.ttf",
    "C:/Windows/Fonts/arialbd.ttf",
)


@dataclass(frozen=True)
class CardArt:
    """Everything drawn on the card. `segment_label` and `caption` come translated."""

    store_name: str
    number: str
    tier_pct: int
    segment_label: str
    link: str  # the signed deep link the QR carries
    caption: str = ""  # e.g. "Discount" under the percentage


def palette(tier_pct: int) -> tuple[tuple[int, int, int], ...]:
    return _PALETTES.get(tier_pct, _OTHER)


def image_key(card_number: str, tier_pct: int, *, art: CardArt | None = None, **extra: str) -> str:
    """A short stable name of what is drawn: changes when the number, tier, labels or link do."""
    parts = [_LAYOUT_VERSION, card_number, str(tier_pct)]
    if art is not None:
        parts += [art.store_name, art.segment_label, art.link, art.caption]
    parts += [f"{k}={v}" for k, v in sorted(extra.items())]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def art_key(art: CardArt) -> str:
    return image_key(art.number, art.tier_pct, art=art)


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in _FONT_CANDIDATES:
        if candidate.startswith("/") and not Path(candidate).exists():
            continue
        try:
            return ImageFont.truetype(candidate, size)
        except OSError:
            continue
    # Pillow ≥ 10.1 ships a scalable default font (Latin only): always there.
    return ImageFont.load_default(size=size)


def _fitting_font(draw: ImageDraw.ImageDraw, text: str, size: int, max_width: int):
    while size > 14:
        font = _font(size)
        if draw.textlength(text, font=font) <= max_width:
            return font
        size -= 4
    return _font(size)


@lru_cache(maxsize=8)
def _background(tier_pct: int) -> Image.Image:
    """The gradient card body with rounded corners on a white canvas (cached per palette)."""
    start, end, _text = palette(tier_pct)
    # A diagonal ramp: the mean of a vertical and a horizontal linear gradient.
    vertical = Image.linear_gradient("L").resize((WIDTH, HEIGHT))
    horizontal = Image.linear_gradient("L").transpose(Image.Transpose.TRANSPOSE)
    ramp = Image.blend(vertical, horizontal.resize((WIDTH, HEIGHT)), 0.5)
    body = Image.composite(
        Image.new("RGB", (WIDTH, HEIGHT), end), Image.new("RGB", (WIDTH, HEIGHT), start), ramp
    )
    mask = Image.new("L", (WIDTH, HEIGHT), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, WIDTH - 1, HEIGHT - 1), _RADIUS, fill=255)
    canvas = Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))
    canvas.paste(body, (0, 0), mask)
    return canvas


def qr_matrix(link: str) -> list[list[bool]]:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=0)
    code.add_data(link)
    code.make(fit=True)
    return code.get_matrix()


def _qr_image(link: str, max_side: int) -> Image.Image:
    """The QR with its quiet zone, scaled by whole pixels per module (sharp edges)."""
    matrix = qr_matrix(link)
    modules = len(matrix) + 2 * QUIET_ZONE
    scale = max(MIN_MODULE_PX, max_side // modules)
    small = Image.new("1", (modules, modules), 1)
    pixels = small.load()
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                pixels[x + QUIET_ZONE, y + QUIET_ZONE] = 0
    return small.resize((modules * scale, modules * scale), Image.Resampling.NEAREST)


def render(art: CardArt) -> Image.Image:
    image = _background(art.tier_pct).copy()
    draw = ImageDraw.Draw(image)
    start, end, ink = palette(art.tier_pct)
    # Secondary texts: the ink blended a quarter towards the body colour (no alpha layer).
    mid = [(a + b) // 2 for a, b in zip(start, end, strict=True)]
    soft = tuple((3 * i + m) // 4 for i, m in zip(ink, mid, strict=True))

    # The QR on a white panel on the right, big enough to survive a downscaled phone photo.
    qr = _qr_image(art.link, QR_SIDE)
    panel_x = WIDTH - _MARGIN - qr.width
    panel_y = (HEIGHT - qr.height) // 2
    draw.rounded_rectangle(
        (panel_x - 8, panel_y - 8, panel_x + qr.width + 8, panel_y + qr.height + 8),
        24,
        fill=(255, 255, 255),
    )
    image.paste(qr, (panel_x, panel_y))

    text_width = panel_x - 2 * _MARGIN

    name_font = _fitting_font(draw, art.store_name, 56, text_width)
    draw.text((_MARGIN, _MARGIN), art.store_name, font=name_font, fill=ink)
    pct_text = f"{art.tier_pct} %"
    pct_font = _fitting_font(draw, pct_text, 200, text_width)
    draw.text((_MARGIN, 190), pct_text, font=pct_font, fill=ink)
    if art.caption:
        cap_font = _fitting_font(draw, art.caption, 40, text_width)
        draw.text((_MARGIN + 6, 410), art.caption, font=cap_font, fill=soft)
    if art.segment_label:
        seg_font = _fitting_font(draw, art.segment_label, 36, text_width)
        draw.text((_MARGIN + 6, 470), art.segment_label, font=seg_font, fill=soft)
    grouped = group_number(art.number)
    num_font = _fitting_font(draw, grouped, 64, text_width)
    draw.text((_MARGIN, HEIGHT - _MARGIN - 70), grouped, font=num_font, fill=ink)
    return image


def render_png(art: CardArt) -> bytes:
    buffer = io.BytesIO()
    # Fast zlib level: the PNG is uploaded once and Telegram re-encodes photos anyway.
    render(art).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
