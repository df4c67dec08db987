"""First contact as a new customer tries it: a card number typed before agreeing, a photo of a
card's QR, /offers with offers turned off, and the welcome offer WELCOME_BONUS_PCT promises."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
import qrcode
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeTelegram
from db.models import Offer, OfferKind
from services import qr_payload
from tests.conftest import CASHIER_ID, App, FrozenClock, make_settings, running_app
from tests.till_helpers import purchases
from tests.wallet_helpers import AGREE, add_purchase, bind, card, client, join, seed_cards


def qr_png(text: str) -> bytes:
    buffer = io.BytesIO()
    qrcode.make(text).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_a_number_typed_before_agreeing_is_met_with_what_to_do(app: App) -> None:
    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    user = app.tg.user(3101, language_code="en")
    await user.send("/start")
    await user.wait_message("Do you agree?")
    await user.send("100 045")
    hint = await user.wait_message("first agree")
    assert "I did not understand" not in hint.text
    await user.press(hint, AGREE["en"])  # the hint carries the button
    await user.wait_message("100 045")
    await user.send("100045")
    assert "100 045" in (await user.wait_message(lambda m: m.method == "sendPhoto")).text


async def test_a_photo_of_ones_own_qr_is_recognised(app: App) -> None:
    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    user = app.tg.user(3102, language_code="en")
    await bind(user, "100045")
    secret = app.settings.telegram.secret_key.get_secret_value()
    link = qr_payload.deep_link(app.tg.username, qr_payload.sign(secret, "100045"))
    await user.wait_message("share your phone number")  # the optional profile step
    await user.send("/cancel")
    await user.wait_message("Cancelled")
    await user.send_photo(qr_png(link))
    await user.wait_message("This is your card 100 045")
    other = qr_payload.deep_link(app.tg.username, qr_payload.sign(secret, "100046"))
    await user.send_photo(qr_png(other))
    await user.wait_message("This is a loyalty card of Test Store")
    await user.send_photo(qr_png("https://example.com"))
    await user.wait_message("could not find a card's QR code")
    stranger = app.tg.user(3103, language_code="en")
    await stranger.send_photo(qr_png(link))
    reply = await stranger.wait_message()
    assert "This is a loyalty card of Test Store" in reply.text and "100" not in reply.text
    assert await client(app.sessionmaker, 3103) is None


async def test_offers_turned_off_are_not_promised(app: App) -> None:
    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    user = app.tg.user(3104, language_code="en")
    await bind(user, "100045")
    await user.wait_message("share your phone number")  # the optional profile step
    await user.send("/cancel")
    await user.wait_message("Cancelled")
    await user.send("/notifications")
    await user.press(await user.wait_message("Offers and surveys"), "🔕")
    await user.wait_message("off")
    await user.send("/offers")
    text = (await user.wait_message("No personal offers")).text
    assert "turned offers off" in text and "/notifications" in text
    assert "We will send you one" not in text


@pytest.fixture
async def welcome_app(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> AsyncIterator[App]:
    settings = make_settings(db_url, welcome_bonus_pct=5, welcome_valid_days=30)
    async with running_app(tg, settings, sessionmaker, clock) as application:
        yield application


async def welcome_offers(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Offer]:
    async with sessionmaker() as session:
        query = select(Offer).where(Offer.kind == OfferKind.WELCOME)
        return list((await session.scalars(query)).all())


async def test_a_new_member_gets_the_welcome_offer_and_the_till_applies_it(
    welcome_app: App,
) -> None:
    app = welcome_app
    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    user = app.tg.user(3105, language_code="en")
    await bind(user, "100045")
    gift = await user.wait_message("welcome gift")
    assert "+5 %" in gift.text
    [offer] = await welcome_offers(app.sessionmaker)
    assert offer.bonus_pct == 5
    assert (offer.valid_until - offer.valid_from).days == 30
    await user.wait_message("share your phone number")  # the optional profile step
    await user.send("/cancel")
    await user.wait_message("Cancelled")
    await user.send("/offers")
    assert "welcome gift" in (await user.wait_message("personal offers")).text
    stored = await card(app.sessionmaker, "100045")
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    await cashier.send("/sale 100045")
    await cashier.wait_message("Enter the purchase amount")
    await cashier.send("1000")
    quote = await cashier.wait_message("To pay")
    assert "Personal offer (welcome): +5 %" in quote.text
    await cashier.press(quote, "✅")
    [sale] = await purchases(app.sessionmaker)
    assert sale.discount_pct == 10 and sale.offer_id == offer.id and sale.card_id == stored.id


async def test_no_welcome_offer_for_someone_who_already_bought(welcome_app: App) -> None:
    app = welcome_app
    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    await add_purchase(app.sessionmaker, "100045", 50000, 5, app.clock())  # used at the till
    user = app.tg.user(3106, language_code="en")
    await join(user)
    await user.send("100045")
    await user.wait_message(lambda m: m.method == "sendPhoto")
    await app.tg.wait_for_idle(quiet=0.2)
    assert await welcome_offers(app.sessionmaker) == []
    assert not [m for m in app.tg.messages_in(3106) if "welcome gift" in (m.text or "")]


async def test_a_digital_card_comes_with_the_welcome_offer(welcome_app: App) -> None:
    app = welcome_app
    user = app.tg.user(3107, language_code="en")
    prompt = await join(user)
    await user.press(prompt, "📱")
    assert "+5 %" in (await user.wait_message("welcome gift")).text
    assert len(await welcome_offers(app.sessionmaker)) == 1
