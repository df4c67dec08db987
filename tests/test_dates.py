"""Dates as people and spreadsheets write them: one parser for the import and report periods."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services import kpi
from services.dates import DateOutOfRange, parse_date, parse_moment
from tests.conftest import OWNER_ID, App

MOSCOW = ZoneInfo("Europe/Moscow")
TALLINN = ZoneInfo("Europe/Tallinn")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-09-01", date(2026, 9, 1)),
        ("01.09.2026", date(2026, 9, 1)),
        ("1.9.2026", date(2026, 9, 1)),
        (" 30.09.2026 ", date(2026, 9, 30)),
    ],
)
def test_dates(text: str, expected: date) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-9-1",
        "31.02.2026",
        "01.09.26",
        "09/01/2026",
        "2026-09-01 10:00",
        "01.09.2026 10:00",
        "20260901",
        "2026-W36-2",
        "١٠.٠٩.٢٠٢٦",
    ],
)
def test_not_dates(text: str) -> None:
    with pytest.raises(ValueError):
        parse_date(text)


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        ("2026-09-01", MOSCOW, datetime(2026, 8, 31, 21, 0, tzinfo=UTC)),
        ("01.09.2026", MOSCOW, datetime(2026, 8, 31, 21, 0, tzinfo=UTC)),
        ("01.09.2026 14:30", MOSCOW, datetime(2026, 9, 1, 11, 30, tzinfo=UTC)),
        ("01.09.2026 9:05:30", TALLINN, datetime(2026, 9, 1, 6, 5, 30, tzinfo=UTC)),
        ("01.01.2026 9:05", TALLINN, datetime(2026, 1, 1, 7, 5, tzinfo=UTC)),  # winter time
        ("2026-09-01T14:30", MOSCOW, datetime(2026, 9, 1, 11, 30, tzinfo=UTC)),
        ("2026-09-01 14:30:05.5", MOSCOW, datetime(2026, 9, 1, 11, 30, 5, 500000, tzinfo=UTC)),
        ("2026-09-01T14:30Z", MOSCOW, datetime(2026, 9, 1, 14, 30, tzinfo=UTC)),
        ("2026-09-01T14:30+01:00", MOSCOW, datetime(2026, 9, 1, 13, 30, tzinfo=UTC)),
    ],
)
def test_moments_in_store_time(text: str, tz: ZoneInfo, expected: datetime) -> None:
    assert parse_moment(text, tz) == expected


@pytest.mark.parametrize(
    "text", ["01.09.2026 24:00", "01.09.2026 14:60", "01.09.2026 14", "2026-09-01T14", "x"]
)
def test_not_moments(text: str) -> None:
    with pytest.raises(ValueError):
        parse_moment(text, MOSCOW)


@pytest.mark.parametrize(
    "text", ["0001-01-01", "01.01.0001", "1899-12-31", "9999-12-31T23:59-05:00", "31.12.9999"]
)
def test_years_outside_1900_9998_are_out_of_range_not_a_crash(text: str) -> None:
    with pytest.raises(DateOutOfRange):
        parse_moment(text, MOSCOW)


@given(st.text(max_size=40))
def test_any_text_is_a_moment_or_a_value_error(text: str) -> None:
    try:
        moment = parse_moment(text, MOSCOW)
    except ValueError:
        return
    assert moment.tzinfo is UTC


@given(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9998, 12, 30)))
def test_day_first_and_iso_forms_agree(moment: datetime) -> None:
    moment = moment.replace(microsecond=0)
    day_first = parse_moment(f"{moment:%d.%m.%Y %H:%M:%S}", MOSCOW)
    assert day_first == parse_moment(moment.isoformat(), MOSCOW)
    assert parse_date(f"{moment:%d.%m.%Y}") == moment.date()


# ------------------------------------------------------------------------- report periods


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("01.09.2026 30.09.2026", (date(2026, 9, 1), date(2026, 9, 30))),
        ("1.9.2026 2026-09-30", (date(2026, 9, 1), date(2026, 9, 30))),
        ("2026-09-01 2026-09-30", (date(2026, 9, 1), date(2026, 9, 30))),
        ("30d", (date(2026, 10, 18), date(2026, 11, 16))),
        ("month", (date(2026, 11, 1), date(2026, 11, 16))),
    ],
)
def test_periods_take_the_same_dates(args: str, expected: tuple[date, date]) -> None:
    assert kpi.parse_period(args, date(2026, 11, 16)) == expected


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ("30.09.2026 01.09.2026", "order"),
        ("31.02.2026 01.03.2026", "format"),
        ("01.01.0001 02.01.0001", "format"),  # was an OverflowError in the KPI bounds
        ("01.09.2026", "format"),
    ],
)
def test_bad_periods(args: str, reason: str) -> None:
    with pytest.raises(kpi.InvalidPeriod) as info:
        kpi.parse_period(args, date(2026, 11, 16))
    assert info.value.reason == reason


async def test_stats_takes_day_first_dates(app: App) -> None:
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/stats 01.10.2026 31.10.2026")
    assert "Oct 1, 2026 – Oct 31, 2026" in (await owner.wait_message()).text
    await owner.send("/stats 01.10.2026 2026-10-31")
    assert "Oct 1, 2026 – Oct 31, 2026" in (await owner.wait_message()).text
