"""How money, numbers and dates read in each language (what every message is built from)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from config import Settings
from handlers import formatting
from tests.conftest import make_settings


@pytest.fixture
def rub() -> Settings:
    return make_settings("sqlite+aiosqlite:///:memory:", currency="RUB")


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("ru", "2\xa0500\xa0₽"), ("en", "₽2,500"), ("et", "2\xa0500\xa0₽")],
)
def test_a_rouble_store_shows_the_rouble_sign_in_every_language(
    rub: Settings, locale: str, expected: str
) -> None:
    assert formatting.money(250000, rub, locale) == expected
    assert "RUB" not in formatting.money(250050, rub, locale)


def test_euros_keep_their_sign_and_kopecks_show_only_when_there_are_some() -> None:
    eur = make_settings("sqlite+aiosqlite:///:memory:", currency="EUR")
    assert formatting.money(100950, eur, "en") == "€1,009.50"
    assert formatting.money(100900, eur, "et") == "1\xa0009\xa0€"


@pytest.mark.parametrize(("locale", "expected"), [("ru", "1\xa0009"), ("en", "1,009")])
def test_counts_are_grouped_like_money(locale: str, expected: str) -> None:
    assert formatting.number(1009, locale) == expected


def test_a_russian_date_never_ends_in_a_period_that_doubles_at_a_sentence_end(
    rub: Settings,
) -> None:
    text = formatting.day(date(2026, 12, 7), rub, "ru")
    assert text == "7 дек. 2026"
    assert not (text + ".").endswith("..")
    moment = datetime(2026, 12, 7, 11, 5, tzinfo=UTC)  # 14:05 in Moscow
    assert formatting.when(moment, rub, "ru") == "7 дек. 2026, 14:05"
    assert formatting.day(date(2026, 12, 7), rub, "en") == "Dec 7, 2026"
    assert formatting.day(date(2026, 12, 7), rub, "et") == "7. dets 2026"
