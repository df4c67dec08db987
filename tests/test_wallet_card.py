"""The card image the bot sends: it scans back to this card, even as a poor phone photo, and is
uploaded once per version, then re-sent by file_id."""

from __future__ import annotations

import io

import zxingcpp
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from bot.demo.emulator import UploadedFile
from services import qr_payload
from services.card_image import HEIGHT, WIDTH, CardArt, art_key, palette, render
from tests.conftest import App
from tests.wallet_helpers import bind, card, eventually, seed_cards

SECRET = "test-secret-key-0123456789abcdef"


def _decode(image: Image.Image) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(image)]


def _phone_photo(image: Image.Image) -> Image.Image:
    """Downscaled to 300 px wide and re-encoded as a JPEG at quality 60."""
    small = image.convert("RGB").resize((300, round(300 * image.height / image.width)))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=60)
    return Image.open(io.BytesIO(buffer.getvalue()))


async def test_the_card_photo_scans_to_this_cards_deep_link(app: App) -> None:
    await seed_cards(app.sessionmaker, 100040, 100050, 7, app.clock(), segment="b2b")
    user = app.tg.user(3201, language_code="en")
    photo = await bind(user, "100 045")
    assert isinstance(photo.photo, UploadedFile)
    image = Image.open(io.BytesIO(photo.photo.data))
    assert image.width >= 1000
    assert abs(image.width / image.height - 85.6 / 53.98) < 0.01
    assert "Business client card" in photo.text
    for candidate in (image, _phone_photo(image)):
        texts = _decode(candidate)
        assert len(texts) == 1
        link = texts[0]
        assert link.startswith("https://t.me/loyalty_test_bot?start=")
        payload = qr_payload.extract(link)
        assert payload is not None
        assert (
            qr_payload.verify(app.settings.telegram.secret_key.get_secret_value(), payload)
            == "100045"
        )


async def test_the_image_is_uploaded_once_then_reused_by_file_id(app: App) -> None:
    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    user = app.tg.user(3202, language_code="en")
    first = await bind(user, "100046")
    assert isinstance(first.photo, UploadedFile) and not first.reused
    await user.wait_message("share your phone number")  # sent after the file_id is stored
    stored = await card(app.sessionmaker, "100046")
    assert stored.image_file_id == first.file_id and stored.image_key
    await user.send("/card")
    again = await user.wait_message(lambda m: m.method == "sendPhoto")
    assert again.reused and again.photo == first.file_id
    uploads = [c for c in app.tg.sent(user.id, "sendPhoto") if c.files]
    assert len(uploads) == 1

    # Another language draws other labels: a new version, uploaded once more.
    await user.send("/language")
    await user.press(await user.wait_message("Choose your language"), "🇪🇪 Eesti")
    await user.wait_message("Keel")
    await user.send("/card")
    estonian = await user.wait_message(lambda m: m.method == "sendPhoto")
    assert not estonian.reused and "allahindlus" in estonian.text.lower()


async def test_a_stale_file_id_is_replaced_by_a_fresh_upload(app: App) -> None:
    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    user = app.tg.user(3203, language_code="en")
    first = await bind(user, "100047")

    async def stored(file_id: str | None) -> bool:
        return (await card(app.sessionmaker, "100047")).image_file_id == file_id

    # The bot remembers the uploaded file's id right after the upload returns; the photo can
    # reach the user a moment earlier.
    await eventually(lambda: stored(first.file_id))
    app.tg.fail_next(
        "sendPhoto", 400, "Bad Request: wrong file identifier/HTTP URL specified", chat_id=user.id
    )
    await user.send("/card")
    fresh = await user.wait_message(lambda m: m.method == "sendPhoto")
    assert isinstance(fresh.photo, UploadedFile) and fresh.file_id != first.file_id
    await eventually(lambda: stored(fresh.file_id))


def test_render_draws_card_proportions_and_tier_colours() -> None:
    link = qr_payload.deep_link("shop_bot", qr_payload.sign(SECRET, "123456"))
    images = {
        pct: render(CardArt("Магазин «Ёлка»", "123456", pct, "Бизнес", link, "скидка"))
        for pct in (5, 7, 10, 15)
    }
    corners = {pct: image.getpixel((WIDTH // 2, 12)) for pct, image in images.items()}
    assert len(set(corners.values())) == 4  # each tier its own colour
    for image in images.values():
        assert image.size == (WIDTH, HEIGHT)
        assert _decode(image) == [link]
    assert palette(15) == palette(42)  # "others" share one palette


def test_image_key_changes_with_what_is_drawn() -> None:
    base = CardArt("Store", "123456", 5, "", "https://t.me/b?start=x", "discount")
    variants = [
        CardArt("Store", "123457", 5, "", "https://t.me/b?start=x", "discount"),
        CardArt("Store", "123456", 7, "", "https://t.me/b?start=x", "discount"),
        CardArt("Store", "123456", 5, "Business", "https://t.me/b?start=x", "discount"),
        CardArt("Store", "123456", 5, "", "https://t.me/b?start=y", "discount"),
        CardArt("Store", "123456", 5, "", "https://t.me/b?start=x", "скидка"),
        CardArt("Shop", "123456", 5, "", "https://t.me/b?start=x", "discount"),
    ]
    keys = {art_key(base)} | {art_key(v) for v in variants}
    assert len(keys) == len(variants) + 1
    assert art_key(base) == art_key(CardArt(*base.__dict__.values()))
    assert len(art_key(base)) <= 64


def test_a_payload_with_one_character_changed_is_rejected() -> None:
    payload = qr_payload.sign(SECRET, "100045")
    assert qr_payload.verify(SECRET, payload) == "100045"
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
    for i, char in enumerate(payload):
        replacement = alphabet[(alphabet.index(char) + 1) % len(alphabet)]
        mutated = payload[:i] + replacement + payload[i + 1 :]
        try:
            number = qr_payload.verify(SECRET, mutated)
        except qr_payload.InvalidPayload:
            continue
        raise AssertionError(f"{mutated!r} accepted as {number}")


@given(
    number=st.from_regex(r"[0-9]{4,19}", fullmatch=True),
    position=st.integers(min_value=0, max_value=200),
    replacement=st.characters(),
)
def test_verify_never_accepts_a_mutated_payload(
    number: str, position: int, replacement: str
) -> None:
    payload = qr_payload.sign(SECRET, number)
    i = position % len(payload)
    mutated = payload[:i] + replacement + payload[i + 1 :]
    if mutated == payload:
        return
    try:
        qr_payload.verify(SECRET, mutated)
    except qr_payload.InvalidPayload:
        return
    raise AssertionError(f"mutated payload {mutated!r} accepted")


@given(st.text(max_size=600))
def test_extract_never_raises(text: str) -> None:
    result = qr_payload.extract(text)
    assert result is None or isinstance(result, str)
