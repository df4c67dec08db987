"""Money: parse what people type (or what POS exports write) into integer minor units.

Accepted: `2500`, `2 500`, `2500.50`, `2500,50`, `2,500.50`, `2.500,50`, `1 234 567,8`.
Repeated separators between groups of three digits are thousands separators, and so is a
single comma before three digits (`2,500`); the last `.`/`,` before one or two digits is the
decimal mark. A single dot before three digits (`2.500`) is refused as too many decimals: more
than the currency's minor digits is refused rather than rounded, money is never silently changed.
"""

from __future__ import annotations

import re
from decimal import Decimal

from services.errors import InvalidAmount

_SPACES = re.compile(r"[\s\u00a0\u202f'’_]")
_PLAIN = re.compile(r"\d+")
_DECIMAL = re.compile(r"(\d+)([.,])(\d+)")
_GROUPED = re.compile(r"\d{1,3}(?:([.,])\d{3})+")
_GROUPED_DECIMAL = re.compile(r"(\d{1,3}(?:([.,])\d{3})+)([.,])(\d+)")

MAX_INPUT_LENGTH = 32


def parse_amount(text: str, exponent: int = 2, max_minor: int | None = None) -> int:
    """Return the amount in minor units, or raise `InvalidAmount` with a reason code."""
    raw = text.strip() if isinstance(text, str) else ""
    if not raw:
        raise InvalidAmount("empty", text)
    if len(raw) > MAX_INPUT_LENGTH:
        raise InvalidAmount("format", text[:MAX_INPUT_LENGTH])
    negative = raw.startswith(("-", "−"))
    body = _SPACES.sub("", raw.lstrip("-−+"))
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


def _split(body: str, original: str) -> tuple[str, str]:
    if _PLAIN.fullmatch(body):
        return body, ""
    if m := _GROUPED.fullmatch(body):
        mark = m.group(1)
        if body.count(mark) > 1 or mark == ",":
            return body.replace(mark, ""), ""  # 1,234,567 / 1.234.567 / 2,500
        # "2.500": a decimal point with three decimals is refused, not read as 2500.
        raise InvalidAmount("precision", original)
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
