"""What a customer of a chain sees (the real bot on the fake Bot API, in ru, en and et): /store
lists the open branches, a shared location sorts them by distance with the nearest one's
venue, the history says where each purchase was made, offers name the usual shop; and a
one-shop install shows none of it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Client, Purchase
from services import offers
from services.branches import BranchDraft, BranchService
from tests.conftest import App
from tests.engagement_helpers import buy, fast_limiter, make_client, sender_for
from tests.wallet_helpers import plain

LANGUAGES = ["ru", "en", "et"]

# The first shop (settings) is in Tallinn; the customer shares a location in Elva.
TALLINN = {"store_latitude": 59.437, "store_longitude": 24.7536, "winback_holdout_pct": 0}
ELVA = (58.2225, 26.4211)
# Distances from Elva, by hand (1° of latitude = 111.2 km, 1° of longitude = 111.2 km × cos
# of the latitude): Tartu (58.3806, 26.7251): 17.6 km north, 17.8 km east → 25 km; Pärnu
# (58.3859, 24.4971): 18.2 km north, 112.4 km west → 114 km; Tallinn (59.437, 24.7536):
# 135.1 km north, 96.0 km west → 166 km. Narva has no map location: last, without a distance.
NEAREST_FIRST = ["Tartu", "Pärnu", "Test Store", "Narva"]

LABELS = {
    "ru": ("📍 Адрес: ", "🕒 Часы работы: ", "📞 Телефон: "),
    "en": ("📍 Address: ", "🕒 Opening hours: ", "📞 Phone: "),
    "et": ("📍 Aadress: ", "🕒 Lahtiolekuajad: ", "📞 Telefon: "),
}
WORDS: dict[str, dict[str, str]] = {
    "ru": {
        "shops": "Наши магазины",
        "nearest": "Наши магазины, сначала ближайшие:",
        "share": "Поделитесь местоположением, и я отсортирую магазины по расстоянию.",
        "button": "📍 Поделиться местоположением",
        "km": "км",
        "usual": "(ваш обычный магазин: {})",
        "branch": "филиал",
    },
    "en": {
        "shops": "Our shops",
        "nearest": "Our shops, nearest first:",
        "share": "Share your location and I will sort them by distance.",
        "button": "📍 Share my location",
        "km": "km",
        "usual": "(usual shop: {})",
        "branch": "branch",
    },
    "et": {
        "shops": "Meie poed",
        "nearest": "Meie poed, lähimad eespool:",
        "share": "Jaga oma asukohta ja ma sorteerin poed kauguse järgi.",
        "button": "📍 Jaga oma asukohta",
        "km": "km",
        "usual": "(sinu tavaline pood: {})",
        "branch": "filiaal",
    },
}
MAIN_SHOP = ("Test Store", "1 Main St", "10-20", "+7 900 000-00-00")


def block(language: str, name: str, address: str, hours: str, phone: str) -> str:
    address_label, hours_label, phone_label = LABELS[language]
    return f"{name}\n{address_label}{address}\n{hours_label}{hours}\n{phone_label}{phone}"


async def open_chain(app: App) -> BranchService:
    """Tartu and Pärnu on the map, Narva not, Viljandi closed (the bot's own BranchService,
    so that it sees them at once)."""
    branches: BranchService = app.dp["branches"]
    for name, chat, address, lat, lon in (
        ("Tartu", -100201, "Rüütli 1", 58.3806, 26.7251),
        ("Pärnu", -100202, "Rüütli 40", 58.3859, 24.4971),
        ("Narva", -100203, "Tallinna mnt 6", None, None),
        ("Viljandi", -100204, "Tallinna 5", 58.3639, 25.59),
    ):
        await branches.add(
            BranchDraft(
                name=name,
                staff_chat_id=chat,
                address=address,
                hours="9-21",
                phone="+372 5555 0000",
                latitude=lat,
                longitude=lon,
            )
        )
    await branches.close("Viljandi")
    return branches


def shop(name: str) -> tuple[str, str, str, str]:
    if name == "Test Store":
        return MAIN_SHOP
    address = {"Tartu": "Rüütli 1", "Pärnu": "Rüütli 40", "Narva": "Tallinna mnt 6"}[name]
    return (name, address, "9-21", "+372 5555 0000")


def location_button(message: Any) -> dict[str, Any]:
    [[button]] = (message.reply_markup or {})["keyboard"]
    return button


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_chain_lists_its_open_branches_and_sorts_them_by_distance(
    app_with: Any, language: str
) -> None:
    words = WORDS[language]
    async with app_with(**TALLINN) as app:
        await open_chain(app)
        user = app.tg.user(3501, language_code=language)
        await user.send("/store")
        listing = await user.wait_message(words["shops"])
        expected = "\n\n".join(
            [
                words["shops"],
                *(block(language, *shop(n)) for n in ("Test Store", "Tartu", "Pärnu", "Narva")),
                words["share"],
            ]
        )
        assert plain(listing.text) == expected  # the closed Viljandi is not listed
        assert location_button(listing) == {"text": words["button"], "request_location": True}

        await user.send_location(*ELVA)
        nearest = await user.wait_message(words["nearest"])
        text = plain(nearest.text)
        positions = [text.index(f"\n\n{name}") for name in NEAREST_FIRST]
        assert positions == sorted(positions)
        km = words["km"]
        for name, distance in (("Tartu", "25"), ("Pärnu", "114"), ("Test Store", "166")):
            assert f"{name} — {distance} {km}\n" in text
        assert "\n\nNarva\n" in text  # no distance without a map location
        assert "Viljandi" not in text
        assert nearest.reply_markup == {"remove_keyboard": True}
        venue = await user.wait_message(lambda m: m.method == "sendVenue")
        assert venue.venue is not None
        assert venue.venue["title"] == "Tartu" and venue.venue["address"] == "Rüütli 1"
        assert venue.venue["location"] == {"latitude": 58.3806, "longitude": 26.7251}

        # 400 m from Tartu: a distance under 10 km has a decimal, in the customer's language.
        await user.send_location(58.3842, 26.7251)
        close = plain((await user.wait_message(words["nearest"])).text)
        decimal = "0.4" if language == "en" else "0,4"
        assert f"Tartu — {decimal} {km}\n" in close
        await user.wait_message(lambda m: m.method == "sendVenue")


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_one_shop_store_is_unchanged(app_with: Any, language: str) -> None:
    words = WORDS[language]
    async with app_with(**TALLINN) as app:
        user = app.tg.user(3502, language_code=language)
        await user.send("/store")
        card = await user.wait_message("1 Main St")
        assert plain(card.text) == block(language, *MAIN_SHOP)
        assert card.reply_markup is None
        venue = await user.wait_message(lambda m: m.method == "sendVenue")
        assert venue.venue is not None and venue.venue["title"] == "Test Store"
        # A location means nothing to a one-shop install: the catch-all answers, as before.
        await user.send_location(*ELVA)
        answer = await user.wait_message()
        assert "/help" in (answer.text or "")
        await app.tg.wait_for_idle()
        seen = " ".join(plain(m.text).casefold() for m in user.messages())
        assert words["branch"] not in seen and words["shops"].casefold() not in seen
        assert [m.method for m in user.messages()].count("sendVenue") == 1


async def test_a_location_inside_a_conversation_step_is_left_to_that_step(app: App) -> None:
    await open_chain(app)
    user = app.tg.user(3503, language_code="en")
    await user.send("/start")
    consent = await user.wait_message(lambda m: bool(m.buttons))
    await user.press(consent, "✅ I agree")
    await user.wait_message("100 045")  # the card number step
    await user.send_location(*ELVA)
    hint = await user.wait_message()
    assert "card number as text" in (hint.text or "")
    await app.tg.wait_for_idle()
    assert not any(m.method == "sendVenue" for m in user.messages())
    assert not any("Our shops" in (m.text or "") for m in user.messages())


async def buy_in(
    session: AsyncSession, client: Client, at: datetime, branch_id: int, **kw: Any
) -> None:
    purchase = await buy(session, client, at, **kw)
    await session.execute(
        update(Purchase).where(Purchase.id == purchase.id).values(branch_id=branch_id)
    )
    await session.commit()


@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_history_says_where_each_purchase_was_made(
    app: App, session: AsyncSession, language: str
) -> None:
    await open_chain(app)  # Tartu is branch 2, Pärnu 3
    client = await make_client(session, 3504, language=language)
    start = app.clock() - timedelta(days=5)
    await buy_in(session, client, start, 1)
    await buy_in(session, client, start + timedelta(days=1), 2)
    await buy_in(session, client, start + timedelta(days=2), 3, voided=True)
    user = app.tg.user(3504, language_code=language)
    await user.send("/history")
    page = await user.wait_message(lambda m: "📍" in (m.text or ""))
    lines = [line for line in plain(page.text).splitlines() if line.startswith("• ")]
    assert [line.rsplit("📍 ", 1)[1].split()[0] for line in lines] == ["Pärnu", "Tartu", "Test"]
    assert lines[2].endswith("📍 Test Store")


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_one_shop_history_names_no_shop(
    app: App, session: AsyncSession, language: str
) -> None:
    client = await make_client(session, 3505, language=language)
    await buy(session, client, app.clock() - timedelta(days=1))
    user = app.tg.user(3505, language_code=language)
    await user.send("/history")
    page = await user.wait_message(lambda m: "• " in (m.text or ""))
    assert "📍" not in (page.text or "") and "Test Store" not in (page.text or "")


@pytest.mark.parametrize("language", LANGUAGES)
async def test_offers_name_the_usual_shop(
    app_with: Any, session: AsyncSession, language: str
) -> None:
    usual = WORDS[language]["usual"]
    async with app_with(**TALLINN) as app:
        await open_chain(app)
        client = await make_client(session, 3506, language=language)
        long_ago = app.clock() - timedelta(days=90)
        # Two purchases in Tartu, one in Pärnu, and two voided ones in Pärnu (not counted).
        await buy_in(session, client, long_ago, 2)
        await buy_in(session, client, long_ago + timedelta(days=1), 3)
        await buy_in(session, client, long_ago + timedelta(days=2), 2)
        await buy_in(session, client, long_ago + timedelta(days=3), 3, voided=True)
        await buy_in(session, client, long_ago + timedelta(days=4), 3, voided=True)
        # The win-back message, rendered when the bot's delivery worker sends it.
        assert (await offers.winback_sweep(app.db, app.settings, app.clock())).offered == 1
        app.dp["outbox"].notify()
        user = app.tg.user(3506, language_code=language)
        message = plain((await user.wait_message(lambda m: "Test Store" in (m.text or ""))).text)
        assert message.endswith(" " + usual.format("Tartu"))
        # /offers names it too.
        await user.send("/offers")
        listing = await user.wait_message(lambda m: usual.format("Tartu") in (m.text or ""))
        assert plain(listing.text).splitlines()[-1] == usual.format("Tartu")
        # A tie goes to the branch of the latest purchase: one more in Pärnu, later.
        await buy_in(session, client, app.clock() - timedelta(days=1), 3)
        await user.send("/offers")
        await user.wait_message(lambda m: usual.format("Pärnu") in (m.text or ""))


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.manual_delivery
async def test_a_one_shop_offer_names_no_shop(
    app: App, session: AsyncSession, language: str
) -> None:
    client = await make_client(session, 3507, language=language)
    await buy(session, client, app.clock() - timedelta(days=90))
    settings = app.settings.with_changes(winback_holdout_pct=0)
    assert (await offers.winback_sweep(app.db, settings, app.clock())).offered == 1
    sender = sender_for(app.bot, app.sessionmaker, app.settings, app.clock, limiter=fast_limiter())
    assert (await sender.deliver_due()).sent == 1
    usual = WORDS[language]["usual"].split("{")[0]  # "(usual shop: "
    user = app.tg.user(3507, language_code=language)
    message = plain(user.last_message().text)
    assert "Test Store" in message and usual not in message
    await user.send("/offers")
    listing = plain((await user.wait_message(lambda m: "+5 %" in plain(m.text))).text)
    assert usual not in listing and "Test Store" not in listing


async def test_the_usual_shop_is_one_query_that_knows_a_one_shop_install(
    app: App, session: AsyncSession
) -> None:
    client = await make_client(session, 3508)
    await buy(session, client, app.clock())
    assert await app.db.read(offers.usual_branch, app.settings, client.id) is None
    await open_chain(app)
    assert await app.db.read(offers.usual_branch, app.settings, client.id) == "Test Store"
    nobody = await make_client(session, 3509)
    assert await app.db.read(offers.usual_branch, app.settings, nobody.id) is None


async def test_a_long_chain_is_listed_in_several_messages(app: App) -> None:
    branches: BranchService = app.dp["branches"]
    for n in range(1, 61):
        await branches.add(
            BranchDraft(
                name=f"Shop number {n:02}",
                staff_chat_id=-100300 - n,
                address=f"Long Street {n}, a town with a long name",
                hours="Mon-Fri 9-21, Sat-Sun 10-18",
                phone="+372 5555 0000",
                latitude=58 + n / 100,
                longitude=25.0,
            )
        )
    user = app.tg.user(3510, language_code="en")
    await user.send("/store")
    await user.wait_message(lambda m: bool(m.reply_markup))  # the last one has the button
    listing = [m for m in user.messages() if "Street" in (m.text or "")]
    assert len(listing) >= 2
    assert all(len(m.text or "") <= 4096 for m in listing)
    text = "\n\n".join(m.text or "" for m in listing)
    assert [f"Shop number {n:02}" in text for n in range(1, 61)] == [True] * 60
    assert [bool(m.reply_markup) for m in listing] == [False] * (len(listing) - 1) + [True]
