"""Rendering numbers and times for people: the user's language, the store's currency and time."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache

from aiogram.utils.i18n import get_i18n
from babel import Locale
from babel.dates import format_date
from babel.numbers import NumberPattern, format_decimal, parse_pattern

from bot.config import Settings


def current_locale() -> str:
    try:
        return get_i18n().current_locale
    except LookupError:  # outside an update (CLI, scheduled jobs without a user context)
        return "ru"


# Parsed once per language: the money and percent formatting of a sale's texts adds up.
@lru_cache(maxsize=16)
def _locale(locale: str) -> Locale:
    return Locale.parse(locale)


@lru_cache(maxsize=16)
def _money_pattern(locale: str, whole: bool) -> NumberPattern:
    pattern = _locale(locale).currency_formats["standard"].pattern
    if whole:  # no decimals: `2 500 ₽`, not `2 500,00 ₽`
        pattern = pattern.split(";")[0].replace(".00", "")
    return parse_pattern(pattern)


_PCT_PATTERN = parse_pattern("#,##0.#")


def money(minor: int, settings: Settings, locale: str | None = None) -> str:
    """`250000` → `2 500 ₽` (ru) / `RUB 2,500` (en); kopecks shown only when there are some."""
    return _money(minor, settings.currency_exponent, settings.currency, locale or current_locale())


# A sale shows each of its amounts four times (quote, receipt, staff line, customer's message)
# and Babel's formatting is the costly part of those texts: recent results are kept.
@lru_cache(maxsize=4096)
def _money(minor: int, exp: int, currency: str, locale: str) -> str:
    value = Decimal(minor).scaleb(-exp)
    whole = bool(exp) and minor % 10**exp == 0
    return _money_pattern(locale, whole).apply(
        value, _locale(locale), currency=currency, currency_digits=not whole
    )


def number(value: int | float | Decimal, locale: str | None = None) -> str:
    return format_decimal(value, locale=locale or current_locale())


def pct(value: int | float | Decimal, locale: str | None = None) -> str:
    return _pct(value, locale or current_locale())


@lru_cache(maxsize=1024)
def _pct(value: int | float | Decimal, locale: str) -> str:
    return f"{_PCT_PATTERN.apply(value, _locale(locale))} %"


def when(moment: datetime, settings: Settings, locale: str | None = None) -> str:
    """A UTC moment in store time, e.g. `22 нояб. 2026 г., 14:05`."""
    local = moment.astimezone(settings.tz)
    loc = locale or current_locale()
    return f"{format_date(local.date(), 'medium', locale=loc)}, {local:%H:%M}"


def day(value: date | datetime, settings: Settings, locale: str | None = None) -> str:
    if isinstance(value, datetime):
        value = value.astimezone(settings.tz).date()
    return format_date(value, "medium", locale=locale or current_locale())
