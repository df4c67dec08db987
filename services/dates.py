"""Dates and moments as people and spreadsheets write them, read in store time.

One parser for the history import (`date` column) and the owner's report periods (`/stats`,
`/export`), so that both accept the same forms:

- ISO: `2026-09-01`, `2026-09-01T14:30`, `2026-09-01 14:30:05`, with an optional offset
  (`Z`, `+03:00`) that wins over the store's time zone;
- what Russian- and Estonian-locale Excel writes: `01.09.2026`, `1.9.2026`, `01.09.2026 14:30`,
  `01.09.2026 9:05:30` (day first, store time).

A date alone means midnight store time. Years before 1900 are refused as out of range: no
purchase history is that old, and the earliest years cannot even be converted to UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

EARLIEST_YEAR = 1900
LATEST_YEAR = 9998  # a day after the period's last one must still be a date

# re.ASCII: \d would also match other scripts' digits, which int() reads but nobody writes here.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_ISO_MOMENT = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?",
    re.ASCII,
)
_DMY = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?", re.ASCII)

FORMS = "YYYY-MM-DD, DD.MM.YYYY [HH:MM[:SS]] or an ISO date-time"


class DateOutOfRange(ValueError):
    """A well-formed date outside EARLIEST_YEAR…LATEST_YEAR."""


def _checked(value: date) -> None:
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise DateOutOfRange(f"{value.isoformat()} is outside {EARLIEST_YEAR}-{LATEST_YEAR}")


def parse_date(text: str) -> date:
    """`2026-09-01` or `01.09.2026` (`1.9.2026`). Raises ValueError (`DateOutOfRange` for a
    real date outside the supported years)."""
    raw = text.strip()
    if _ISO_DATE.fullmatch(raw):
        value = date.fromisoformat(raw)
    elif (m := _DMY.fullmatch(raw)) and m.group(4) is None:
        value = date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
    else:
        raise ValueError(f"{raw!r} is not YYYY-MM-DD or DD.MM.YYYY")
    _checked(value)
    return value


def parse_moment(text: str, tz: ZoneInfo) -> datetime:
    """A moment written in store time (or with its own offset) as an aware UTC datetime.
    Raises ValueError (`DateOutOfRange` for a real moment outside the supported years)."""
    raw = text.strip()
    if _ISO_DATE.fullmatch(raw):
        local = datetime.combine(date.fromisoformat(raw), time(), tz)
    elif _ISO_MOMENT.fullmatch(raw):
        local = datetime.fromisoformat(raw)
        if local.tzinfo is None:
            local = local.replace(tzinfo=tz)
    elif m := _DMY.fullmatch(raw):
        day, month, year, hour, minute, second = (int(g) if g else 0 for g in m.groups())
        local = datetime(year, month, day, hour, minute, second, tzinfo=tz)
    else:
        raise ValueError(f"{raw!r} is not {FORMS}")
    _checked(local.date())
    return local.astimezone(UTC)
