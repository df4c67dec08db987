"""The KPI engine against hand-computed fixtures (docs/design.md's table, key by key)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from config import Settings
from services import kpi
from services.reports import ReportService
from tests.cli_helpers import Cli
from tests.conftest import make_settings, on_postgres
from tests.kpi_helpers import Data, msk, report_service, utc

P = (date(2026, 11, 1), date(2026, 11, 7))  # previous equal period: 2026-10-25 … 10-31


@pytest.fixture
def reports(engine: AsyncEngine, settings: Settings) -> ReportService:
    return report_service(engine, settings)


async def _main_fixture(session: AsyncSession) -> dict[str, object]:
    d = Data(session)
    holder = await d.client()
    a = await d.card("100001", issued_at=msk(2026, 10, 1), client=holder)  # b2c, Telegram
    b = await d.card("100002", issued_at=msk(2026, 11, 3))  # b2c paper, issued in P
    c = await d.card("100003", issued_at=msk(2026, 10, 1), segment="b2b")
    dd = await d.card("100004", issued_at=msk(2026, 10, 1), segment="b2b")
    await d.card("100005")  # in stock
    await d.buy(a, msk(2026, 10, 28), 100_000, discount=5_000)  # previous period
    await d.buy(a, msk(2026, 11, 2), 200_000, discount=10_000)
    await d.buy(a, msk(2026, 11, 5), 100_000, discount=5_000)
    await d.buy(b, msk(2026, 11, 3), 50_000, discount=2_500)
    await d.buy(b, msk(2026, 11, 4), 999_900, discount=99_990, voided=True)  # never counts
    await d.buy(c, msk(2026, 10, 20), 300_000, discount=30_000)  # before both periods
    await d.buy(dd, msk(2026, 10, 30), 70_000, discount=3_500)  # previous period only
    await d.buy(a, msk(2026, 11, 8), 123_400)  # after P
    await d.commit()
    return {"a": a, "b": b}


async def test_whole_months_are_read_from_the_monthly_figures(
    engine: AsyncEngine, db_url: str
) -> None:
    """A store on UTC asking for August: P and the equally long period before it (July) are
    whole calendar months, so every figure comes from the cards' monthly figures and no
    purchase row is read; they must agree with the purchases themselves."""
    reports = report_service(engine, make_settings(db_url, timezone="UTC"))
    async with AsyncSession(engine, expire_on_commit=False) as session:
        d = Data(session)
        a = await d.card("100001", issued_at=utc(2026, 6, 1))
        b = await d.card("100002", issued_at=utc(2026, 6, 1))
        await d.buy(a, utc(2026, 7, 1), 10_000, discount=500)  # July: its first instant
        await d.buy(a, utc(2026, 8, 1), 20_000, discount=1_000)  # August: its first instant
        await d.buy(a, utc(2026, 8, 31, 23, 59), 30_000, discount=1_500)
        await d.buy(b, utc(2026, 8, 15), 40_000, discount=2_000)
        await d.buy(b, utc(2026, 8, 16), 99_000, voided=True)
        await d.buy(b, utc(2026, 9, 1), 50_000)  # after P
        await d.commit()
    k = await reports.kpis(date(2026, 8, 1), date(2026, 8, 31))
    assert (k.purchases, k.revenue, k.discount_total) == (3, 90_000, 4_500)
    assert (k.active_cards, k.new_buyers) == (2, 1)  # b bought first in August
    assert k.retention_rate == 1.0  # a bought in July and in August
    assert k.ltv == (60_000 + 40_000) / 2  # gross spend up to the end of August


async def test_empty_period_is_zero_and_ratios_are_null(
    session: AsyncSession, settings: Settings, reports: ReportService
) -> None:
    kpis = await reports.kpis(*P)
    data = kpi.to_json(kpis, settings.store.currency_exponent)
    assert data["cards_total"] == data["purchases"] == data["active_cards"] == 0
    assert data["revenue"] == 0.0
    for key in (
        "activity_rate",
        "average_check",
        "average_discount_pct",
        "frequency",
        "repeat_rate",
        "retention_rate",
        "spend_per_active_card",
        "ltv",
        "roi_pct",
    ):
        assert data[key] is None, key
    assert data["nps"] == {
        "promoters": 0,
        "passives": 0,
        "detractors": 0,
        "answers": 0,
        "score": None,
    }
    assert set(data["rfm"].values()) == {0}
    assert data["winback"]["lift"] is None


async def test_every_core_kpi_by_hand(
    session: AsyncSession, settings: Settings, reports: ReportService
) -> None:
    await _main_fixture(session)
    k = await reports.kpis(*P)
    assert (k.cards_total, k.cards_issued, k.cards_issued_in_period, k.cards_bound) == (5, 4, 1, 1)
    assert k.active_cards == 2  # a and b; the voided purchase and 11-08 don't count
    assert k.activity_rate == pytest.approx(2 / 4)
    assert k.purchases == 3
    assert k.revenue == 350_000
    assert k.discount_total == 17_500
    assert k.average_check == pytest.approx(350_000 / 3)
    assert k.average_discount_pct == pytest.approx(5.0)
    assert k.frequency == pytest.approx(1.5)
    assert k.repeat_rate == pytest.approx(0.5)  # a bought twice, b once
    assert k.retention_rate == pytest.approx(0.5)  # of a and dd (active before), a came back
    assert k.spend_per_active_card == pytest.approx(175_000)
    assert k.new_buyers == 1  # b; a bought in October already
    assert k.ltv == pytest.approx((400_000 + 50_000 + 300_000 + 70_000) / 4)

    b2c, b2b = k.by_segment["b2c"], k.by_segment["b2b"]
    assert (b2c.cards_issued, b2c.active_cards, b2c.purchases, b2c.revenue) == (2, 2, 3, 350_000)
    assert (b2b.cards_issued, b2b.active_cards, b2b.purchases, b2b.revenue) == (2, 0, 0, 0)
    assert b2b.retention_rate == 0.0 and b2b.average_check is None
    digital, paper = k.digital_vs_paper["digital"], k.digital_vs_paper["paper"]
    assert (digital.cards_issued, digital.active_cards, digital.revenue) == (1, 1, 300_000)
    assert (paper.cards_issued, paper.active_cards, paper.revenue) == (3, 1, 50_000)

    data = kpi.to_json(k, settings.store.currency_exponent)
    assert data["revenue"] == 3500.0
    assert data["discount_total"] == 175.0
    assert data["average_check"] == 1166.67
    assert data["ltv"] == 2050.0
    assert data["by_segment"]["b2c"]["spend_per_active_card"] == 1750.0
    assert data["period"] == {"from": "2026-11-01", "to": "2026-11-07"}


async def test_midnight_store_time_decides_the_day(
    session: AsyncSession, settings: Settings, reports: ReportService
) -> None:
    from datetime import UTC, datetime

    d = Data(session)
    card = await d.card("100010", issued_at=msk(2026, 10, 1))
    # Moscow is UTC+3: 20:59 UTC is 23:59 on Oct 31, 21:00 UTC is midnight of Nov 1.
    await d.buy(card, datetime(2026, 10, 31, 20, 59, tzinfo=UTC), 10_000)
    await d.buy(card, datetime(2026, 10, 31, 21, 0, tzinfo=UTC), 20_000)
    await d.buy(card, datetime(2026, 11, 1, 20, 59, 59, tzinfo=UTC), 40_000)
    await d.buy(card, datetime(2026, 11, 1, 21, 0, tzinfo=UTC), 80_000)
    await d.commit()
    nov1 = await reports.kpis(date(2026, 11, 1), date(2026, 11, 1))
    assert (nov1.purchases, nov1.revenue) == (2, 60_000)
    oct31 = await reports.kpis(date(2026, 10, 31), date(2026, 10, 31))
    assert (oct31.purchases, oct31.revenue) == (1, 10_000)
    assert nov1.retention_rate == 1.0  # active on Oct 31 (the previous 1-day period), and today


async def test_a_card_with_one_purchase(
    session: AsyncSession, settings: Settings, reports: ReportService
) -> None:
    d = Data(session)
    card = await d.card("100020", issued_at=msk(2026, 11, 2))
    await d.buy(card, msk(2026, 11, 2), 12_345, discount=617)
    await d.commit()
    k = await reports.kpis(*P)
    assert (k.active_cards, k.purchases, k.new_buyers, k.cards_issued_in_period) == (1, 1, 1, 1)
    assert k.average_check == 12_345 and k.spend_per_active_card == 12_345
    assert k.frequency == 1.0 and k.repeat_rate == 0.0 and k.activity_rate == 1.0
    assert k.retention_rate is None  # nobody was active in the previous period
    assert k.ltv == 12_345
    assert sum(k.rfm.values()) == 1


async def test_nps_buckets(
    session: AsyncSession, settings: Settings, reports: ReportService
) -> None:
    d = Data(session)
    client = await d.client()
    for score in (10, 9, 8, 7, 6, 0, 9):
        await d.survey(client, msk(2026, 11, 3), score)
    await d.survey(client, msk(2026, 11, 3), None)  # asked, never answered
    await d.survey(client, msk(2026, 10, 30), 0)  # answered before P
    await d.commit()
    nps = (await reports.kpis(*P)).nps
    assert (nps.promoters, nps.passives, nps.detractors, nps.answers) == (3, 2, 2, 7)
    assert nps.score == pytest.approx((3 - 2) / 7 * 100)


async def test_roi_with_program_costs(
    session: AsyncSession, engine: AsyncEngine, db_url: str
) -> None:
    settings = make_settings(
        db_url, gross_margin_pct="30", program_cost_monthly="3043.75", card_unit_cost="10"
    )
    await _main_fixture(session)
    k = await report_service(engine, settings).kpis(*P)
    # 7 days of 3043.75/month = 700.00; one card issued in P at 10.00 → costs 710.00.
    assert k.program_costs == pytest.approx(71_000)
    gain = (350_000 - 17_500) * 0.30 - 17_500 - 71_000
    assert k.roi_pct == pytest.approx(gain / (17_500 + 71_000) * 100)
    assert kpi.to_json(k, 2)["program_costs"] == 710.0


async def test_roi_without_costs_or_discounts_is_null(
    session: AsyncSession, settings: Settings, reports: ReportService
) -> None:
    d = Data(session)
    card = await d.card("100030", issued_at=msk(2026, 10, 1))
    await d.buy(card, msk(2026, 11, 2), 10_000, discount=0)
    await d.commit()
    assert (await reports.kpis(*P)).roi_pct is None


async def test_rfm_segments_of_known_cards(
    session: AsyncSession, settings: Settings, reports: ReportService
) -> None:
    d = Data(session)
    # (purchase days in November, every purchase 100.00): five cards, so ntile(5) gives each
    # a distinct score: R by last day, F by count, M by total.
    plan = {
        "200001": [2, 3, 4, 5, 6],  # R5 F5 M5 → champions
        "200002": [5],  # R4 F1 M1 → new
        "200003": [1, 2, 3, 4],  # R3 F4 M4 → loyal
        "200004": [1, 2, 3],  # R2 F3 M3 → at_risk
        "200005": [1, 2],  # R1 F2 M2 → lost
    }
    for number, days in plan.items():
        card = await d.card(number, issued_at=msk(2026, 10, 1))
        for day in days:
            await d.buy(card, msk(2026, 11, day), 10_000)
    await d.commit()
    k = await reports.kpis(*P)
    assert k.rfm == {
        "champions": 1,
        "loyal": 1,
        "potential": 0,
        "new": 1,
        "at_risk": 1,
        "hibernating": 0,
        "lost": 1,
    }
    at_risk = await reports.db.report(kpi.at_risk_cards, settings, P[1])
    assert [(c.number, c.purchases, c.total) for c in at_risk] == [("200004", 3, 30_000)]


async def test_winback_offered_vs_control(
    session: AsyncSession, settings: Settings, reports: ReportService
) -> None:
    d = Data(session)
    at = msk(2026, 11, 2, 11)
    clients = [await d.client() for _ in range(6)]
    cards = [
        await d.card(f"30000{i}", issued_at=msk(2026, 1, 1), client=c)
        for i, c in enumerate(clients)
    ]
    await d.winback(clients[0], at, control=False, redeemed=True)
    await d.buy(cards[0], msk(2026, 11, 6), 10_000)  # came back
    await d.winback(clients[1], at, control=False)
    await d.buy(cards[1], msk(2026, 11, 6), 10_000, voided=True)  # a void is no return
    await d.winback(clients[2], at, control=True)
    await d.buy(cards[2], msk(2026, 11, 10), 10_000)  # came back, after P but in the window
    await d.winback(clients[3], at, control=True)
    await d.winback(clients[4], at, control=True, days=2)
    await d.buy(cards[4], msk(2026, 11, 6), 10_000)  # after its window
    await d.winback(clients[5], msk(2026, 10, 20), control=False)  # assigned before P
    await d.commit()
    wb = (await reports.kpis(*P)).winback
    assert (wb.offered, wb.control, wb.redeemed) == (2, 3, 1)
    assert wb.redemption_rate == 0.5
    assert wb.return_rate_offered == 0.5
    assert wb.return_rate_control == pytest.approx(1 / 3)
    assert wb.lift == pytest.approx(0.5 - 1 / 3)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("", (date(2026, 11, 10), date(2026, 11, 16))),
        ("30d", (date(2026, 10, 18), date(2026, 11, 16))),
        ("90D", (date(2026, 8, 19), date(2026, 11, 16))),
        ("month", (date(2026, 11, 1), date(2026, 11, 16))),
        ("2026-10-01 2026-10-31", (date(2026, 10, 1), date(2026, 10, 31))),
    ],
)
def test_parse_period(args: str, expected: tuple[date, date]) -> None:
    assert kpi.parse_period(args, date(2026, 11, 16)) == expected


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ("yesterday", "format"),
        ("0d", "format"),
        ("2026-10-31 2026-10-01", "order"),
        ("2026-13-01 2026-10-01", "format"),
        ("2000-01-01 2026-01-01", "too_long"),
        ("1 2 3", "format"),
    ],
)
def test_parse_period_refuses(args: str, reason: str) -> None:
    with pytest.raises(kpi.InvalidPeriod) as info:
        kpi.parse_period(args, date(2026, 11, 16))
    assert info.value.reason == reason


def test_previous_period_is_equally_long() -> None:
    assert kpi.previous_period(date(2026, 11, 1), date(2026, 11, 30)) == (
        date(2026, 10, 2),
        date(2026, 10, 31),
    )


# ------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli(
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Cli:
    """`python -m bot …` against the test's database, SQLite or PostgreSQL."""
    cli = Cli(tmp_path / "loyalty.db", monkeypatch, capsys)
    monkeypatch.setenv("DATABASE_URL", db_url)
    return cli


EXPECTED_KEYS = {
    "period",
    "impact",
    "promotions",
    "referrals",
    "cards_total",
    "cards_issued",
    "cards_issued_in_period",
    "cards_bound",
    "active_cards",
    "activity_rate",
    "purchases",
    "revenue",
    "discount_total",
    "average_check",
    "average_discount_pct",
    "frequency",
    "repeat_rate",
    "retention_rate",
    "spend_per_active_card",
    "new_buyers",
    "ltv",
    "nps",
    "program_costs",
    "roi_pct",
    "rfm",
    "by_segment",
    "digital_vs_paper",
    "winback",
    "birthday",
    "by_branch",  # one row per branch; a one-shop install has one (tests/test_kpi_branches.py)
}


def test_cli_kpi_json_has_every_key_and_null_for_division_by_zero(cli: Cli) -> None:
    result = cli("kpi", "--from", "2026-11-01", "--to", "2026-11-07", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert set(data) == EXPECTED_KEYS
    assert data["average_check"] is None and data["nps"]["score"] is None
    assert set(data["nps"]) == {"promoters", "passives", "detractors", "answers", "score"}
    assert set(data["rfm"]) == set(kpi.RFM_SEGMENTS)
    assert set(data["by_segment"]) == {"b2c", "b2b"}
    assert set(data["digital_vs_paper"]) == {"digital", "paper"}
    assert set(data["winback"]) >= {
        "offered",
        "control",
        "redeemed",
        "redemption_rate",
        "return_rate_offered",
        "return_rate_control",
        "lift",
        "lift_low",
        "lift_high",
    }
    assert set(data["birthday"]) == set(data["winback"])


async def test_cli_kpi_prints_a_period_with_purchases(session: AsyncSession, cli: Cli) -> None:
    """The figures as the CLI prints them: plain JSON numbers on either engine (PostgreSQL's
    sums are `numeric`; they used to reach `json.dumps` as Decimals and fail)."""
    await _main_fixture(session)
    # The CLI runs its own event loop (asyncio.run): give it a thread.
    result = await asyncio.to_thread(
        cli, "kpi", "--from", "2026-11-01", "--to", "2026-11-07", "--json"
    )
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert (data["purchases"], data["revenue"], data["discount_total"]) == (3, 3500.0, 175.0)
    assert (data["average_check"], data["ltv"], data["average_discount_pct"]) == (
        1166.67,
        2050.0,
        5.0,
    )
    assert (data["activity_rate"], data["repeat_rate"], data["retention_rate"]) == (0.5, 0.5, 0.5)
    assert data["by_segment"]["b2c"] == {
        "cards_issued": 2,
        "active_cards": 2,
        "activity_rate": 1.0,
        "purchases": 3,
        "revenue": 3500.0,
        "discount_total": 175.0,
        "average_check": 1166.67,
        "average_discount_pct": 5.0,
        "frequency": 1.5,
        "repeat_rate": 0.5,
        "retention_rate": 1.0,
        "spend_per_active_card": 1750.0,
    }
    table = await asyncio.to_thread(cli, "kpi", "--from", "2026-11-01", "--to", "2026-11-07")
    assert table.code == 0, table.err
    assert re.search(r"^  revenue +3,500\.00$", table.out, re.M), table.out
    assert re.search(r"^  average_check +1,166\.67$", table.out, re.M), table.out


@pytest.mark.skipif(
    on_postgres(), reason="the purchase import needs SQLite here (h/imports brings PostgreSQL)"
)
def test_cli_kpi_counts_imported_history(cli: Cli, write_file) -> None:  # type: ignore[no-untyped-def]
    path = write_file(
        "pos.csv", "card_number,date,amount\n100001,2026-11-02,1000\n100002,2026-11-03,500.50\n"
    )
    assert cli("purchases", "import", str(path)).code == 0
    data = json.loads(cli("kpi", "--from", "2026-11-01", "--to", "2026-11-07", "--json").out)
    assert (data["purchases"], data["revenue"], data["active_cards"]) == (2, 1500.5, 2)
    assert data["average_check"] == 750.25
    table = cli("kpi", "--from", "2026-11-01", "--to", "2026-11-07")
    assert table.code == 0
    assert "revenue" in table.out and "1,500.50" in table.out


@pytest.mark.parametrize(
    "args",
    [
        ("kpi", "--from", "2026-11-07", "--to", "2026-11-01"),
        ("kpi", "--from", "01.11.2026", "--to", "2026-11-07"),
        ("kpi", "--to", "2026-11-07"),
    ],
)
def test_cli_kpi_bad_dates(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1
