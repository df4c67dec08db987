"""WalletService logic that needs no Telegram: parsers, the rolling window, the card view."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from db.database import Database
from db.models import AuditEvent, Card, CardStatus, Client, Delivery
from services import card_admin
from services.card_admin import CannotUnblock
from services.errors import CardNotFound
from services.wallet import (
    NO_YEAR,
    BindRateLimited,
    CardBindLocked,
    InvalidBirthday,
    InvalidPhone,
    ReplacementNeedsConfirmation,
    TelegramProfile,
    WalletService,
    WrongPin,
    normalize_phone,
    parse_birthday,
)
from tests.conftest import FrozenClock, make_settings
from tests.wallet_helpers import add_purchase, card, seed_cards

Sessionmaker = async_sessionmaker[AsyncSession]

TODAY = date(2026, 11, 16)
OWNER = 999


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("31.12.1990", date(1990, 12, 31)),
        ("1.2.2001", date(2001, 2, 1)),
        ("1990-12-31", date(1990, 12, 31)),
        ("31/12/1990", date(1990, 12, 31)),
        ("29.02", date(NO_YEAR, 2, 29)),
        (" 05.07 ", date(NO_YEAR, 7, 5)),
    ],
)
def test_birthday_formats(text: str, expected: date) -> None:
    assert parse_birthday(text, TODAY) == expected


@pytest.mark.parametrize(
    "text", ["31.02.1990", "12.31.1990", "01.01.1899", "17.11.2026", "tomorrow", "", "1" * 100]
)
def test_birthday_refusals(text: str) -> None:
    with pytest.raises(InvalidBirthday):
        parse_birthday(text, TODAY)


@given(st.text(max_size=40))
def test_birthday_parser_only_refuses_with_invalid_birthday(text: str) -> None:
    try:
        value = parse_birthday(text, TODAY)
    except InvalidBirthday:
        return
    assert value <= TODAY or value.year == NO_YEAR


def test_phone_normalization() -> None:
    assert normalize_phone("+372 5555-1234") == "+37255551234"
    assert normalize_phone("79001234567") == "+79001234567"
    for bad in ("call me", "+1", "١٢٣٤٥٦٧"):
        with pytest.raises(InvalidPhone):
            normalize_phone(bad)


@pytest.fixture
def wallet_settings(db_url: str) -> Settings:
    return make_settings(
        db_url,
        cumulative_tiers_enabled=True,
        cumulative_tiers="5000:7,10000:10",
        bind_user_max_failures=3,
    )


async def test_the_rolling_window_frees_one_attempt_at_a_time(
    db: Database, wallet_settings: Settings, clock: FrozenClock
) -> None:
    wallet = WalletService(db, wallet_settings, clock)
    await wallet.give_consent(TelegramProfile(tg_id=1), "en")
    first = clock()
    for minutes in (0, 10, 20):
        clock.set(first + timedelta(minutes=minutes))
        with pytest.raises(CardNotFound):
            await wallet.bind(1, "555000")
    with pytest.raises(BindRateLimited) as refused:
        await wallet.bind(1, "555000")
    assert refused.value.retry_at == first + timedelta(hours=1)
    clock.set(first + timedelta(hours=1, seconds=1))
    with pytest.raises(CardNotFound):  # one attempt freed, and spent
        await wallet.bind(1, "555000")
    with pytest.raises(BindRateLimited) as refused:
        await wallet.bind(1, "555000")
    assert refused.value.retry_at == first + timedelta(minutes=70)


async def test_card_view_counts_every_card_of_the_client_and_skips_voids(
    db: Database, sessionmaker: Sessionmaker, wallet_settings: Settings, clock: FrozenClock
) -> None:
    wallet = WalletService(db, wallet_settings, clock)
    await seed_cards(sessionmaker, 100001, 100003, 5, clock())
    await wallet.give_consent(TelegramProfile(tg_id=7, first_name="Eve"), "ru")
    await wallet.bind(7, "100001")
    await add_purchase(sessionmaker, "100001", 400_000, 5, clock())
    await add_purchase(sessionmaker, "100001", 900_000, 5, clock(), voided=True)
    view = await wallet.card_view(7)
    assert (view.tier_pct, view.total_spend, view.total_saved) == (5, 400_000, 20_000)
    assert view.next_tier is not None and view.next_tier.remaining == 100_000
    await wallet.bind(7, "100002", replace=True)
    await add_purchase(sessionmaker, "100002", 150_000, 5, clock())
    view = await wallet.card_view(7)
    assert view.number == "100002" and view.tier_pct == 7 and view.total_spend == 550_000
    assert view.next_tier is not None and (view.next_tier.pct, view.next_tier.remaining) == (
        10,
        450_000,
    )
    assert (await card(sessionmaker, "100001")).status == CardStatus.BLOCKED
    assert (await card(sessionmaker, "100002")).status == CardStatus.ISSUED


# ------------------------------------------------------------- concurrent transactions
# On PostgreSQL each `wallet.…` call below is a unit of work on a connection of its own, and
# `asyncio.gather` runs them at the same time (READ COMMITTED); on SQLite they take turns.


async def _members(wallet: WalletService, first_tg_id: int, count: int) -> list[int]:
    ids = list(range(first_tg_id, first_tg_id + count))
    for tg_id in ids:
        await wallet.give_consent(TelegramProfile(tg_id=tg_id), "en")
    return ids


async def test_concurrent_wrong_pins_all_count_and_lock_the_card_once(
    db: Database, sessionmaker: Sessionmaker, db_url: str, clock: FrozenClock
) -> None:
    cap = 8
    settings = make_settings(db_url, bind_card_max_failures=cap)
    wallet = WalletService(db, settings, clock)
    await seed_cards(sessionmaker, 100001, 100001, 5, clock(), pin="1234")
    people = await _members(wallet, 10, cap + 4)

    async def wrong_pin(tg_id: int) -> str:
        try:
            await wallet.bind(tg_id, "100001", pin="0000")
        except CardBindLocked as exc:
            return "locked now" if exc.just_locked else "locked"
        except WrongPin:
            return "wrong"
        raise AssertionError("a wrong PIN bound the card")

    # Seven wrong PINs at once: seven failures counted, the card still open.
    first = await asyncio.gather(*(wrong_pin(tg_id) for tg_id in people[: cap - 1]))
    assert first == ["wrong"] * (cap - 1)
    locked = await card(sessionmaker, "100001")
    assert (locked.bind_failures, locked.bind_locked_at) == (cap - 1, None)
    # Five more at once: exactly one is the eighth and locks the card; the others find it
    # locked and are not counted against it.
    second = await asyncio.gather(*(wrong_pin(tg_id) for tg_id in people[cap - 1 :]))
    assert sorted(second) == ["locked"] * 4 + ["locked now"]
    locked = await card(sessionmaker, "100001")
    assert locked.bind_failures == cap and locked.bind_locked_at is not None
    async with sessionmaker() as session:
        alerts = (
            await session.scalars(
                select(Delivery.payload).where(Delivery.kind == "bind_lock_alert")
            )
        ).all()
        events = await session.scalar(
            select(func.count()).where(AuditEvent.action == "card.bind_locked")
        )
    assert alerts == [{"number": "100001", "failures": cap}] and events == 1


async def test_two_new_members_at_once_get_two_digital_numbers(
    db: Database, db_url: str, clock: FrozenClock
) -> None:
    settings = make_settings(db_url, digital_card_from=900000, digital_card_to=900999)
    wallet = WalletService(db, settings, clock)
    people = await _members(wallet, 20, 6)
    issued = await asyncio.gather(*(wallet.issue_digital(tg_id) for tg_id in people))
    assert sorted(result.number for result in issued) == [str(900000 + n) for n in range(6)]
    for tg_id, result in zip(people, issued, strict=True):
        assert (await wallet.card_view(tg_id)).number == result.number


async def test_two_taps_on_i_agree_at_once_make_one_member(
    db: Database, sessionmaker: Sessionmaker, wallet_settings: Settings, clock: FrozenClock
) -> None:
    wallet = WalletService(db, wallet_settings, clock)
    profile = TelegramProfile(tg_id=30, first_name="Ann")
    members = await asyncio.gather(*(wallet.give_consent(profile, "en") for _ in range(3)))
    assert len({member.id for member in members}) == 1
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Client)) == 1


async def test_unblocking_the_lost_card_while_its_holder_binds_a_new_one_leaves_one_card(
    db: Database, sessionmaker: Sessionmaker, wallet_settings: Settings, clock: FrozenClock
) -> None:
    """The owner unblocks a found card at the moment its holder links a replacement: one of
    the two wins, never both (one account holds one active card)."""
    rounds = 12
    await seed_cards(sessionmaker, 100001, 100000 + 2 * rounds, 5, clock())
    wallet = WalletService(db, wallet_settings, clock)
    for n in range(rounds):
        tg_id, lost, new = 40 + n, str(100001 + 2 * n), str(100002 + 2 * n)
        await wallet.give_consent(TelegramProfile(tg_id=tg_id), "en")
        await wallet.bind(tg_id, lost)
        await card_admin.block_card(db, lost, actor_id=OWNER, now=clock())
        outcomes = await asyncio.gather(
            card_admin.unblock_card(db, lost, actor_id=OWNER, now=clock()),
            wallet.bind(tg_id, new),
            return_exceptions=True,
        )
        unblocked, bound = outcomes
        assert isinstance(unblocked, CannotUnblock) or isinstance(
            bound, ReplacementNeedsConfirmation
        ), outcomes
        async with sessionmaker() as session:
            active = (
                await session.scalars(
                    select(Card.number)
                    .join(Client, Card.client_id == Client.id)
                    .where(
                        Client.tg_id == tg_id,
                        Card.status != CardStatus.BLOCKED,
                    )
                )
            ).all()
        assert len(active) == 1, (outcomes, active)
