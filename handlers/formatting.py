"""Rendering numbers and times for people: the user's language, the store's currency and time."""

from __future__ import annotations

import html
import re
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache

from aiogram.utils.i18n import get_i18n
from babel import Locale
from babel.dates import format_date
from babel.numbers import NumberPattern, format_decimal, get_currency_symbol, parse_pattern

from config import Settings


def current_locale() -> str:
    try:
        return get_i18n().current_locale
    except LookupError:  # outside an update (CLI, scheduled jobs without a user context)
        return "ru"


# Parsed once per language: the money and percent formatting of a sale's texts adds up.
@lru_cache(maxsize=16)
def _locale(locale: str) -> Locale:
    return Locale.parse(locale)


# Where a language has no symbol of its own for the currency, CLDR falls back to the ISO code
# (`RUB2,500` in English): the symbol of a language that has one reads better (`₽2,500`).
_SYMBOL_SOURCES = ("ru", "en", "et")


@lru_cache(maxsize=64)
def currency_symbol(currency: str, locale: str) -> str:
    """`₽` for RUB in every language, `€` for EUR: never the bare ISO code when a symbol exists."""
    for source in (locale, *_SYMBOL_SOURCES):
        symbol = get_currency_symbol(currency, source)
        if symbol != currency:
            return symbol
    return currency


@lru_cache(maxsize=64)
def _money_pattern(locale: str, currency: str, whole: bool) -> NumberPattern:
    pattern = _locale(locale).currency_formats["standard"].pattern.split(";")[0]
    if whole:  # no decimals: `2 500 ₽`, not `2 500,00 ₽`
        pattern = pattern.replace(".00", "")
    symbol = currency_symbol(currency, locale).replace("'", "''")
    return parse_pattern(pattern.replace("¤", f"'{symbol}'"))


_PCT_PATTERN = parse_pattern("#,##0.#")


def money(minor: int, settings: Settings, locale: str | None = None) -> str:
    """`250000` → `2 500 ₽` (ru, et) / `₽2,500` (en); kopecks shown only when there are some."""
    return _money(
        minor, settings.store.currency_exponent, settings.store.currency, locale or current_locale()
    )


# A sale shows each of its amounts four times (quote, receipt, staff line, customer's message)
# and Babel's formatting is the costly part of those texts: recent results are kept.
@lru_cache(maxsize=4096)
def _money(minor: int, exp: int, currency: str, locale: str) -> str:
    value = Decimal(minor).scaleb(-exp)
    whole = bool(exp) and minor % 10**exp == 0
    return _money_pattern(locale, currency, whole).apply(
        value, _locale(locale), currency=currency, currency_digits=not whole
    )


def number(value: int | float | Decimal, locale: str | None = None) -> str:
    """A count or a figure for people: grouped the same way as money (`1 009`, `1,009`)."""
    return format_decimal(value, locale=locale or current_locale())


def pct(value: int | float | Decimal, locale: str | None = None) -> str:
    return _pct(value, locale or current_locale())


@lru_cache(maxsize=1024)
def _pct(value: int | float | Decimal, locale: str) -> str:
    return f"{_PCT_PATTERN.apply(value, _locale(locale))} %"


# CLDR's medium Russian date ends in "г." (`7 дек. 2026 г.`): a sentence that ends with a date
# would end in "г..". The same date without the year word reads naturally and ends in a digit.
_DATE_FORMATS = {"ru": "d MMM y"}


def _date(value: date, locale: str) -> str:
    return format_date(value, _DATE_FORMATS.get(locale, "medium"), locale=locale)


def when(moment: datetime, settings: Settings, locale: str | None = None) -> str:
    """A UTC moment in store time, e.g. `22 нояб. 2026, 14:05`."""
    local = moment.astimezone(settings.store.tz)
    return f"{_date(local.date(), locale or current_locale())}, {local:%H:%M}"


def day(value: date | datetime, settings: Settings, locale: str | None = None) -> str:
    """A store-time date, e.g. `22 нояб. 2026` / `Nov 22, 2026` / `22. nov 2026`."""
    if isinstance(value, datetime):
        value = value.astimezone(settings.store.tz).date()
    return _date(value, locale or current_locale())


_TAG = re.compile(r"<[^>]+>")


def visible_len(lines: list[str]) -> int:
    """Characters Telegram counts of HTML lines joined by line breaks: tags out, entities
    decoded (a caption's or a message's limit is counted on these)."""
    return len(html.unescape(_TAG.sub("", "\n".join(lines))))


def shorten(text: str, limit: int) -> str:
    """Someone's free text on one line, cut with "…" to at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
