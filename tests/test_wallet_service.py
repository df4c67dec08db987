"""WalletService logic that needs no Telegram: parsers, the rolling window, the card view."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from db.models import CardStatus
from services.errors import CardNotFound
from services.wallet import (
    NO_YEAR,
    BindRateLimited,
    InvalidBirthday,
    InvalidPhone,
    TelegramProfile,
    WalletService,
    normalize_phone,
    parse_birthday,
)
from tests.conftest import FrozenClock, make_settings
from tests.wallet_helpers import add_purchase, seed_cards

TODAY = date(2026, 11, 16)


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
    session: AsyncSession, sessionmaker, wallet_settings: Settings, clock: FrozenClock
) -> None:
    wallet = WalletService(session, wallet_settings, clock)
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
    session: AsyncSession, sessionmaker, wallet_settings: Settings, clock: FrozenClock
) -> None:
    wallet = WalletService(session, wallet_settings, clock)
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
    session.expire_all()
    view = await wallet.card_view(7)
    assert view.number == "100002" and view.tier_pct == 7 and view.total_spend == 550_000
    assert view.next_tier is not None and (view.next_tier.pct, view.next_tier.remaining) == (
        10,
        450_000,
    )
    old = await wallet.client(7)
    assert old is not None
    assert (await wallet.active_card(old.id)).status == CardStatus.ISSUED  # type: ignore[union-attr]
