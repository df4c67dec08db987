"""Money: parse what people type (or what POS exports write) into integer minor units.

Accepted: `2500`, `2 500`, `2500.50`, `2500,50`, `2,500.50`, `2.500,50`, `1 234 567,8`,
`1,234,567`, and any of them with a currency word or sign before or after the number (`2500р`,
`2 500 ₽`, `2500 руб.`, `₽2500`, `2500 RUB`, `€25`, `25 eur`): it is ignored.

Repeated separators between groups of three digits are thousands separators; the last `.`/`,`
before one or two digits is the decimal mark. A single separator followed by exactly three
digits and nothing else (`99,999`, `2,500`, `1.500`) is refused as ambiguous: thousands in
one country, decimals in the next. More decimals than the currency's minor digits are refused
rather than rounded: money is never silently changed.
"""

from __future__ import annotations

import re
from decimal import Decimal

from services.errors import InvalidAmount

_SPACES = re.compile(r"[\s\u00a0\u202f'’_]")
# Currency words and signs a cashier or a POS export may write next to the number (RUB, EUR).
_CURRENCY = r"(?:₽|€|рублей|рубля|рубль|руб\.?|р\.?|rub\.?|rur|eurot|euro|eur|евро)"
_CURRENCY_BEFORE = re.compile(rf"{_CURRENCY}\s*", re.IGNORECASE)
_CURRENCY_AFTER = re.compile(rf"\s*{_CURRENCY}\Z", re.IGNORECASE)
_PLAIN = re.compile(r"\d+")
_DECIMAL = re.compile(r"(\d+)([.,])(\d+)")
# Thousands groups use one separator throughout (`1,234.567,89` is nothing).
_GROUPED = re.compile(r"\d{1,3}([.,])\d{3}(?:\1\d{3})*")
_GROUPED_DECIMAL = re.compile(r"(\d{1,3}([.,])\d{3}(?:\2\d{3})*)([.,])(\d+)")

MAX_INPUT_LENGTH = 32


def parse_amount(text: str, exponent: int = 2, max_minor: int | None = None) -> int:
    """Return the amount in minor units, or raise `InvalidAmount` with a reason code."""
    raw = text.strip() if isinstance(text, str) else ""
    if not raw:
        raise InvalidAmount("empty", text)
    if len(raw) > MAX_INPUT_LENGTH:
        raise InvalidAmount("format", text[:MAX_INPUT_LENGTH])
    body, negative = _number_part(raw, text)
    body = _SPACES.sub("", body)
    if not body.isascii():  # \d also matches Arabic-Indic and other digits: refuse, don't guess
        raise InvalidAmount("format", text)
    integer, fraction = _split(body, text)
    if negative:
        raise InvalidAmount("negative", text)
    if len(fraction) > exponent:
        raise InvalidAmount("precision", text)
    minor = int(integer) * 10**exponent + (int(fraction.ljust(exponent, "0")) if exponent else 0)
    if minor == 0:
        raise InvalidAmount("zero", text)
    if max_minor is not None and minor > max_minor:
        raise InvalidAmount("too_large", text)
    return minor


def _number_part(raw: str, original: str) -> tuple[str, bool]:
    """The number without its sign and currency (`-₽2 500` → `2 500`, negative)."""
    body = raw
    before = _CURRENCY_BEFORE.match(body)
    if before:
        body = body[before.end() :]
    negative = body.startswith(("-", "−"))
    if body.startswith(("-", "−", "+")):
        body = body[1:].lstrip()
    if not before and (before := _CURRENCY_BEFORE.match(body)):
        body = body[before.end() :]
    after = _CURRENCY_AFTER.search(body)
    if after:
        if before:  # `₽2500 руб`: one currency mark, not two
            raise InvalidAmount("format", original)
        body = body[: after.start()]
    return body, negative


def _split(body: str, original: str) -> tuple[str, str]:
    if _PLAIN.fullmatch(body):
        return body, ""
    if m := _GROUPED.fullmatch(body):
        mark = m.group(1)
        if body.count(mark) > 1:
            return body.replace(mark, ""), ""  # 1,234,567 / 1.234.567
        head, group = body.split(mark)
        if int(head) == 0:  # 0,500 cannot be thousands: three decimals
            raise InvalidAmount("precision", original)
        # 99,999 / 2,500 / 1.500: thousands or decimals, depending on who wrote it.
        raise InvalidAmount("ambiguous", original, digits=(head, group))
    if m := _GROUPED_DECIMAL.fullmatch(body):
        grouping, decimal_mark = m.group(2), m.group(3)
        if grouping == decimal_mark:
            raise InvalidAmount("format", original)
        return m.group(1).replace(grouping, ""), m.group(4)
    if m := _DECIMAL.fullmatch(body):
        return m.group(1), m.group(3)
    raise InvalidAmount("format", original)


def minor_to_decimal(minor: int, exponent: int = 2) -> Decimal:
    return Decimal(minor).scaleb(-exponent)


def major_number(minor: int, exponent: int = 2) -> float:
    """Minor units → a JSON-friendly number in major units rounded to the minor digits."""
    return float(round(minor_to_decimal(minor, exponent), exponent))
