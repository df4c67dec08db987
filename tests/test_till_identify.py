"""Every way a till identifies a card, and every way it refuses one (end to end)."""

from __future__ import annotations

import io

import qrcode
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from db.models import CardStatus, SaleDraft
from handlers.till import payload_candidate
from services import qr_payload
from tests.conftest import CASHIER_ID, STAFF_CHAT_ID, App
from tests.till_helpers import count, payload, seed_bound, seed_card


def qr_png(text: str) -> bytes:
    buffer = io.BytesIO()
    qrcode.make(text).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_deep_link_from_the_phone_camera(app: App) -> None:
    await seed_bound(app.sessionmaker)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    await cashier.send(f"/start {payload(app.settings)}")
    card = await cashier.wait_message("100 045")
    assert "Client: Anna" in card.text
    assert "No purchases yet." in card.text
    assert card.reply_markup and card.reply_markup.get("force_reply") is True


async def test_pasted_link_and_bare_payload_and_a_photo(app: App) -> None:
    await seed_card(app.sessionmaker, "100046", 7)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    link = f"https://t.me/{app.tg.username}?start={payload(app.settings, '100046')}"
    await cashier.send(link)
    assert "Not bound" in (await cashier.wait_message("100 046")).text
    await cashier.send(payload(app.settings, "100046"))
    assert "7 %" in (await cashier.wait_message("100 046")).text
    await cashier.send_photo(qr_png(link))
    card = await cashier.wait_message("100 046")
    assert "Enter the purchase amount" in card.text
    await cashier.send("700")  # the flow goes on from a photo like from any other scan
    assert "To pay" in (await cashier.wait_message("To pay")).text


async def test_sale_command_and_number_in_the_staff_group(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    await cashier.send("/sale 100 045")
    assert "5 %" in (await cashier.wait_message("100 045")).text
    await cashier.send("/sale")
    assert "/sale 100045" in (await cashier.wait_message()).text

    group = app.tg.group(STAFF_CHAT_ID)
    await group.send(cashier, "100045")
    prompt = await group.wait_message("100 045")
    # Privacy mode: the amount arrives as a reply to the bot's ForceReply prompt.
    await group.send(cashier, "1000", reply_to=prompt)
    quote = await group.wait_message("To pay")
    assert "₽950" in quote.text


async def test_forged_mangled_unknown_and_blocked_cards_are_refused(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    await seed_card(app.sessionmaker, "100047", 5, status=CardStatus.BLOCKED)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    good = payload(app.settings)
    forged = qr_payload.sign("another-key-0123456789", "100045")
    for text in (f"/start {forged}", good[:-3] + "AAA", f"https://t.me/x?start={good[:-1]}"):
        await cashier.send(text)
        assert "not a valid card" in (await cashier.wait_message()).text
    await cashier.send("/sale 999999")
    assert "not registered" in (await cashier.wait_message()).text
    await cashier.send("/sale 100047")
    assert "blocked" in (await cashier.wait_message()).text
    await cashier.send_photo(qr_png("https://example.com/not-a-card"))
    assert "No card QR code" in (await cashier.wait_message()).text
    await cashier.send_document(b"not an image at all", "scan.png", mime_type="image/png")
    assert "cannot read" in (await cashier.wait_message()).text
    assert await count(app.sessionmaker, SaleDraft) == 0


async def test_photos_in_the_staff_group_and_a_huge_picture(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    group = app.tg.group(STAFF_CHAT_ID)
    await group.send_photo(cashier, qr_png("team lunch at 13:00"))  # not for the till: silence
    await group.send_photo(cashier, qr_png(payload(app.settings)))
    card = await group.wait_message("100 045")
    assert "Enter the purchase amount" in card.text
    await app.tg.wait_for_idle(quiet=0.1)
    assert len(group.messages()) == 1
    huge = io.BytesIO()
    Image.new("L", (8000, 6000), 255).save(huge, format="PNG")  # 48 Mpx, a few KB
    await cashier.send_document(huge.getvalue(), "scan.png", mime_type="image/png")
    assert "too large" in (await cashier.wait_message()).text


async def test_a_customer_cannot_use_the_till(app: App) -> None:
    await seed_card(app.sessionmaker, "100045", 5)
    customer = app.tg.user(3900, language_code="en")
    await customer.send("/sale 100045")
    await app.tg.wait_for_idle(quiet=0.1)
    assert not any("Enter the purchase amount" in (m.text or "") for m in customer.messages())


@given(number=st.from_regex(r"[1-9][0-9]{3,18}", fullmatch=True))
def test_every_signed_payload_is_found_in_a_link_or_bare(number: str) -> None:
    signed = qr_payload.sign("k" * 32, number)
    for text in (signed, f" {signed}\n", f"https://t.me/some_bot?start={signed}"):
        candidate = payload_candidate(text)
        assert candidate == signed
        assert qr_payload.verify("k" * 32, candidate) == number


@given(text=st.text(max_size=80))
def test_payload_candidate_never_crashes_and_amounts_are_not_payloads(text: str) -> None:
    candidate = payload_candidate(text)
    assert candidate is None or candidate.startswith(("c", "l"))
    assert payload_candidate(text.replace("c", "").replace("l", "")) is None or "start=" in text
