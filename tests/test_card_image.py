"""The card image draws every store name the same on every machine: with the DejaVu fonts
shipped in `services/fonts` (Cyrillic and Estonian letters), a long name on two readable lines,
and a QR that still scans."""

from __future__ import annotations

import fnmatch
import io
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import zxingcpp
from fontTools.ttLib import TTFont
from PIL import Image, ImageChops, ImageFont

import services
from services import card_image, qr_payload
from services.card_image import MIN_FONT_PX, CardArt, layout, render, render_png

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = Path(services.__file__).resolve().parent / "fonts"
LINK = qr_payload.deep_link("loyalty_shop_bot", qr_payload.sign("k" * 32, "100045"))
CYRILLIC = "АБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯабвгдеёжзийклмнопрстуфхцчшщъыьэюя"
ESTONIAN = "ÕÄÖÜŠŽõäöüšž"
LONG_NAME = "Магазин хозяйственных товаров «Ёлочка» на Пушкинской площади"  # 60 characters


@pytest.fixture(autouse=True)
def fresh_fonts() -> Iterator[None]:
    """Fonts are cached per size: start and end each test with an empty cache."""
    card_image.font.cache_clear()
    yield
    card_image.font.cache_clear()


def _decode(image: Image.Image) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(image)]


def _blocks(art: CardArt) -> list[card_image.TextBlock]:
    place = layout(art)
    return [b for b in (place.name, place.pct, place.caption, place.segment, place.number) if b]


def test_the_card_draws_with_the_shipped_font_which_has_cyrillic_and_estonian_letters() -> None:
    art = CardArt("Kohvik «Õun» / Кофейня «Ёж»", "100045", 7, "Äriklient", LINK, "скидка")
    for block in _blocks(art):
        assert Path(block.font.path).resolve().parent == SHIPPED
    assert (SHIPPED / "LICENSE_DEJAVU").read_text().startswith("Fonts are (c) Bitstream")

    for path in (card_image.FONT_BOLD, card_image.FONT_REGULAR):
        cmap = TTFont(path).getBestCmap()
        missing = [ch for ch in CYRILLIC + ESTONIAN if ord(ch) not in cmap]
        assert not missing
        # Drawn, each letter is its own glyph, not the .notdef box of an unknown character.
        face = ImageFont.truetype(str(path), 40)
        unknown = "\ue000"  # a private-use code point: DejaVu has no glyph for it
        assert ord(unknown) not in cmap
        notdef = bytes(face.getmask(unknown))
        assert all(bytes(face.getmask(ch)) != notdef for ch in CYRILLIC + ESTONIAN)


def test_the_card_is_the_same_on_a_machine_without_system_fonts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    art = CardArt("Кофейня «Ёжик» · Õunapuu", "100045", 10, "Бизнес", LINK, "скидка")
    here = render(art)
    card_image.font.cache_clear()
    truetype = ImageFont.truetype

    def only_shipped(
        font: object = None, *args: object, **kwargs: object
    ) -> ImageFont.FreeTypeFont:
        # A bare server: no font file but ours (Pillow's built-in font, a file object, stays).
        if isinstance(font, str | Path) and Path(font).resolve().parent != SHIPPED:
            raise OSError("cannot open resource")
        return truetype(font, *args, **kwargs)

    monkeypatch.setattr(ImageFont, "truetype", only_shipped)
    bare = render(art)
    assert ImageChops.difference(bare, here).getbbox() is None  # not one pixel differs


def test_a_long_store_name_wraps_onto_two_readable_lines() -> None:
    assert len(LONG_NAME) == 60
    place = layout(CardArt(LONG_NAME, "100045", 7, "Бизнес", LINK, "скидка"))
    name = place.name
    assert 1 < len(name.lines) <= 2
    assert name.font.size >= MIN_FONT_PX
    assert all(name.font.getlength(line) <= place.text_width for line in name.lines)
    shown = " ".join(name.lines)
    assert shown.endswith("…") and LONG_NAME.startswith(shown[:-1])
    assert card_image._MARGIN + name.height <= 190  # above the percentage

    # A name that fits on two lines keeps every word, bigger than the minimum.
    medium = layout(CardArt("Кофейня «Ёжик» на Садовой", "100045", 7, "", LINK, "скидка")).name
    assert len(medium.lines) == 2 and " ".join(medium.lines) == "Кофейня «Ёжик» на Садовой"
    assert medium.font.size > MIN_FONT_PX
    # A short one stays on one line at full size.
    short = layout(CardArt("Ёжик", "100045", 7, "", LINK, "скидка")).name
    assert short.lines == ("Ёжик",) and short.font.size == 56
    # One word wider than the card is split, never drawn across the QR.
    word = layout(CardArt("Ё" * 80, "100045", 7, "", LINK, "")).name
    assert len(word.lines) == 2 and word.lines[-1].endswith("…")
    assert all(word.font.getlength(line) <= place.text_width for line in word.lines)


def test_the_qr_still_decodes_from_the_png_of_a_card_with_a_long_name() -> None:
    png = render_png(CardArt(LONG_NAME, "100045", 7, "Бизнес", LINK, "скидка"))
    image = Image.open(io.BytesIO(png))
    assert _decode(image) == [LINK]
    # And from a poor phone photo of it: 300 px wide, JPEG quality 60.
    small = image.convert("RGB").resize((300, round(300 * image.height / image.width)))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=60)
    assert _decode(Image.open(io.BytesIO(buffer.getvalue()))) == [LINK]


def test_the_fonts_and_their_licence_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["services"]
    shipped = sorted(p.name for p in SHIPPED.iterdir())
    assert {"DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "LICENSE_DEJAVU"} <= set(shipped)
    for name in shipped:
        assert any(fnmatch.fnmatch(f"fonts/{name}", pattern) for pattern in patterns), name
