"""The live QR of the Mini App's card: its payload, the step window the till accepts, and
STATIC_QR=false (a bound card only by its live QR), in the service and end to end."""

from __future__ import annotations

import io
import string
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import qrcode
from hypothesis import assume, given
from hypothesis import strategies as st
from sqlalchemy import select

from config import Settings
from db.database import Database
from db.models import SaleDraft
from handlers.till import payload_candidate
from services import qr_payload
from services.qr_payload import ExpiredPayload, InvalidPayload, Scanned
from services.sales import LiveCardRequired, SalesService
from tests.conftest import CASHIER_ID, STAFF_CHAT_ID, App, FrozenClock, make_settings
from tests.till_helpers import amount_prompts, count, payload, purchases, seed_bound, seed_card
from tests.wallet_helpers import bind, client, seed_cards

SECRET = "k" * 32
ROTATE = 30
NOW = datetime(2026, 11, 16, 9, 0, 10, tzinfo=UTC)
STEP = 59_827_320  # NOW's step: 1 794 819 610 s // 30
ALPHABET = string.ascii_letters + string.digits + "_-"

EXPIRED = "This QR code has expired"
LIVE_ONLY = "accepted only with its live QR code"
NOT_VALID = "not a valid card"


def qr_png(text: str) -> bytes:
    buffer = io.BytesIO()
    qrcode.make(text).save(buffer, format="PNG")
    return buffer.getvalue()


def live(settings: Settings, now: datetime, number: str = "100045") -> str:
    """The payload the Mini App shows at `now`."""
    step = qr_payload.time_step(now, settings.miniapp.qr_rotate_sec)
    return qr_payload.sign_live(settings.telegram.secret_key.get_secret_value(), number, step)


def read(text: str, now: datetime = NOW) -> Scanned:
    return qr_payload.read(SECRET, text, now, ROTATE)


# ------------------------------------------------------------------------------- the payload


def test_time_step_is_utc_epoch_seconds_over_the_period() -> None:
    assert qr_payload.time_step(NOW, ROTATE) == 59_827_320 == STEP
    boundary = datetime(2026, 11, 16, 9, 0, 30, tzinfo=UTC)
    assert qr_payload.time_step(boundary, ROTATE) == 59_827_321
    assert qr_payload.time_step(boundary - timedelta(microseconds=1), ROTATE) == 59_827_320
    moscow = boundary.astimezone(ZoneInfo("Europe/Moscow"))
    assert qr_payload.time_step(moscow, ROTATE) == 59_827_321  # the instant, not the wall clock
    with pytest.raises(ValueError):
        qr_payload.time_step(NOW.replace(tzinfo=None), ROTATE)


def test_a_live_payload_round_trips_and_fits_a_deep_link() -> None:
    for number in ("1000", "100045", "9" * 19):
        text = qr_payload.sign_live(SECRET, number, 59_827_320)
        assert text.startswith(f"l{number}_59827320_")
        assert len(text) <= 64 and set(text) <= set(ALPHABET)
        assert read(text) == Scanned(number, live=True)
        link = qr_payload.deep_link("shop_bot", text)
        for wrapped in (text, f"  {text}\n", link, f"/start {text}"):
            assert qr_payload.extract(wrapped) == text
            assert qr_payload.looks_like_payload(wrapped)
            assert payload_candidate(wrapped) == text
    # The longest one possible: a 19-digit number and a 12-digit step.
    assert len(qr_payload.sign_live(SECRET, "9" * 19, 10**12 - 1)) <= 64


def test_a_static_payload_is_still_read() -> None:
    assert read(qr_payload.sign(SECRET, "100045")) == Scanned("100045", live=False)
    assert read(f" {qr_payload.sign(SECRET, '100045')}\n").number == "100045"


def test_the_current_and_the_previous_step_are_taken_others_expired() -> None:
    for step, accepted in ((STEP, True), (STEP - 1, True), (STEP - 2, False), (STEP + 1, False)):
        text = qr_payload.sign_live(SECRET, "100045", step)
        if accepted:
            assert read(text) == Scanned("100045", live=True)
            continue
        with pytest.raises(ExpiredPayload) as caught:
            read(text)
        assert isinstance(caught.value, InvalidPayload)  # an expired QR is never a valid one
        assert (caught.value.number, caught.value.step) == ("100045", step)
        assert caught.value.current == STEP
    # The same QR as time passes: shown at NOW, fine for the rest of this period and the next.
    text = qr_payload.sign_live(SECRET, "100045", STEP)
    end_of_next = datetime(2026, 11, 16, 9, 1, tzinfo=UTC) - timedelta(microseconds=1)
    assert read(text, end_of_next).live
    with pytest.raises(ExpiredPayload):
        read(text, end_of_next + timedelta(microseconds=1))


def test_every_single_character_mangling_is_refused_as_forged() -> None:
    text = qr_payload.sign_live(SECRET, "100045", STEP)
    mangled: set[str] = set()
    for i in range(len(text) + 1):
        for char in ALPHABET + " .:/=+~é١":
            mangled.add(text[:i] + char + text[i:])  # inserted
            if i < len(text):
                mangled.add(text[:i] + char + text[i + 1 :])  # replaced
        if i < len(text):
            mangled.add(text[:i] + text[i + 1 :])  # dropped
    mangled.discard(text)
    mangled = {m for m in mangled if m.strip() != text}  # a space around it is no change
    assert len(mangled) > 4500
    for candidate in mangled:
        with pytest.raises(InvalidPayload) as caught:
            read(candidate)
        # Not "expired": nobody may learn from the till that a guessed step was signed.
        assert not isinstance(caught.value, ExpiredPayload), candidate


def test_keys_and_kinds_of_signature_do_not_mix() -> None:
    other = qr_payload.sign_live("another-secret-key-0123456789", "100045", STEP)
    with pytest.raises(InvalidPayload) as caught:
        read(other)
    assert not isinstance(caught.value, ExpiredPayload)
    static_mac = qr_payload.sign(SECRET, "100045").rsplit("_", 1)[-1]
    live_mac = qr_payload.sign_live(SECRET, "100045", STEP)[-16:]
    for forged in (f"l100045_{STEP}_{static_mac}", f"c100045_{live_mac}"):
        with pytest.raises(InvalidPayload):
            read(forged)
    with pytest.raises(InvalidPayload):
        read(f"l100045_0{STEP}_{live_mac}")  # a leading zero is another text


@given(
    number=st.from_regex(r"[0-9]{4,19}", fullmatch=True),
    step=st.integers(min_value=0, max_value=8_000_000_000),  # to the year 9577 at 30 s
    position=st.integers(min_value=0, max_value=200),
    replacement=st.characters(),
)
def test_a_mutated_live_payload_is_never_accepted(
    number: str, step: int, position: int, replacement: str
) -> None:
    text = qr_payload.sign_live(SECRET, number, step)
    i = position % len(text)
    mutated = text[:i] + replacement + text[i + 1 :]
    assume(mutated.strip() != text)
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=step * ROTATE)
    assert read(text, when) == Scanned(number, live=True)
    with pytest.raises(InvalidPayload) as caught:
        read(mutated, when)
    assert not isinstance(caught.value, ExpiredPayload)


@given(text=st.text(max_size=120))
def test_read_refuses_anything_else_without_crashing(text: str) -> None:
    try:
        scanned = read(text)
    except InvalidPayload:
        return
    signed = qr_payload.sign(SECRET, scanned.number)
    if scanned.live:
        signed = qr_payload.sign_live(SECRET, scanned.number, int(text.strip().split("_")[1]))
    assert signed == text.strip()


# ----------------------------------------------------------------------- the service's rules


@pytest.mark.parametrize("static_qr", [True, False])
async def test_the_till_service_rules(
    db_url: str, db: Database, sessionmaker: Any, static_qr: bool
) -> None:
    settings = make_settings(db_url, static_qr=static_qr)
    clock = FrozenClock(NOW)
    sales = SalesService(db, settings, clock)
    await seed_bound(sessionmaker, "100045")
    await seed_card(sessionmaker, "100046", 7)  # paper only: nobody's chat
    for number in ("100045", "100046"):
        card = await sales.identify_payload(live(settings, NOW, number))
        assert card.number == number
        assert (
            await sales.identify_payload(live(settings, NOW - timedelta(seconds=30), number))
        ).number == number
        with pytest.raises(ExpiredPayload):
            await sales.identify_payload(live(settings, NOW - timedelta(seconds=60), number))
        with pytest.raises(ExpiredPayload):
            await sales.identify_payload(live(settings, NOW + timedelta(seconds=30), number))
    assert (await sales.identify_number("100 046")).number == "100046"
    assert (await sales.identify_payload(payload(settings, "100046"))).number == "100046"
    if static_qr:
        assert (await sales.identify_number("100045")).client_name == "Anna"
        assert (await sales.identify_payload(payload(settings))).client_name == "Anna"
        return
    with pytest.raises(LiveCardRequired) as caught:
        await sales.identify_number("100 045")
    assert caught.value.number == "100045"
    with pytest.raises(LiveCardRequired):
        await sales.identify_payload(payload(settings))


# ----------------------------------------------------------------------------- end to end


async def drafts(app: App) -> list[tuple[str, str]]:
    """(card number, status) of every sale draft, oldest first."""
    from db.models import Card

    async with app.sessionmaker() as session:
        rows = await session.execute(
            select(Card.number, SaleDraft.status)
            .join(Card, Card.id == SaleDraft.card_id)
            .order_by(SaleDraft.created_at, SaleDraft.id)
        )
        return [(number, str(status)) for number, status in rows.all()]


async def test_a_live_qr_in_the_staff_group_is_taken_while_fresh(app: App) -> None:
    await seed_bound(app.sessionmaker)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    group = app.tg.group(STAFF_CHAT_ID)
    rotate = app.settings.miniapp.qr_rotate_sec
    shown = live(app.settings, app.clock())  # what the customer's Mini App shows now
    step = qr_payload.time_step(app.clock(), rotate)

    await group.send(cashier, shown)  # a USB scanner types it
    prompt = await group.wait_message("100 045")
    assert "Client: Anna" in prompt.text and "Enter the purchase amount" in prompt.text
    await group.send(cashier, "1000", reply_to=prompt)
    assert "₽950" in (await group.wait_message("To pay")).text

    # The last moment of the next step: the QR on the screen is the previous one, still good.
    app.clock.set(datetime.fromtimestamp((step + 2) * rotate, UTC) - timedelta(milliseconds=1))
    await group.send_photo(cashier, qr_png(qr_payload.deep_link(app.tg.username, shown)))
    assert "Client: Anna" in (await group.wait_message("100 045")).text

    app.clock.advance(milliseconds=1)  # two steps on: a screenshot, not the live card
    await group.send(cashier, shown)
    refusal = await group.wait_message()
    assert EXPIRED in refusal.text and "open the live card again" in refusal.text
    assert "100 045" not in refusal.text and "Enter the purchase amount" not in refusal.text
    await group.send(cashier, f"https://t.me/{app.tg.username}?start={shown}")
    assert EXPIRED in (await group.wait_message()).text
    # The new QR the Mini App shows by then is taken.
    await group.send(cashier, live(app.settings, app.clock()))
    assert "Client: Anna" in (await group.wait_message("100 045")).text
    await app.tg.wait_for_idle(quiet=0.1)
    assert amount_prompts(group) == 3
    assert await drafts(app) == [("100045", "open")]  # the one quote; refusals wrote nothing
    assert await purchases(app.sessionmaker) == []


async def test_the_phone_camera_opens_a_live_deep_link(app: App) -> None:
    await seed_bound(app.sessionmaker)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    shown = live(app.settings, app.clock())
    await cashier.send(f"/start {shown}")
    card = await cashier.wait_message("100 045")
    assert "Client: Anna" in card.text
    assert card.reply_markup and card.reply_markup.get("force_reply") is True
    await cashier.send("2500")
    assert "To pay" in (await cashier.wait_message("To pay")).text
    app.clock.advance(seconds=2 * app.settings.miniapp.qr_rotate_sec)
    await cashier.send(f"/start {shown}")
    assert EXPIRED in (await cashier.wait_message()).text
    assert await drafts(app) == [("100045", "open")]


async def test_a_forged_live_qr_is_refused_like_a_forged_static_one(app: App) -> None:
    await seed_bound(app.sessionmaker)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    group = app.tg.group(STAFF_CHAT_ID)
    now = app.clock()
    step = qr_payload.time_step(now, app.settings.miniapp.qr_rotate_sec)
    good = live(app.settings, now)
    other_key = "another-key-0123456789"
    forged = [
        qr_payload.sign_live(other_key, "100045", step),  # another key, the right step
        qr_payload.sign_live(other_key, "100045", step - 5),  # another key, an old step
        good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),  # a scanner's mistake
        good.replace(f"_{step}_", f"_{step + 1}_"),  # the step moved on by hand
        good[:-1],
    ]
    for text in forged:
        await cashier.send(text)
        assert NOT_VALID in (await cashier.wait_message()).text, text
        await group.send(cashier, text)
        assert NOT_VALID in (await group.wait_message()).text, text
    await cashier.send(f"/start {forged[0]}")
    assert NOT_VALID in (await cashier.wait_message()).text
    await cashier.send(f"https://t.me/{app.tg.username}?start={forged[1]}")
    assert NOT_VALID in (await cashier.wait_message()).text
    await app.tg.wait_for_idle(quiet=0.1)
    assert amount_prompts(group) == 0
    assert not any(EXPIRED in (m.text or "") for m in cashier.messages() + group.messages())
    assert await count(app.sessionmaker, SaleDraft) == 0


async def test_static_qr_off_a_bound_card_only_by_its_live_qr(app_with: Any) -> None:
    async with app_with(static_qr=False) as app:
        await seed_bound(app.sessionmaker)  # 100045: Anna's, in the bot
        await seed_card(app.sessionmaker, "100046", 7)  # 100046: a printed card of nobody's
        cashier = app.tg.user(CASHIER_ID, language_code="en")
        group = app.tg.group(STAFF_CHAT_ID)
        static = payload(app.settings, "100045")
        for text in (static, "100 045", f"https://t.me/{app.tg.username}?start={static}"):
            await group.send(cashier, text)
            refusal = await group.wait_message()
            assert LIVE_ONLY in refusal.text and "live card" in refusal.text, text
        for text in ("/sale 100045", f"/start {static}", static):
            await cashier.send(text)
            assert LIVE_ONLY in (await cashier.wait_message()).text, text
        await group.send_photo(cashier, qr_png(static))
        assert LIVE_ONLY in (await group.wait_message()).text
        await app.tg.wait_for_idle(quiet=0.1)
        assert amount_prompts(group) == 0
        assert await count(app.sessionmaker, SaleDraft) == 0

        # A paper-only card: by its number and its static QR, as before.
        await group.send(cashier, "100046")
        prompt = await group.wait_message("100 046")
        await group.send(cashier, "1000", reply_to=prompt)
        assert "₽930" in (await group.wait_message("To pay")).text
        await group.send(cashier, payload(app.settings, "100046"))
        assert "Not bound" in (await group.wait_message("100 046")).text
        # Anna's card by the QR her Mini App shows.
        await group.send(cashier, live(app.settings, app.clock()))
        assert "Client: Anna" in (await group.wait_message("100 045")).text
        assert await drafts(app) == [("100046", "open")]


async def test_a_customer_opening_someones_live_link_learns_nothing(app: App) -> None:
    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    holder = app.tg.user(3050, language_code="en")
    await bind(holder, "100044")
    shown = live(app.settings, app.clock(), "100044")
    stranger = app.tg.user(3051, language_code="en")
    await stranger.send(f"/start {shown}")
    reply = await stranger.wait_message()
    assert "This is a loyalty card of Test Store" in reply.text and "/start" in reply.text
    assert "100" not in reply.text and "%" not in reply.text
    assert await client(app.sessionmaker, 3051) is None


async def test_a_photo_of_ones_own_live_qr_is_recognised(app: App) -> None:
    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    user = app.tg.user(3102, language_code="en")
    await bind(user, "100045")
    await user.wait_message("share your phone number")  # the optional profile step
    await user.send("/cancel")
    await user.wait_message("Cancelled")
    shown = qr_payload.deep_link(app.tg.username, live(app.settings, app.clock()))
    app.clock.advance(minutes=10)  # a screenshot: no good at the till, still their card
    await user.send_photo(qr_png(shown))
    await user.wait_message("This is your card 100 045")
    stranger = app.tg.user(3103, language_code="en")
    await stranger.send_photo(qr_png(shown))
    reply = await stranger.wait_message()
    assert "This is a loyalty card of Test Store" in reply.text and "100" not in reply.text
