"""Rendering numbers and times for people: the user's language, the store's currency and time."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache

from aiogram.utils.i18n import get_i18n
from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal

from bot.config import Settings


def current_locale() -> str:
    try:
        return get_i18n().current_locale
    except LookupError:  # outside an update (CLI, scheduled jobs without a user context)
        return "ru"


@lru_cache(maxsize=16)
def _whole_pattern(locale: str) -> str:
    pattern = Locale.parse(locale).currency_formats["standard"].pattern
    return pattern.split(";")[0].replace(".00", "")


def money(minor: int, settings: Settings, locale: str | None = None) -> str:
    """`250000` → `2 500 ₽` (ru) / `RUB 2,500` (en); kopecks shown only when there are some."""
    loc = locale or current_locale()
    exp = settings.currency_exponent
    value = Decimal(minor).scaleb(-exp)
    if exp and minor % 10**exp == 0:
        return format_currency(
            value, settings.currency, format=_whole_pattern(loc), locale=loc, currency_digits=False
        )
    return format_currency(value, settings.currency, locale=loc)


def number(value: int | float | Decimal, locale: str | None = None) -> str:
    return format_decimal(value, locale=locale or current_locale())


def pct(value: int | float | Decimal, locale: str | None = None) -> str:
    return f"{format_decimal(value, format='#,##0.#', locale=locale or current_locale())} %"


def when(moment: datetime, settings: Settings, locale: str | None = None) -> str:
    """A UTC moment in store time, e.g. `22 нояб. 2026 г., 14:05`."""
    local = moment.astimezone(settings.tz)
    loc = locale or current_locale()
    return f"{format_date(local.date(), 'medium', locale=loc)}, {local:%H:%M}"


def day(value: date | datetime, settings: Settings, locale: str | None = None) -> str:
    if isinstance(value, datetime):
        value = value.astimezone(settings.tz).date()
    return format_date(value, "medium", locale=locale or current_locale())
