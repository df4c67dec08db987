"""The customer wallet end to end: consent, binding, refusals, limits, replacement, digital."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from db.models import AuditEvent, Card, CardStatus, Client
from tests.conftest import CASHIER_ID, OWNER_ID, App, build_app, make_settings
from tests.wallet_helpers import (
    AGREE,
    add_purchase,
    bind,
    card,
    client,
    join,
    plain,
    seed_cards,
)


async def test_nothing_is_stored_before_consent_and_commands_ask_to_start(app: App) -> None:
    user = app.tg.user(3001, language_code="en", first_name="Ann")
    await user.send("/start")
    hello = await user.wait_message("Hello, Ann!")
    assert "Test Store" in hello.text
    consent = await user.wait_message("/privacy")
    assert consent.find_button("✅ I agree")
    assert await client(app.sessionmaker, 3001) is None
    for command in ("/card", "/history", "/offers"):
        await user.send(command)
        assert "First send /start" in (await user.wait_message()).text
    assert await client(app.sessionmaker, 3001) is None
    await user.press(consent, "✅ I agree")
    await user.wait_message("Send the number printed on your card")
    stored = await client(app.sessionmaker, 3001)
    assert stored is not None
    assert stored.consent_at == app.clock()
    assert stored.consent_version == app.settings.privacy.policy_version
    assert stored.language == "en"


async def test_a_new_policy_version_asks_for_consent_again(app: App) -> None:
    user = app.tg.user(3002, language_code="en")
    await join(user)
    async with app.sessionmaker() as session:
        stored = await session.scalar(select(Client).where(Client.tg_id == 3002))
        assert stored is not None
        stored.consent_version = "0"
        await session.commit()
    await user.send("/card")
    assert "First send /start" in (await user.wait_message()).text
    await user.send("/start")
    assert (await user.wait_message("/privacy")).find_button("✅ I agree")


@pytest.mark.parametrize(
    ("language", "done", "discount"),
    [
        ("ru", "Готово! Карта 100 045 теперь ваша.", "Ваша скидка"),
        ("en", "Done! Card 100 045 is now yours.", "Your discount"),
        ("et", "Valmis! Kaart 100 045 on nüüd sinu.", "Sinu allahindlus"),
    ],
)
async def test_binding_succeeds_in_each_language(
    app: App, language: str, done: str, discount: str
) -> None:
    await seed_cards(app.sessionmaker, 100040, 100050, 7, app.clock())
    user = app.tg.user(3003, language_code=language)
    await join(user, language)
    await user.send("100 045")
    assert (await user.wait_message()).text == done
    photo = await user.wait_message(lambda m: m.method == "sendPhoto")
    assert discount in photo.text and "7" in photo.text
    bound = await card(app.sessionmaker, "100045")
    assert bound.client_id is not None
    assert bound.status == CardStatus.ISSUED and bound.issued_at == app.clock()
    async with app.sessionmaker() as session:
        actions = set(await session.scalars(select(AuditEvent.action)))
    assert {"card.bound", "card.issued", "client.consent"} <= actions


async def test_every_refusal_keeps_the_step(app: App) -> None:
    now = app.clock()
    await seed_cards(app.sessionmaker, 100040, 100050, 5, now)
    await seed_cards(app.sessionmaker, 200001, 200002, 10, now, pin="4321")
    other = app.tg.user(3010, language_code="en")
    await bind(other, "100041")
    async with app.sessionmaker() as session:
        lost = await session.scalar(select(Card).where(Card.number == "100042"))
        assert lost is not None
        lost.status = CardStatus.BLOCKED
        await session.commit()

    user = app.tg.user(3011, language_code="en")
    await join(user)
    await user.send("999 999")
    assert "999999 is not registered" in (await user.wait_message()).text
    await user.send("100042")
    assert "is blocked" in (await user.wait_message()).text
    await user.send("100-041")
    text = (await user.wait_message()).text
    assert "already linked to another Telegram account" in text
    assert "3010" not in text and "Test" not in text
    await user.send("10O045")  # a letter O
    assert "digits only" in (await user.wait_message()).text
    await user.send("200001")
    assert "protected by a PIN" in (await user.wait_message()).text
    await user.send("0000")
    assert "PIN does not match" in (await user.wait_message()).text
    await user.send("4321")
    assert (await user.wait_message()).text == "Done! Card 200 001 is now yours."
    assert (await card(app.sessionmaker, "200001")).client_id is not None


async def test_unexpected_input_gets_a_hint_and_cancel_leaves(app: App) -> None:
    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    user = app.tg.user(3012, language_code="en")
    await join(user)
    await user.send_sticker()
    assert "send the card number as text" in (await user.wait_message()).text
    await user.send_photo(b"not really a photo")
    assert "send the card number as text" in (await user.wait_message()).text
    await user.send("7" * 5000)
    assert "digits only" in (await user.wait_message()).text
    await user.send("/cancel")
    assert (await user.wait_message()).text == "Cancelled."
    await user.send("hello")  # not in the binding step any more
    assert "Send /help" in (await user.wait_message()).text
    # A member without a card who types a card number later still means to link it.
    await user.send("100045")
    assert "100 045" in (await user.wait_message(lambda m: m.method == "sendPhoto")).text
    assert (await card(app.sessionmaker, "100045")).client_id is not None


async def test_rate_limit_per_user_and_its_reset_after_an_hour(app: App) -> None:
    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    user = app.tg.user(3013, language_code="en")
    await join(user)
    for i in range(app.settings.cards.bind_user_max_failures):
        app.clock.advance(minutes=1)
        await user.send(f"55500{i}")
        assert "is not registered" in (await user.wait_message()).text
    await user.send("100045")  # even a right number is refused now
    refusal = (await user.wait_message()).text
    assert "Too many unsuccessful attempts" in refusal
    assert "13:01" in refusal  # first failure 09:01 UTC = 12:01 Moscow, + 1 hour
    assert (await card(app.sessionmaker, "100045")).client_id is None
    app.clock.advance(minutes=57)  # 10:01 UTC: the first failure left the window
    await user.send("100045")
    assert (await user.wait_message()).text == "Done! Card 100 045 is now yours."


async def test_the_limit_survives_a_restart(app: App) -> None:
    user = app.tg.user(3014, language_code="en")
    await join(user)
    for i in range(app.settings.cards.bind_user_max_failures):
        await user.send(f"55500{i}")
        await user.wait_message("is not registered")
    await app.stop()
    second = build_app(app.tg, app.settings, app.sessionmaker, app.clock)
    await second.start()
    try:
        await user.send("/start")
        await user.wait_message("Send the number")
        await user.send("555999")
        assert "Too many unsuccessful attempts" in (await user.wait_message()).text
    finally:
        await app.tg.wait_for_idle()
        await second.stop()
        await second.bot.session.close()


async def test_card_lock_after_the_cap_alerts_the_owners(tg, sessionmaker, clock, db_url) -> None:
    settings = make_settings(db_url, bind_card_max_failures=3, bind_user_max_failures=2)
    application = build_app(tg, settings, sessionmaker, clock)
    await application.start()
    try:
        await seed_cards(sessionmaker, 200001, 200001, 10, clock(), pin="4321")
        for n, uid in enumerate((3020, 3021, 3022)):
            user = tg.user(uid, language_code="en")
            await join(user)
            await user.send("200001")
            await user.wait_message("protected by a PIN")
            await user.send(f"000{n}")
            reply = (await user.wait_message()).text
            if n < 2:
                assert "PIN does not match" in reply
        assert "too many failed attempts" in reply
        owner = tg.user(OWNER_ID)
        alert = await owner.wait_message("200 001")
        assert "/card 200001" in alert.text
        locked = await card(sessionmaker, "200001")
        assert locked.bind_locked_at is not None and locked.bind_failures == 3
        # Even the right PIN is refused now, for anyone.
        user = tg.user(3023, language_code="en")
        await join(user)
        await user.send("200001")
        assert "too many failed attempts" in (await user.wait_message()).text
    finally:
        await tg.wait_for_idle()
        await application.stop()
        await application.bot.session.close()


async def test_replacing_a_card_needs_confirmation_and_keeps_the_tier(
    tg, sessionmaker, clock, db_url
) -> None:
    settings = make_settings(
        db_url, cumulative_tiers_enabled=True, cumulative_tiers="5000:7,10000:10"
    )
    application = build_app(tg, settings, sessionmaker, clock)
    await application.start()
    try:
        await seed_cards(sessionmaker, 100040, 100050, 5, clock())
        user = tg.user(3030, language_code="en")
        photo = await bind(user, "100041")
        assert "5,000 more to reach 7 %" in plain(photo.text)
        await add_purchase(sessionmaker, "100041", 600_000, 5, clock())
        await add_purchase(sessionmaker, "100041", 900_000, 5, clock(), voided=True)
        await user.send("/cancel")
        await user.wait_message()
        await user.send("/card")
        photo = await user.wait_message(lambda m: m.method == "sendPhoto")
        await user.press(photo, "🔄")
        await user.wait_message("card you want to link instead")
        await user.send("100 042")
        ask = await user.wait_message("Replace it with card 100 042?")
        await user.press(ask, "❌")
        await user.wait_message("you keep your current card")
        assert (await card(sessionmaker, "100041")).status == CardStatus.ISSUED

        await user.press(photo, "🔄")
        await user.wait_message("card you want to link instead")
        await user.send("100042")
        ask = await user.wait_message("Replace it")
        await user.press(ask, "✅")
        replaced = await user.wait_message("is now blocked and replaced by card 100 042")
        assert "carry over" in replaced.text
        photo = await user.wait_message(lambda m: m.method == "sendPhoto")
        assert "100 042" in photo.text and "7 %" in photo.text  # 6,000 spent on the old card
        assert "4,000 more to reach 10 %" in plain(photo.text)
        old = await card(sessionmaker, "100041")
        assert old.status == CardStatus.BLOCKED and old.block_reason == "replaced"
        assert old.client_id == (await card(sessionmaker, "100042")).client_id
        # A replayed confirmation is refused and changes nothing.
        call = await user.press(ask, "✅")
        assert "no longer valid" in call.params["text"]
    finally:
        await tg.wait_for_idle()
        await application.stop()
        await application.bot.session.close()


async def test_digital_card_is_issued_at_once(app: App) -> None:
    user = app.tg.user(3040, language_code="en")
    prompt = await join(user)
    await user.press(prompt, "📱 I have no card")
    await user.wait_message("digital card 900 000 001")
    photo = await user.wait_message(lambda m: m.method == "sendPhoto")
    assert "5 %" in photo.text
    issued = await card(app.sessionmaker, "900000001")
    assert issued.kind == "digital" and issued.status == CardStatus.ISSUED
    assert issued.base_pct == app.settings.cards.digital_pct and issued.client_id is not None
    second = app.tg.user(3041, language_code="en")
    prompt = await join(second)
    await second.press(prompt, "📱 I have no card")
    await second.wait_message("digital card 900 000 002")
    # The button again: one account, one active card.
    call = await user.press(prompt, "📱 I have no card")
    assert "You already have card 900 000 001" in call.params["text"]


async def test_staff_can_be_customers_too(app: App) -> None:
    """A cashier's first /start shows the till first; their own card is one tap away."""
    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    await cashier.send("/start")
    welcome = await cashier.wait_message("You are a cashier of")
    assert "/sale 100045" in welcome.text
    assert "Before we start" not in welcome.text
    assert await client(app.sessionmaker, CASHIER_ID) is None  # nothing stored
    await cashier.press(welcome, "💳")
    consent = await cashier.wait_message("Before we start")
    await cashier.press(consent, AGREE["en"])
    await cashier.wait_message("100 045")
    await cashier.send("100043")
    photo = await cashier.wait_message(lambda m: m.method == "sendPhoto")
    assert "100 043" in photo.text


async def test_someone_elses_card_link_reveals_nothing(app: App) -> None:
    from services import qr_payload

    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    owner_of_card = app.tg.user(3050, language_code="en")
    await bind(owner_of_card, "100044")
    payload = qr_payload.sign(app.settings.telegram.secret_key.get_secret_value(), "100044")
    stranger = app.tg.user(3051, language_code="en")
    await stranger.send(f"/start {payload}")
    reply = await stranger.wait_message()
    assert "This is a loyalty card of Test Store" in reply.text and "/start" in reply.text
    assert "100" not in reply.text and "%" not in reply.text
    assert await client(app.sessionmaker, 3051) is None


async def test_profile_phone_and_birthday_and_skip(app: App) -> None:
    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    user = app.tg.user(3060, language_code="en")
    await bind(user, "100045")
    ask_phone = await user.wait_message("share your phone number")
    assert "📞 Share my phone number" in ask_phone.reply_buttons
    await user.send_sticker()
    await user.wait_message("Share my phone number")
    await user.send_contact("+372 5555 1234", user_id=999)  # someone else's contact
    assert "your own number" in (await user.wait_message()).text
    await user.send_contact("+372 5555 1234")
    await user.wait_message("phone number is saved")
    await user.wait_message("birthday")
    await user.send("31.02.1990")
    assert "DD.MM.YYYY" in (await user.wait_message()).text
    await user.send("1990-12-31")
    await user.wait_message("Birthday saved")
    await user.wait_message("All set!")
    stored = await client(app.sessionmaker, 3060)
    assert stored is not None and stored.phone == "+37255551234"
    assert str(stored.birthday) == "1990-12-31"

    other = app.tg.user(3061, language_code="en")
    await bind(other, "100046")
    await other.wait_message("share your phone number")
    await other.send("Skip")
    await other.wait_message("birthday")
    await other.send("Skip")
    await other.wait_message("All set!")
    stored = await client(app.sessionmaker, 3061)
    assert stored is not None and stored.phone is None and stored.birthday is None


async def test_history_is_paged(app: App) -> None:
    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    user = app.tg.user(3070, language_code="en")
    await bind(user, "100045")
    start = app.clock()
    for i in range(7):
        await add_purchase(
            app.sessionmaker,
            "100045",
            10_000 * (i + 1),
            5,
            start + timedelta(days=i),
            voided=i == 0,
        )
    await user.send("/cancel")
    await user.wait_message()
    await user.send("/history")
    first = await user.wait_message("Your purchases")
    text = plain(first.text)
    assert "page 1 of 2" in text and ": ₽700," in text and ": ₽100," not in text
    await user.press(first, "Older ▶")
    second = await user.wait_message("page 2 of 2")
    assert ": ₽100," in plain(second.text) and "(cancelled)" in second.text
    # Saved in total counts non-voided purchases only: 5 % of 200+…+700 = 135.
    assert "Saved in total: ₽135" in plain(second.text)
    call = await user.press_data(first.message_id, "w:hist::99")
    assert call.ok


async def test_offers_show_only_active_ones(app: App) -> None:
    from db.models import Offer

    await seed_cards(app.sessionmaker, 100040, 100050, 5, app.clock())
    user = app.tg.user(3080, language_code="en")
    await bind(user, "100045")
    await user.send("/offers")
    await user.wait_message("No personal offers")
    stored = await client(app.sessionmaker, 3080)
    assert stored is not None
    now = app.clock()
    async with app.sessionmaker() as session:
        session.add_all(
            [
                Offer(
                    client_id=stored.id,
                    kind="birthday",
                    bonus_pct=10,
                    valid_from=now,
                    valid_until=now + timedelta(days=7),
                ),
                Offer(
                    client_id=stored.id,
                    kind="winback",
                    bonus_pct=3,
                    valid_from=now,
                    valid_until=now - timedelta(days=1),
                ),
                Offer(
                    client_id=stored.id,
                    kind="welcome",
                    bonus_pct=4,
                    valid_from=now,
                    valid_until=now + timedelta(days=7),
                    cancelled_at=now,
                ),
            ]
        )
        await session.commit()
    await user.send("/offers")
    text = (await user.wait_message("personal offers")).text
    assert "+10 %" in text and "birthday gift" in text
    assert "+3 %" not in text and "+4 %" not in text


async def test_store_sends_text_and_venue(tg, sessionmaker, clock, db_url) -> None:
    settings = make_settings(db_url, store_latitude=59.437, store_longitude=24.7536)
    application = build_app(tg, settings, sessionmaker, clock)
    await application.start()
    try:
        user = tg.user(3090, language_code="en")
        await user.send("/store")
        text = await user.wait_message("1 Main St")
        assert "10-20" in text.text and "+7 900 000-00-00" in text.text
        venue = await user.wait_message(lambda m: m.method == "sendVenue")
        assert venue.venue is not None
    finally:
        await tg.wait_for_idle()
        await application.stop()
        await application.bot.session.close()


async def test_language_switch_before_and_after_consent(app: App) -> None:
    user = app.tg.user(3100, language_code="ru")
    await user.send("/language")
    choose = await user.wait_message("Выберите язык")
    await user.press(choose, "🇪🇪 Eesti")
    await user.wait_message("Keel: 🇪🇪 Eesti")
    assert await client(app.sessionmaker, 3100) is None  # nothing stored before consent
    await user.send("/start")
    consent = await user.wait_message("/privacy")
    await user.press(consent, "✅ Nõustun")
    await user.wait_message("100 045")
    stored = await client(app.sessionmaker, 3100)
    assert stored is not None and stored.language == "et"
    await user.send("/language")
    choose = await user.wait_message()
    await user.press(choose, "🇬🇧 English")
    await user.wait_message("Language: 🇬🇧 English")
    stored = await client(app.sessionmaker, 3100)
    assert stored is not None and stored.language == "en"
    await user.send("/help")
    assert "what this bot can do" in (await user.wait_message()).text


async def test_forged_buttons_are_refused(app: App) -> None:
    user = app.tg.user(3110, language_code="en")
    await user.send("/language")
    choose = await user.wait_message()
    call = await user.press_data(choose.message_id, "w:lang:xx:0")
    assert "no longer valid" in call.params["text"]
    call = await user.press_data(choose.message_id, "w:nope::0")
    assert "no longer valid" in call.params["text"]
    call = await user.press_data(choose.message_id, "w:replace::0")
    assert "no longer valid" in call.params["text"]
    call = await user.press_data(choose.message_id, "w:digital::0")
    assert "First send /start" in call.params["text"]


async def test_command_menus_are_registered_per_language_and_scope(app: App) -> None:
    import json

    calls = [c for c in app.tg.calls if c.method == "setMyCommands"]
    keys = {
        (json.dumps(c.params.get("scope"), sort_keys=True), c.params.get("language_code"))
        for c in calls
    }
    assert len(keys) == 4 * 3  # (default, ru, en, et) × (private, staff group, one owner)
    by_key = {
        (
            c.params["scope"]["type"],
            c.params["scope"].get("chat_id"),
            c.params.get("language_code"),
        ): [cmd["command"] for cmd in c.params["commands"]]
        for c in calls
    }
    assert "card" in by_key[("all_private_chats", None, "en")]
    assert "sale" not in by_key[("all_private_chats", None, "en")]
    assert "sale" in by_key[("chat", app.settings.telegram.staff_chat_id, "et")]
    assert "stats" in by_key[("chat", OWNER_ID, None)]
    descriptions = {
        c.params.get("language_code"): c.params["commands"][0]["description"]
        for c in calls
        if c.params["scope"]["type"] == "all_private_chats"
    }
    assert descriptions["en"] == "show my loyalty card"
    assert descriptions["ru"] != descriptions["en"] and descriptions["et"] != descriptions["en"]
