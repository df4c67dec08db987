"""The wallet-style card image: credit-card proportions, colours by tier, and the QR of the signed
deep link on a white panel (≥ 4 px per module, a quiet zone of 4 modules).

Texts drawn on the card arrive already translated (services hold no user-facing text). The
image is deterministic for its inputs; `image_key` names that version so that the uploaded
Telegram file can be re-sent by `file_id` until something drawn changes.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
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
_LAYOUT_VERSION = "2"  # 2: the shipped font, long names on two lines

# (top-left colour, bottom-right colour, text colour) per printed/tier percentage.
_PALETTES: dict[int, tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]] = {
    5: ((20, 122, 108), (9, 63, 77), (255, 255, 255)),  # teal
    7: ((52, 84, 209), (28, 30, 110), (255, 255, 255)),  # royal blue
    10: ((38, 38, 44), (120, 94, 38), (250, 226, 160)),  # black and gold
}
_OTHER = ((96, 62, 148), (44, 26, 78), (255, 255, 255))  # violet for any other tier

# The fonts travel with the code (DejaVu, licence in fonts/LICENSE_DEJAVU): a system lookup
# finds DejaVu on one machine, a Latin-only fallback on another, and the card would lose its
# Cyrillic there. Basic layout, not Raqm: Raqm is present on some machines only, and the card
# must come out the same everywhere.
FONTS_DIR = Path(__file__).with_name("fonts")
FONT_BOLD = FONTS_DIR / "DejaVuSans-Bold.ttf"
FONT_REGULAR = FONTS_DIR / "DejaVuSans.ttf"
# Below this a text is hard to read on a phone (the card shows at about a third of its size):
# a long text wraps, then ends in an ellipsis, rather than shrinking further.
MIN_FONT_PX = 32
_NAME_LINES = 2
_NAME_HEIGHT = 120  # px from the top margin to above the percentage's digits
_ELLIPSIS = "…"


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
def font(size: int, *, bold: bool = True) -> ImageFont.FreeTypeFont:
    """The shipped DejaVu Sans at `size` px: Latin, Cyrillic and Estonian letters."""
    path = FONT_BOLD if bold else FONT_REGULAR
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)


@dataclass(frozen=True)
class TextBlock:
    """A text laid out for the card: its font and its lines (top to bottom)."""

    font: ImageFont.FreeTypeFont
    lines: tuple[str, ...]

    @property
    def line_height(self) -> int:
        ascent, descent = self.font.getmetrics()
        return ascent + descent

    @property
    def height(self) -> int:
        return self.line_height * len(self.lines)


def fit_text(
    text: str,
    size: int,
    max_width: int,
    *,
    max_lines: int = 1,
    max_height: int | None = None,
    bold: bool = True,
) -> TextBlock:
    """The largest size from `size` down to `MIN_FONT_PX` at which `text` fits in `max_lines`
    lines of `max_width` px (and `max_height`); if it never does, the minimum size with the
    text wrapped and its last line ending in an ellipsis."""
    smallest = min(size, MIN_FONT_PX)
    for candidate in [*range(size, smallest, -4), smallest]:
        lines, complete = _wrap(text, font(candidate, bold=bold), max_width, max_lines)
        block = TextBlock(font(candidate, bold=bold), lines)
        if complete and (max_height is None or block.height <= max_height):
            return block
    face = font(smallest, bold=bold)
    if max_height is not None:  # as many lines as the height holds at the minimum size
        max_lines = max(1, min(max_lines, max_height // TextBlock(face, ("",)).line_height))
    return TextBlock(face, _wrap(text, face, max_width, max_lines)[0])


def _wrap(
    text: str, face: ImageFont.FreeTypeFont, max_width: int, max_lines: int
) -> tuple[tuple[str, ...], bool]:
    """Greedy word wrap into at most `max_lines` lines; a word wider than a line is split.
    Returns the lines and whether all of the text is in them (if not, the last line ends
    in an ellipsis)."""

    def fits(line: str) -> bool:
        return face.getlength(line) <= max_width

    lines: list[str] = []
    current = ""
    words = text.split()
    i = 0
    while i < len(words):
        word = words[i]
        attempt = f"{current} {word}" if current else word
        if fits(attempt):
            current, i = attempt, i + 1
            continue
        if not current:  # a single word wider than the line: split it where it overflows
            cut = 1
            while cut < len(word) and fits(word[: cut + 1]):
                cut += 1
            current, words[i] = word[:cut], word[cut:]
        lines.append(current)
        current = ""
        if len(lines) == max_lines:
            break
    if current and len(lines) < max_lines:
        lines.append(current)
        current = ""
    complete = i >= len(words) and not current
    if not complete and lines:
        lines[-1] = _ellipsize(lines[-1], fits)
    return tuple(lines), complete


def _ellipsize(line: str, fits: Callable[[str], bool]) -> str:
    """`line` ending in "…" within the width: after its last word if there is room, else
    cut inside it."""
    line = line.rstrip()
    while line and not fits(line.rstrip(" ,.;:–—-") + _ELLIPSIS):
        line = line[:-1]
    return line.rstrip(" ,.;:–—-") + _ELLIPSIS


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


@dataclass(frozen=True)
class Layout:
    """Where everything goes on one card: the QR panel and each text, already fitted."""

    qr: Image.Image
    qr_at: tuple[int, int]
    text_width: int  # left of the QR panel, between the margins
    name: TextBlock
    pct: TextBlock
    caption: TextBlock | None
    segment: TextBlock | None
    number: TextBlock


def layout(art: CardArt) -> Layout:
    # The QR on the right, big enough to survive a downscaled phone photo; its size follows
    # the link's length, and the texts get what is left.
    qr = _qr_image(art.link, QR_SIDE)
    panel_x = WIDTH - _MARGIN - qr.width
    width = panel_x - 2 * _MARGIN
    return Layout(
        qr=qr,
        qr_at=(panel_x, (HEIGHT - qr.height) // 2),
        text_width=width,
        # A long store name takes two lines before it gets smaller than readable, then ends
        # in an ellipsis.
        name=fit_text(art.store_name, 56, width, max_lines=_NAME_LINES, max_height=_NAME_HEIGHT),
        pct=fit_text(f"{art.tier_pct} %", 200, width),
        caption=fit_text(art.caption, 40, width) if art.caption else None,
        segment=fit_text(art.segment_label, 36, width) if art.segment_label else None,
        number=fit_text(group_number(art.number), 64, width),
    )


def render(art: CardArt) -> Image.Image:
    image = _background(art.tier_pct).copy()
    draw = ImageDraw.Draw(image)
    start, end, ink = palette(art.tier_pct)
    # Secondary texts: the ink blended a quarter towards the body colour (no alpha layer).
    mid = [(a + b) // 2 for a, b in zip(start, end, strict=True)]
    soft = tuple((3 * i + m) // 4 for i, m in zip(ink, mid, strict=True))
    place = layout(art)

    qr_x, qr_y = place.qr_at
    draw.rounded_rectangle(
        (qr_x - 8, qr_y - 8, qr_x + place.qr.width + 8, qr_y + place.qr.height + 8),
        24,
        fill=(255, 255, 255),
    )
    image.paste(place.qr, place.qr_at)

    def write(block: TextBlock | None, x: int, y: int, fill: tuple[int, ...]) -> None:
        for i, line in enumerate(block.lines if block else ()):
            draw.text((x, y + i * block.line_height), line, font=block.font, fill=fill)

    write(place.name, _MARGIN, _MARGIN, ink)
    write(place.pct, _MARGIN, 190, ink)
    write(place.caption, _MARGIN + 6, 410, soft)
    write(place.segment, _MARGIN + 6, 470, soft)
    write(place.number, _MARGIN, HEIGHT - _MARGIN - 70, ink)
    return image


def render_png(art: CardArt) -> bytes:
    buffer = io.BytesIO()
    # Fast zlib level: the PNG is uploaded once and Telegram re-encodes photos anyway.
    render(art).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
