"""Referrals: the invite link from /invite to both rewards (in each language), the void that
takes them back, every refusal (own link, a member, a used card, the same friend twice, a
forged code, the monthly cap) writing nothing, the KPI figures, /stats and the digest, /mydata
and erasure."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from aiogram.utils.i18n import I18n
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeUser
from bot.i18n import create_i18n
from config import Settings
from db.database import Database
from db.models import AuditEvent, Client, Delivery, InviteCode, Offer, OfferKind, Referral
from handlers.owner_reports import digest_message, render_stats
from services import kpi, privacy, referrals
from services.referrals import ReferralService
from services.reports import ReportService
from services.sales import SalesService
from tests.conftest import CASHIER_ID, OWNER_ID, App, FrozenClock, make_settings
from tests.engagement_helpers import buy, card_of, make_client
from tests.till_helpers import count, quote_for, seed_card
from tests.wallet_helpers import AGREE, add_purchase, plain

AMBASSADOR_TG, FRIEND_TG = 4101, 4102
LINK = re.compile(r"https://t\.me/loyalty_test_bot\?start=r([A-Za-z0-9_-]+)")

# What each side reads, per language (the catalogs' wording).
READS = {
    "en": {
        "greeting": "Anna invited you!",
        "joined": "You joined through Anna's invite",
        "friend_reward": "As an invited friend you get",
        "ambassador_reward": "Boris made their first purchase",
        "share": "📣 Invite a friend",
        "offers": "(invite bonus)",
    },
    "ru": {
        "greeting": "Anna приглашает вас!",
        "joined": "вы и Anna получите",
        "friend_reward": "Как приглашённый друг вы получаете",
        "ambassador_reward": "Boris: первая покупка",
        "share": "📣 Пригласить друга",
        "offers": "(бонус за приглашение)",
    },
    "et": {
        "greeting": "Anna kutsub sind!",
        "joined": "soodustust ja Anna samuti",
        "friend_reward": "Kutsutud sõbrana saad",
        "ambassador_reward": "Boris tegi sinu kutsel oma esimese ostu",
        "share": "📣 Kutsu sõber",
        "offers": "(kutseboonus)",
    },
}


async def referral_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Referral]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(Referral).order_by(Referral.id))).all())


async def referral_offers(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Offer]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Offer).where(Offer.kind == OfferKind.REFERRAL).order_by(Offer.id)
        )
        return list(rows.all())


async def invite_code(user: FakeUser) -> str:
    """The member's /invite: the code of the link it shows."""
    await user.send("/invite")
    message = await user.wait_message("https://t.me/loyalty_test_bot?start=r")
    found = LINK.search(message.text or "")
    assert found is not None
    return found.group(1)


async def seed_ambassador(app: App, language: str = "en") -> tuple[FakeUser, int]:
    _card_id, client_id = await seed_card(
        app.sessionmaker, "100045", client_tg_id=AMBASSADOR_TG, language=language
    )
    assert client_id is not None
    return app.tg.user(AMBASSADOR_TG, "Anna", language_code=language), client_id


async def join_with_link(
    friend: FakeUser, code: str, language: str, number: str = "100046"
) -> None:
    """`/start r<code>`, consent, then the card `number`: up to the card's photo."""
    await friend.send(f"/start r{code}")
    consent = await friend.wait_message(lambda m: bool(m.buttons))
    await friend.press(consent, AGREE[language])
    await friend.wait_message("100 045")  # the number prompt
    await friend.send(number)
    await friend.wait_message(lambda m: m.method == "sendPhoto")


@pytest.mark.parametrize("language", ["ru", "en", "et"])
async def test_a_friend_joins_by_the_link_and_both_are_rewarded_at_the_first_purchase(
    app: App, language: str
) -> None:
    reads = READS[language]
    await seed_card(app.sessionmaker, "100046", status="in_stock")
    ambassador, ambassador_id = await seed_ambassador(app, language)

    # The ambassador's link, and the share button under the card.
    code = await invite_code(ambassador)
    await ambassador.send("/card")
    photo = await ambassador.wait_message(lambda m: m.method == "sendPhoto")
    share = photo.find_button(reads["share"])
    assert share["url"].startswith("https://t.me/share/url?url=https%3A%2F%2Ft.me%2F")
    assert f"start%3Dr{code}" in share["url"]

    friend = app.tg.user(FRIEND_TG, "Boris", language_code=language)
    await friend.send(f"/start r{code}")
    assert reads["greeting"] in (await friend.wait_message(reads["greeting"])).text
    consent = await friend.wait_message(lambda m: bool(m.buttons))
    await friend.press(consent, AGREE[language])
    await friend.wait_message("100 045")
    await friend.send("100 046")
    await friend.wait_message(lambda m: m.method == "sendPhoto")
    await friend.wait_message(reads["joined"])
    (referral,) = await referral_rows(app.sessionmaker)
    friend_row = await _client(app.sessionmaker, FRIEND_TG)
    assert (referral.ambassador_id, referral.friend_id) == (ambassador_id, friend_row.id)
    assert referral.first_purchase_id is None and referral.rewarded_at is None

    # The first purchase rewards both; the messages come through the delivery worker.
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    quote = await quote_for(cashier, "2500", "100046")
    await cashier.press(quote, "✅ Confirm")
    await cashier.wait_message("recorded")
    reward = await friend.wait_message(reads["friend_reward"], timeout=10)
    assert "+5" in plain(reward.text)
    thanks = await ambassador.wait_message(reads["ambassador_reward"], timeout=10)
    assert "+5" in plain(thanks.text) and "Boris" in (thanks.text or "")
    (referral,) = await referral_rows(app.sessionmaker)
    assert referral.first_purchase_at == app.clock() and not referral.capped
    offers = await referral_offers(app.sessionmaker)
    assert {o.client_id for o in offers} == {ambassador_id, friend_row.id}
    assert {o.id for o in offers} == {referral.friend_offer_id, referral.ambassador_offer_id}
    assert all(
        o.bonus_pct == 5 and o.valid_until == app.clock() + timedelta(days=30) for o in offers
    )

    await friend.send("/offers")
    assert "+5" in plain((await friend.wait_message(reads["offers"])).text)

    # The friend's next quote applies it; a second purchase rewards nobody again.
    quote = await quote_for(cashier, "1000", "100046")
    assert "Discount: 10 %" in (quote.text or "")
    await cashier.press(quote, "✅ Confirm")
    await cashier.wait_message("recorded")
    assert len(await referral_offers(app.sessionmaker)) == 2


async def _client(sessionmaker: async_sessionmaker[AsyncSession], tg_id: int) -> Client:
    async with sessionmaker() as session:
        found = await session.scalar(select(Client).where(Client.tg_id == tg_id))
        assert found is not None
        return found


# ------------------------------------------------------------------ refusals, end to end


async def test_own_link_a_member_a_used_card_and_a_forged_code_are_refused(app: App) -> None:
    ambassador, _ambassador_id = await seed_ambassador(app)
    code = await invite_code(ambassador)

    # The ambassador opens their own link: told so, the card as usual, nothing recorded.
    await ambassador.send(f"/start r{code}")
    await ambassador.wait_message("This is your own invite link")
    await ambassador.wait_message(lambda m: m.method == "sendPhoto")

    # An existing member (agreed before opening the link).
    await seed_card(app.sessionmaker, "100047", client_tg_id=4103, first_name="Carl")
    member = app.tg.user(4103, "Carl", language_code="en")
    await member.send(f"/start r{code}")
    await member.wait_message("You are already a member: invite links are for new members.")

    # A newcomer binding a printed card that was used at the till before.
    await seed_card(app.sessionmaker, "100048")
    await add_purchase(app.sessionmaker, "100048", 100_000, 5, app.clock() - timedelta(days=3))
    used = app.tg.user(4104, "Dora", language_code="en")
    await join_with_link(used, code, "en", "100048")
    await used.wait_message("this card has been used at our till before")

    # A forged code: a normal welcome, nothing about any invite, and nothing recorded.
    await seed_card(app.sessionmaker, "100049", status="in_stock")
    stranger = app.tg.user(4105, "Eve", language_code="en")
    await stranger.send("/start rNoSuchCode1")
    hello = await stranger.wait_message("Hello, Eve!")
    assert "invite" not in (hello.text or "")
    consent = await stranger.wait_message(lambda m: bool(m.buttons))
    await stranger.press(consent, AGREE["en"])
    await stranger.wait_message("100 045")
    await stranger.send("100049")
    await stranger.wait_message(lambda m: m.method == "sendPhoto")
    await stranger.wait_message("Optional: share your phone number")
    assert not any("invite" in (m.text or "") for m in stranger.messages())

    assert await referral_rows(app.sessionmaker) == []
    async with app.sessionmaker() as session:
        events = await session.scalars(
            select(AuditEvent.action).where(AuditEvent.action.like("referral.%"))
        )
        assert list(events) == []


async def test_a_digital_card_joins_too(app: App) -> None:
    ambassador, ambassador_id = await seed_ambassador(app)
    code = await invite_code(ambassador)
    friend = app.tg.user(FRIEND_TG, "Boris", language_code="en")
    await friend.send(f"/start r{code}")
    prompt_call = await friend.wait_message(lambda m: bool(m.buttons))
    await friend.press(prompt_call, AGREE["en"])
    prompt = await friend.wait_message("100 045")
    await friend.press(prompt, "📱 I have no card")
    await friend.wait_message("You joined through Anna's invite")
    (referral,) = await referral_rows(app.sessionmaker)
    assert referral.ambassador_id == ambassador_id


# ------------------------------------------------------------------ the service


NOW = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


async def _member(session: AsyncSession, tg_id: int, name: str, created: datetime) -> Client:
    client = await make_client(session, tg_id, first_name=name)
    client.created_at = created
    await session.commit()
    return client


async def _referred(
    db: Database, settings: Settings, clock: FrozenClock, ambassador: Client, friend_tg: int
) -> referrals.JoinOutcome:
    service = ReferralService(db, settings, clock)
    code = await service.code(ambassador.id)
    return await service.join(friend_tg, code, clock() - timedelta(minutes=5))


async def _sell(db: Database, settings: Settings, clock: FrozenClock, card_id: int) -> int:
    sales = SalesService(db, settings, clock)
    draft = await sales.quote(card_id, 100_000, CASHIER_ID, CASHIER_ID, clock())
    return (await sales.confirm(draft.id, OWNER_ID, True, clock())).purchase_id


async def test_the_same_friend_twice_and_a_code_nobody_has_write_nothing(
    db: Database, settings: Settings, clock: FrozenClock, session: AsyncSession
) -> None:
    anna = await _member(session, 5001, "Anna", NOW - timedelta(days=30))
    carl = await _member(session, 5002, "Carl", NOW - timedelta(days=30))
    await _member(session, 5003, "Boris", NOW)
    assert (await _referred(db, settings, clock, anna, 5003)).referral_id is not None
    second = await _referred(db, settings, clock, carl, 5003)
    assert second == referrals.JoinOutcome(None, referrals.ALREADY_REFERRED, "Carl")
    service = ReferralService(db, settings, clock)
    unknown = await service.join(5003, "NoSuchCode1", clock() - timedelta(minutes=5))
    assert unknown.refused == referrals.UNKNOWN
    own = await service.join(5001, await service.code(anna.id), clock())
    assert own.refused == referrals.OWN_LINK
    member = await _referred(db, settings, clock, anna, 5002)  # Carl agreed a month ago
    assert member.refused == referrals.MEMBER
    assert [(r.ambassador_id, r.friend_id) for r in await referral_rows(_maker(session))] == [
        (anna.id, anna.id + 2)
    ]


def _maker(session: AsyncSession) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(session.bind, expire_on_commit=False)


async def test_the_monthly_cap_rewards_the_friend_but_not_the_ambassador(
    db: Database, db_url: str, clock: FrozenClock, session: AsyncSession
) -> None:
    settings = make_settings(db_url, referral_max_per_month=1)
    anna = await _member(session, 5001, "Anna", NOW - timedelta(days=30))
    friends = [await _member(session, 5010 + i, f"F{i}", NOW) for i in range(3)]
    for friend in friends:
        await _referred(db, settings, clock, anna, friend.tg_id or 0)
    cards = [(await _card_id(session, friend)) for friend in friends]
    await _sell(db, settings, clock, cards[0])
    await _sell(db, settings, clock, cards[1])  # the same month: capped
    clock.set(datetime(2026, 12, 1, 0, 0, tzinfo=UTC))  # a new calendar month (UTC)
    await _sell(db, settings, clock, cards[2])
    rows = await referral_rows(_maker(session))
    assert [r.capped for r in rows] == [False, True, False]
    assert [r.friend_offer_id is not None for r in rows] == [True, True, True]
    assert [r.ambassador_offer_id is not None for r in rows] == [True, False, True]
    offers = await referral_offers(_maker(session))
    assert sorted(o.client_id for o in offers) == sorted(
        [anna.id, anna.id, *(f.id for f in friends)]
    )
    async with _maker(session)() as fresh:
        queued = await fresh.scalars(
            select(Delivery.payload).where(Delivery.kind == referrals.REWARD_KIND)
        )
        sides = sorted(payload["side"] for payload in queued)
    assert sides == sorted(["friend"] * 3 + ["ambassador", "capped", "ambassador"])


async def _card_id(session: AsyncSession, client: Client) -> int:
    return (await card_of(session, client)).id


async def test_a_void_takes_back_the_unused_rewards_and_the_referral_stays_revoked(
    db: Database, settings: Settings, clock: FrozenClock, session: AsyncSession
) -> None:
    anna = await _member(session, 5001, "Anna", NOW - timedelta(days=30))
    boris = await _member(session, 5003, "Boris", NOW)
    await _referred(db, settings, clock, anna, 5003)
    card_id = await _card_id(session, boris)
    first = await _sell(db, settings, clock, card_id)
    (referral,) = await referral_rows(_maker(session))
    assert referral.first_purchase_id == first and referral.ambassador_offer_id is not None
    # Anna uses her reward before the void: that one stays used.
    anna_card = await _card_id(session, anna)
    used = await _sell(db, settings, clock, anna_card)
    clock.advance(minutes=1)
    await SalesService(db, settings, clock).void(first, OWNER_ID, True, clock())
    (referral,) = await referral_rows(_maker(session))
    assert referral.revoked_at == clock()
    by_client = {o.client_id: o for o in await referral_offers(_maker(session))}
    assert by_client[boris.id].cancelled_at == clock()
    assert (
        by_client[anna.id].cancelled_at is None and by_client[anna.id].redeemed_purchase_id == used
    )
    # A later purchase rewards nobody: the referral stays revoked.
    clock.advance(minutes=1)
    await _sell(db, settings, clock, card_id)
    assert len(await referral_offers(_maker(session))) == 2
    (referral,) = await referral_rows(_maker(session))
    assert referral.first_purchase_id == first
    today = NOW.astimezone(settings.store.tz).date()
    figures = kpi.to_json(await ReportService(db, settings).kpis(today, today), 2)["referrals"]
    assert figures == {"joined": 1, "first_purchases": 0, "revenue": 1000.0, "ambassadors": 0}


# ------------------------------------------------------------------ the owner's figures


async def test_kpi_figures_stats_and_digest_on_a_hand_computed_fixture(
    db: Database, settings: Settings, session: AsyncSession
) -> None:
    """Period: 2026-11-09..15 (store time, Moscow). Anna: Boris joined 10 Nov, first purchase
    11 Nov (1,000.00) and again 13 Nov (500.00, voided) and 20 Nov (after P); Carl joined
    2 Nov (before P), first purchase 12 Nov (2,000.00) but capped. Dana: Eve joined 14 Nov, no
    purchase. Expected: joined 2 (Boris, Eve), first purchases 2 (Boris, Carl), revenue
    3,000.00, ambassadors 1 (Anna; Carl's referral was capped)."""
    day = lambda d, h=12: datetime(2026, 11, d, h - 3, tzinfo=UTC)  # noqa: E731 - noon in Moscow
    anna = await _member(session, 5001, "Anna", day(1))
    dana = await _member(session, 5002, "Dana", day(1))
    boris = await _member(session, 5003, "Boris", day(10))
    carl = await _member(session, 5004, "Carl", day(2))
    eve = await _member(session, 5005, "Eve", day(14))
    boris_first = await buy(session, boris, day(11), amount=100_000)
    await buy(session, boris, day(13), amount=50_000, voided=True)
    await buy(session, boris, day(20), amount=70_000)
    carl_first = await buy(session, carl, day(12), amount=200_000)
    await buy(session, anna, day(12), amount=900_000)  # not a referred friend
    session.add_all(
        [
            Referral(
                ambassador_id=anna.id,
                friend_id=boris.id,
                joined_at=day(10),
                first_purchase_id=boris_first.id,
                first_purchase_at=day(11),
                rewarded_at=day(11),
                capped=False,
            ),
            Referral(
                ambassador_id=anna.id,
                friend_id=carl.id,
                joined_at=day(2),
                first_purchase_id=carl_first.id,
                first_purchase_at=day(12),
                rewarded_at=day(12),
                capped=True,
            ),
            Referral(ambassador_id=dana.id, friend_id=eve.id, joined_at=day(14), capped=False),
        ]
    )
    await session.commit()
    reports = ReportService(db, settings)
    first, last = datetime(2026, 11, 9).date(), datetime(2026, 11, 15).date()
    current, previous = await reports.compared(first, last)
    assert kpi.to_json(current, 2)["referrals"] == {
        "joined": 2,
        "first_purchases": 2,
        "revenue": 3000.0,
        "ambassadors": 1,
    }
    assert previous.referrals == kpi.Referrals(
        joined=1, first_purchases=0, revenue=0, ambassadors=0
    )

    i18n: I18n = create_i18n("ru")
    with i18n.context(), i18n.use_locale("en"):
        stats = plain(render_stats(current, previous, settings))
        text, _png = await digest_message(reports, datetime(2026, 11, 16, 9, tzinfo=UTC))
    assert (
        "Referrals: 2 friends joined, 2 first purchases, their purchases ₽3,000; "
        "members rewarded for inviting: 1" in stats
    )
    digest = plain(text)
    assert "Top ambassadors" in digest
    top = digest[digest.index("Top ambassadors") :].splitlines()
    assert top[1:3] == [
        "• Anna: friends joined 1, rewarded 1",
        "• Dana: friends joined 1, rewarded 0",
    ]
    with i18n.context(), i18n.use_locale("en"):
        empty = plain(render_stats(previous, previous, settings))
    assert "Referrals: 1 friends joined" in empty  # the week before: Carl joined


async def test_nothing_about_referrals_without_any(
    db: Database, settings: Settings, session: AsyncSession
) -> None:
    await _member(session, 5001, "Anna", NOW)
    reports = ReportService(db, settings)
    today = NOW.date()
    current, previous = await reports.compared(today, today)
    i18n: I18n = create_i18n("ru")
    with i18n.context(), i18n.use_locale("en"):
        assert "Referrals" not in render_stats(current, previous, settings)
        text, _png = await digest_message(reports, NOW)
    assert "ambassadors" not in text


# ------------------------------------------------------------------ data rights


async def test_mydata_shows_the_code_the_inviter_and_the_friends_and_erasure_drops_the_code(
    db: Database, settings: Settings, clock: FrozenClock, session: AsyncSession
) -> None:
    anna = await _member(session, 5001, "Anna", NOW - timedelta(days=30))
    await _member(session, 5003, "Boris", NOW)
    await _member(session, 5004, "Carl", NOW)
    await _referred(db, settings, clock, anna, 5003)
    await _referred(db, settings, clock, anna, 5004)
    code = await ReferralService(db, settings, clock).code(anna.id)

    anna_data = await privacy.export_client_data(db, 5001)
    boris_data = await privacy.export_client_data(db, 5003)
    assert anna_data is not None and boris_data is not None
    assert anna_data["referrals"] == {
        "invite_code": code,
        "invited_by": None,
        "friends_invited": 2,
    }
    assert boris_data["referrals"] == {
        "invite_code": None,
        "invited_by": {"first_name": "Anna"},
        "friends_invited": 0,
    }
    today = NOW.astimezone(settings.store.tz).date()
    before = (await ReportService(db, settings).kpis(today, today)).referrals

    assert await privacy.erase_client(db, 5001, clock())
    assert await count(_maker(session), InviteCode) == 0
    assert len(await referral_rows(_maker(session))) == 2  # ids only: the figures add up
    assert (await ReportService(db, settings).kpis(today, today)).referrals == before
    # The link is dead, and the friend's export no longer names anyone.
    unknown = await ReferralService(db, settings, clock).opened(5099, code)
    assert not unknown.valid
    boris_data = await privacy.export_client_data(db, 5003)
    assert boris_data is not None
    assert boris_data["referrals"]["invited_by"] == {"first_name": None}
