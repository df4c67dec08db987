"""Program impact (`Kpis.impact`): before/after binding, members vs paper, the store's own
totals — against a hand-computed fixture on both engines, in `kpi --json`, in /stats and in
the weekly digest."""

from __future__ import annotations

import asyncio
import html
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from aiogram.utils.i18n import I18n
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.i18n import create_i18n
from config import Settings
from db.models import StoreDay
from handlers.owner_reports import digest_message
from services import kpi
from services.reports import ReportService
from tests.cli_helpers import Cli
from tests.conftest import OWNER_ID, App
from tests.kpi_helpers import Data, msk, report_service

NOVEMBER = (date(2026, 11, 1), date(2026, 11, 30))  # P; its end is Dec 1 00:00 store time
SENTENCE = "Not proof of an effect: members choose to join"


@pytest.fixture
def reports(engine: AsyncEngine, settings: Settings) -> ReportService:
    return report_service(engine, settings)


async def impact_fixture(session: AsyncSession) -> Data:
    """Store time is Moscow; a binding at 00:00 and purchases at 12:00 make whole and half
    days. Every purchase is discounted at the card's 5 % (amount × 5 // 100).

    Before/after as of the end of November (Dec 1 00:00):
      A bound Nov 1 00:00, first purchase Oct 2 12:00: before 29.5 days, after 30 → w = 29.5
        before [Oct 2 12:00, Nov 1): Oct 2, Oct 20 (100 + 200)       → 2 purchases, 300.00
        after [Nov 1, Nov 30 12:00): Nov 5, 10, 20 (3 × 100)         → 3 purchases, 300.00
        (Nov 30 12:00 is exactly w after binding: outside the half-open window)
      B bound Oct 1 00:00, first purchase Mar 1 12:00: before 213.5 days, after 61 → w = 61
        before [Aug 1, Oct 1): Aug 15, Sep 10 (2 × 500); Mar 1 too early, Sep 20 voided
        after [Oct 1, Dec 1): Oct 5, Nov 25 (2 × 300); Dec 5 is after P
      E bound Jun 1 00:00, first purchase Mar 1 12:00: 91.5 days before, 183 after → w = 90
        (the cap)
        before [Mar 3 00:00, Jun 1): Mar 3 00:00, May 20 (200 + 400); Mar 1, Mar 2 23:59
        too early
        after [Jun 1, Aug 30 00:00): Jun 10, Aug 29 (2 × 450); Aug 30 00:00, Sep 5 too late
      C bound Nov 20 never bought before binding, D bound Jun 1 never after it, F is paper,
      G is bound only on Dec 3 (after P): none of them is compared.
    """
    d = Data(session)
    a = await d.card("100001", issued_at=msk(2026, 10, 2), client=await d.client())
    a.bound_at = msk(2026, 11, 1, 0)
    b = await d.card("100002", issued_at=msk(2026, 3, 1), client=await d.client())
    b.bound_at = msk(2026, 10, 1, 0)
    c = await d.card("100003", issued_at=msk(2026, 11, 20, 0), client=await d.client())
    dd = await d.card("100004", issued_at=msk(2026, 1, 10), client=await d.client())
    dd.bound_at = msk(2026, 6, 1, 0)
    e = await d.card("100005", issued_at=msk(2026, 3, 1), client=await d.client())
    e.bound_at = msk(2026, 6, 1, 0)
    f = await d.card("100006", issued_at=msk(2026, 9, 1))  # paper
    g = await d.card("100007", issued_at=msk(2026, 9, 1), client=await d.client())
    g.bound_at = msk(2026, 12, 3, 0)
    for day, amount in ((msk(2026, 10, 2), 10_000), (msk(2026, 10, 20), 20_000)):
        await d.buy(a, day, amount)
    for day in (5, 10, 20):
        await d.buy(a, msk(2026, 11, day), 10_000)
    await d.buy(a, msk(2026, 11, 30), 99_900)
    await d.buy(b, msk(2026, 3, 1), 77_700)
    await d.buy(b, msk(2026, 8, 15), 50_000)
    await d.buy(b, msk(2026, 9, 10), 50_000)
    await d.buy(b, msk(2026, 9, 20), 88_800, voided=True)
    await d.buy(b, msk(2026, 10, 5), 30_000)
    await d.buy(b, msk(2026, 11, 25), 30_000)
    await d.buy(b, msk(2026, 12, 5), 30_000)
    await d.buy(c, msk(2026, 11, 21), 15_000)
    await d.buy(dd, msk(2026, 2, 1), 10_000)
    await d.buy(e, msk(2026, 3, 1), 11_100)
    await d.buy(e, msk(2026, 3, 2, 23, 59), 5_500)  # a minute before E's window
    await d.buy(e, msk(2026, 3, 3, 0), 20_000)  # the very first moment of it
    await d.buy(e, msk(2026, 5, 20), 40_000)
    await d.buy(e, msk(2026, 6, 10), 45_000)
    await d.buy(e, msk(2026, 8, 29), 45_000)
    await d.buy(e, msk(2026, 8, 30, 0), 33_300)  # the moment E's window ends
    await d.buy(e, msk(2026, 9, 5), 22_200)
    await d.buy(f, msk(2026, 11, 3), 25_000)
    await d.buy(f, msk(2026, 11, 4), 25_000)
    await d.buy(g, msk(2026, 11, 15), 40_000)
    await d.commit()
    return d


async def store_days(session: AsyncSession, days: list[date]) -> None:
    """Each day: 10,000.00 of revenue in 40 checks."""
    session.add_all(StoreDay(day=day, revenue=1_000_000, checks=40) for day in days)
    await session.commit()


def november(first: int, last: int) -> list[date]:
    return [date(2026, 11, day) for day in range(first, last + 1)]


# The card purchases of November (gross, discount 5 %): A 3 × 100 + 999 (Nov 30), B 300,
# C 150, F 2 × 250, G 400 → 9 purchases, gross 2,649.00, discounts 132.45, paid 2,516.55.
NOVEMBER_PAID = 251_655


async def test_before_after_by_hand(session: AsyncSession, reports: ReportService) -> None:
    await impact_fixture(session)
    ba = (await reports.kpis(*NOVEMBER)).impact.before_after
    assert ba.cards == 3  # A, B, E
    # Σw = 29.5 + 61 + 90 = 180.5 card-days on each side.
    assert ba.window_days == pytest.approx(180.5 / 3)
    # before: 2 + 2 + 2 = 6 purchases, 300 + 1,000 + 600 = 1,900.00
    assert (ba.before.purchases, ba.before.revenue) == (6, 190_000)
    assert ba.before.frequency == pytest.approx(6 / 180.5 * 30)  # 0.997 per 30 days
    assert ba.before.average_check == pytest.approx(190_000 / 6)
    # after: 3 + 2 + 2 = 7 purchases, 300 + 600 + 900 = 1,800.00
    assert (ba.after.purchases, ba.after.revenue) == (7, 180_000)
    assert ba.after.frequency == pytest.approx(7 / 180.5 * 30)  # 1.163 per 30 days
    assert ba.after.average_check == pytest.approx(180_000 / 7)


async def test_before_after_uses_only_what_happened_by_the_end_of_the_period(
    session: AsyncSession, reports: ReportService
) -> None:
    """As of the end of Nov 15: A's window is 15 days (after), B's 46 (after); E's stays 90.
    A: before [Oct 17, Nov 1) Oct 20 → 1; after [Nov 1, Nov 16) Nov 5, 10 → 2.
    B: before [Aug 16, Oct 1) Sep 10 → 1 (Aug 15 12:00 is too early); after Oct 5 → 1.
    E: 2 and 2 as at the end of November."""
    await impact_fixture(session)
    ba = (await reports.kpis(date(2026, 11, 9), date(2026, 11, 15))).impact.before_after
    assert ba.cards == 3
    assert ba.window_days == pytest.approx((15 + 46 + 90) / 3)
    assert (ba.before.purchases, ba.before.revenue) == (4, 20_000 + 50_000 + 60_000)
    assert (ba.after.purchases, ba.after.revenue) == (5, 20_000 + 30_000 + 90_000)
    assert ba.after.frequency == pytest.approx(5 / 151 * 30)


async def test_members_vs_paper_by_hand(session: AsyncSession, reports: ReportService) -> None:
    await impact_fixture(session)
    k = await reports.kpis(*NOVEMBER)
    members, paper = k.impact.members_vs_paper["members"], k.impact.members_vs_paper["paper"]
    # Members (bound by the end of P): A 4 purchases (300 + 999), B 1 (300), C 1 (150).
    assert (members.active_cards, members.purchases, members.revenue) == (3, 6, 174_900)
    assert members.frequency == 2.0 and members.average_check == pytest.approx(174_900 / 6)
    # Paper: F 2 × 250, and G, bound only after P, 400.
    assert (paper.active_cards, paper.purchases, paper.revenue) == (2, 3, 90_000)
    assert paper.frequency == 1.5 and paper.average_check == 30_000
    # The same groups as the KPI set's digital/paper split: computed once.
    assert members is k.digital_vs_paper["digital"] and paper is k.digital_vs_paper["paper"]


async def test_store_without_store_days_is_null(
    session: AsyncSession, reports: ReportService
) -> None:
    await impact_fixture(session)
    await store_days(session, [date(2026, 10, 31), date(2026, 12, 1)])  # outside P
    store = (await reports.kpis(*NOVEMBER)).impact.store
    assert store == kpi.StoreFigures()
    assert store.revenue is None and store.card_share is None and store.covered == []


async def test_store_every_day_covered(session: AsyncSession, reports: ReportService) -> None:
    await impact_fixture(session)
    await store_days(session, november(1, 30))
    store = (await reports.kpis(*NOVEMBER)).impact.store
    # 30 days × 10,000.00 in 40 checks = 300,000.00 in 1,200 checks.
    assert (store.days_covered, store.covered) == (30, [NOVEMBER])
    assert (store.revenue, store.checks) == (30_000_000, 1_200)
    assert (store.card_revenue, store.card_purchases) == (NOVEMBER_PAID, 9)
    assert store.card_share == pytest.approx(251_655 / 30_000_000)  # 0.84 %
    assert store.average_check_cardholders == pytest.approx(251_655 / 9)  # 279.62
    # Everyone else: (300,000.00 − 2,516.55) / (1,200 − 9) = 249.78
    assert store.average_check_others == pytest.approx((30_000_000 - 251_655) / 1_191)


async def test_store_some_days_covered(session: AsyncSession, reports: ReportService) -> None:
    await impact_fixture(session)
    await store_days(session, [date(2026, 10, 31), *november(1, 10), *november(20, 22)])
    store = (await reports.kpis(*NOVEMBER)).impact.store
    assert store.days_covered == 13
    assert store.covered == [
        (date(2026, 11, 1), date(2026, 11, 10)),
        (date(2026, 11, 20), date(2026, 11, 22)),
    ]
    assert (store.revenue, store.checks) == (13_000_000, 520)
    # Card purchases on those days, paid: F Nov 3 and 4 (2 × 237.50), A Nov 5, 10, 20
    # (3 × 95.00), C Nov 21 (142.50) = 902.50 in 6 purchases (B's Nov 25 and A's Nov 30 and
    # G's Nov 15 fall on days without store totals).
    assert (store.card_revenue, store.card_purchases) == (90_250, 6)
    assert store.card_share == pytest.approx(90_250 / 13_000_000)
    assert store.average_check_cardholders == pytest.approx(90_250 / 6)
    assert store.average_check_others == pytest.approx((13_000_000 - 90_250) / (520 - 6))


async def test_store_figures_below_the_cards_give_no_average_for_the_others(
    session: AsyncSession, reports: ReportService
) -> None:
    """Totals that cannot be complete (less revenue than the card purchases of the day) leave
    the others' average check empty instead of negative."""
    await impact_fixture(session)
    session.add(StoreDay(day=date(2026, 11, 3), revenue=10_000, checks=5))  # F bought 237.50
    await session.commit()
    store = (await reports.kpis(*NOVEMBER)).impact.store
    assert (store.card_purchases, store.card_revenue) == (1, 23_750)
    assert store.average_check_others is None


async def test_an_empty_program_has_nothing_to_compare(reports: ReportService) -> None:
    impact = (await reports.kpis(*NOVEMBER)).impact
    assert impact.before_after == kpi.BeforeAfter()
    assert impact.before_after.before.frequency is None
    assert impact.members_vs_paper["members"].active_cards == 0


# ------------------------------------------------------------------------------- JSON


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


async def test_kpi_json_has_the_impact(session: AsyncSession, cli: Cli) -> None:
    await impact_fixture(session)
    await store_days(session, november(1, 30))
    result = await asyncio.to_thread(
        cli, "kpi", "--from", "2026-11-01", "--to", "2026-11-30", "--json"
    )
    assert result.code == 0, result.err
    impact = json.loads(result.out)["impact"]
    assert impact == {
        "before_after": {
            "cards": 3,
            "window_days": 60.1667,  # 180.5 / 3
            "before": {
                "purchases": 6,
                "revenue": 1900.0,
                "frequency": 0.9972,  # 6 / 180.5 × 30
                "average_check": 316.67,  # 1,900 / 6
            },
            "after": {
                "purchases": 7,
                "revenue": 1800.0,
                "frequency": 1.1634,  # 7 / 180.5 × 30
                "average_check": 257.14,  # 1,800 / 7
            },
        },
        "members_vs_paper": {
            "members": {
                "active_cards": 3,
                "purchases": 6,
                "frequency": 2.0,
                "average_check": 291.5,
            },
            "paper": {"active_cards": 2, "purchases": 3, "frequency": 1.5, "average_check": 300.0},
        },
        "store": {
            "days_covered": 30,
            "covered": [["2026-11-01", "2026-11-30"]],
            "revenue": 300000.0,
            "checks": 1200,
            "card_revenue": 2516.55,
            "card_purchases": 9,
            "card_share": 0.0084,  # 2,516.55 / 300,000
            "average_check_cardholders": 279.62,  # 2,516.55 / 9
            "average_check_others": 249.78,  # 297,483.45 / 1,191
        },
        "causal": "winback.lift",
    }


async def test_kpi_json_store_is_null_without_store_days(cli: Cli) -> None:
    result = await asyncio.to_thread(
        cli, "kpi", "--from", "2026-11-01", "--to", "2026-11-07", "--json"
    )
    assert result.code == 0, result.err
    impact = json.loads(result.out)["impact"]
    assert impact["store"] == {
        "days_covered": 0,
        "covered": [],
        "revenue": None,
        "checks": None,
        "card_revenue": None,
        "card_purchases": None,
        "card_share": None,
        "average_check_cardholders": None,
        "average_check_others": None,
    }
    assert impact["before_after"]["cards"] == 0
    assert impact["before_after"]["before"]["frequency"] is None


# ---------------------------------------------------------------------- the owner sees it


def _visible(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text))


async def test_stats_shows_the_impact_block_and_why_it_is_not_causal(app: App) -> None:
    async with app.sessionmaker() as session:
        await impact_fixture(session)
        await store_days(session, november(1, 30))
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/stats 2026-11-01 2026-11-30")
    reply = await owner.wait_message("Program impact")
    text = reply.text
    assert (
        "Before → after linking to Telegram (3 cards): 1 → 1.16 purchases per 30 days, "
        "average check ₽316.67 → ₽257.14"
    ) in text
    assert (
        "Telegram members vs paper only: 2 vs 1.5 purchases per active card, "
        "average check ₽291.50 vs ₽300"
    ) in text
    assert (
        "Store totals for 30 of 30 days: 0.8 % of revenue through cards; "
        "average check: cardholders ₽279.62, everyone else ₽249.78"
    ) in text
    assert SENTENCE in text and "hold-out lifts (win-back, birthdays, campaigns)" in text
    # The sentence closes the block: the three comparisons come before it, nothing else.
    block = text.split("Program impact", 1)[1].split("\n")
    assert len(block) >= 5 and block[4].startswith(SENTENCE)


async def test_stats_shows_only_lines_with_data_and_no_block_without_any(app: App) -> None:
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/stats 2026-11-01 2026-11-30")
    reply = await owner.wait_message("Program KPIs")
    assert "Program impact" not in reply.text and SENTENCE not in reply.text
    async with app.sessionmaker() as session:
        d = Data(session)
        member = await d.card("100001", issued_at=msk(2026, 10, 1), client=await d.client())
        paper = await d.card("100002", issued_at=msk(2026, 10, 1))
        await d.buy(member, msk(2026, 11, 2), 10_000)
        await d.buy(paper, msk(2026, 11, 3), 20_000)
        await d.commit()
    await owner.send("/stats 2026-11-01 2026-11-30")
    reply = await owner.wait_message("Program impact")
    assert "Telegram members vs paper only" in reply.text and SENTENCE in reply.text
    assert "Before → after" not in reply.text and "Store totals" not in reply.text


async def test_the_digest_ends_with_the_block(
    sessionmaker: async_sessionmaker[AsyncSession], reports: ReportService
) -> None:
    async with sessionmaker() as session:
        d = await impact_fixture(session)
        await store_days(session, november(9, 15))
        client = await d.client()
        for i in range(8):
            await d.survey(client, msk(2026, 11, 11, 10 + i), 2, comment="Too slow & rude " * 30)
        await d.commit()
    i18n: I18n = create_i18n("en")
    with i18n.context(), i18n.use_locale("en"):
        text, _png = await digest_message(reports, datetime(2026, 11, 16, 9, tzinfo=UTC))
    visible = _visible(text)
    assert len(visible) <= 4096
    # The week Nov 9–15: the block after the sections, every line with data, the sentence last.
    assert "Program impact" in visible and visible.rstrip().endswith(
        "the figures that measure what the program causes."
    )
    assert "Before → after linking to Telegram (3 cards)" in visible
    assert "Telegram members vs paper only" in visible
    assert "Store totals for 7 of 7 days" in visible
    assert "What detractors said" in visible  # the sections fit into what the block leaves
    assert visible.index("Worth a look") < visible.index("Program impact")
