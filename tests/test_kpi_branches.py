"""The KPIs of a chain of branches (services.kpi: `compute(branch_id=…)`, `by_branch`, per-branch
anomalies) and `kpi --branch`, against hand-computed fixtures, on both engines."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from config import Settings
from db.database import Database
from db.models import StoreDay
from services import kpi
from tests.cli_helpers import Cli
from tests.kpi_helpers import Data, msk
from tests.test_kpi import _main_fixture

P = (date(2026, 11, 1), date(2026, 11, 7))  # previous equal period: 2026-10-25 … 10-31
CLI_P = ("--from", "2026-11-01", "--to", "2026-11-07")


@pytest.fixture
def db(engine: AsyncEngine) -> Database:
    return Database.of(engine)


@pytest.fixture
def cli(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    """`python -m bot …` against the test's database, SQLite or PostgreSQL."""
    cli = Cli(tmp_path / "loyalty.db", monkeypatch, capsys)
    monkeypatch.setenv("DATABASE_URL", db_url)
    return cli


async def _chain(session: AsyncSession) -> dict[str, Any]:
    """Two shops: the first (1) and Tartu (2); Pärnu (3) is closed and sold nothing in P.

    In P (Nov 1–7), not voided:        branch 1                branch 2 (Tartu)
      a  (home 1, Telegram)            11-02 200 000 / 10 000   11-05 100 000 / 5 000
      b  (home 2, issued 11-03)        11-06  40 000 /  2 000   11-03  50 000 / 2 500 (1st ever)
      c  (home 2)                      11-02  60 000 /  3 000   —
      e  (home 1)                      11-07  10 000 /    500 (1st ever)
    Before: a 10-28 at 1 (previous period), c 10-29 at 2 (previous period). Voided: b 11-04 at
    2. After P: a 11-08 at 2. Surveys: a's 11-02 (1) 10, c's 11-02 (1) 8, b's 11-03 (2) 3.
    """
    d = Data(session)
    tartu = await d.branch("Tartu", chat=-100222)
    await d.branch("Pärnu", chat=-100333, closed_at=msk(2026, 10, 1))
    holder, other, third = await d.client(), await d.client(), await d.client()
    a = await d.card("100001", issued_at=msk(2026, 10, 1), client=holder)
    b = await d.card("100002", issued_at=msk(2026, 11, 3), branch=tartu.id)
    c = await d.card("100003", issued_at=msk(2026, 10, 1), branch=tartu.id)
    e = await d.card("100004", issued_at=msk(2026, 10, 1))
    await d.buy(a, msk(2026, 10, 28), 100_000, discount=5_000)
    a1 = await d.buy(a, msk(2026, 11, 2), 200_000, discount=10_000)
    await d.buy(a, msk(2026, 11, 5), 100_000, discount=5_000, branch=tartu.id)
    b2 = await d.buy(b, msk(2026, 11, 3), 50_000, discount=2_500, branch=tartu.id)
    await d.buy(b, msk(2026, 11, 4), 999_900, voided=True, branch=tartu.id)
    await d.buy(b, msk(2026, 11, 6), 40_000, discount=2_000)
    await d.buy(c, msk(2026, 10, 29), 30_000, discount=1_500, branch=tartu.id)
    c1 = await d.buy(c, msk(2026, 11, 2), 60_000, discount=3_000)
    await d.buy(e, msk(2026, 11, 7), 10_000, discount=500)
    await d.buy(a, msk(2026, 11, 8), 123_400, branch=tartu.id)
    await d.survey(holder, msk(2026, 11, 2, 15), 10, purchase=a1)
    await d.survey(other, msk(2026, 11, 2, 16), 8, purchase=c1)
    await d.survey(third, msk(2026, 11, 3, 15), 3, "long queue", purchase=b2)
    await d.commit()
    return {"tartu": tartu.id}


async def test_by_branch_rows_by_hand(
    session: AsyncSession, settings: Settings, db: Database
) -> None:
    await _chain(session)
    rows = await db.report(kpi.by_branch, settings, *P)
    main, tartu = settings.store.name, "Tartu"
    assert [(r.branch_id, r.name) for r in rows] == [(1, main), (2, tartu)]  # Pärnu: closed, idle
    first, second = rows
    assert (first.purchases, first.revenue, first.discount_total, first.active_cards) == (
        4,
        310_000,
        15_500,
        4,
    )
    assert first.average_check == pytest.approx(310_000 / 4)
    assert first.average_discount_pct == pytest.approx(5.0)
    assert (first.nps, first.nps_answers, first.new_buyers) == (50.0, 2, 1)  # e's first purchase
    assert (second.purchases, second.revenue, second.discount_total, second.active_cards) == (
        2,
        150_000,
        7_500,
        2,
    )
    assert (second.nps, second.nps_answers, second.new_buyers) == (-100.0, 1, 1)  # b's first
    chain = await db.report(kpi.compute, settings, *P)
    assert (chain.purchases, chain.revenue, chain.new_buyers) == (6, 460_000, 2)
    assert sum(r.purchases for r in rows) == chain.purchases
    assert sum(r.revenue for r in rows) == chain.revenue
    # A closed branch that sold in the period is listed (after the others: no revenue first).
    later = await db.report(kpi.by_branch, settings, date(2026, 11, 8), date(2026, 11, 8))
    assert [(r.name, r.purchases, r.revenue) for r in later] == [(tartu, 1, 123_400), (main, 0, 0)]


async def test_one_branch_kpis_by_hand(
    session: AsyncSession, settings: Settings, db: Database
) -> None:
    ids = await _chain(session)
    one = await db.report(kpi.compute, settings, *P, branch_id=1)
    assert one.branch_id == 1
    assert (one.cards_total, one.cards_issued, one.cards_issued_in_period, one.cards_bound) == (
        2,
        2,
        0,
        1,
    )  # a and e are at home in the first shop
    assert (one.purchases, one.revenue, one.discount_total, one.active_cards) == (
        4,
        310_000,
        15_500,
        4,
    )
    assert one.new_buyers == 1  # e; b had bought in Tartu before
    assert (one.repeat_rate, one.retention_rate) == (0.0, 1.0)  # a: before and in P, here
    assert one.ltv == pytest.approx((300_000 + 40_000 + 60_000 + 10_000) / 4)
    assert (one.nps.promoters, one.nps.passives, one.nps.detractors, one.nps.score) == (
        1,
        1,
        0,
        50.0,
    )
    assert one.by_segment["b2c"].purchases == 4
    assert one.digital_vs_paper["digital"].revenue == 200_000  # a, bound to Telegram
    assert sum(one.rfm.values()) == 4

    two = await db.report(kpi.compute, settings, *P, branch_id=ids["tartu"])
    assert (two.cards_total, two.cards_issued_in_period) == (2, 1)  # b and c; b issued in P
    assert (two.purchases, two.revenue, two.discount_total, two.active_cards) == (
        2,
        150_000,
        7_500,
        2,
    )
    assert two.new_buyers == 1  # b: its first purchase anywhere was in Tartu, in P
    assert (two.retention_rate, two.repeat_rate) == (0.0, 0.0)  # c bought here before, not again
    assert two.ltv == pytest.approx((100_000 + 50_000 + 30_000) / 3)
    assert (two.nps.detractors, two.nps.answers, two.nps.score) == (1, 1, -100.0)
    # The win-back trial stays the chain's.
    chain = await db.report(kpi.compute, settings, *P)
    assert two.winback == chain.winback
    # The table's row of a branch is that branch's KPI set.
    row = next(r for r in await db.report(kpi.by_branch, settings, *P) if r.branch_id == 2)
    assert (row.purchases, row.revenue, row.active_cards, row.new_buyers) == (
        two.purchases,
        two.revenue,
        two.active_cards,
        two.new_buyers,
    )
    assert (row.nps, row.nps_answers) == (two.nps.score, two.nps.answers)


async def test_digest_parts_of_one_branch(
    session: AsyncSession, settings: Settings, db: Database
) -> None:
    """The weekly series and the detractors' comments of one branch: its purchases, the answers
    about them."""
    ids = await _chain(session)
    last = P[1]
    tartu = await db.report(kpi.weekly_series, settings, last, 2, branch_id=ids["tartu"])
    assert [(w.first, w.revenue, w.active_cards, w.nps_answers, w.nps_score) for w in tartu] == [
        (date(2026, 10, 25), 30_000, 1, 0, None),
        (date(2026, 11, 1), 150_000, 2, 1, -100.0),
    ]
    first = await db.report(kpi.weekly_series, settings, last, 2, branch_id=1)
    assert [(w.revenue, w.active_cards, w.nps_answers) for w in first] == [
        (100_000, 1, 0),
        (310_000, 4, 2),
    ]
    chain = await db.report(kpi.weekly_series, settings, last, 2)
    assert [w.revenue for w in chain] == [130_000, 460_000]
    said = await db.report(kpi.detractor_comments, settings, *P, branch_id=ids["tartu"])
    assert [(c.score, c.text) for c in said] == [(3, "long queue")]
    assert await db.report(kpi.detractor_comments, settings, *P, branch_id=1) == []
    assert len(await db.report(kpi.detractor_comments, settings, *P)) == 1


async def test_store_figures_per_branch_and_for_the_chain(
    session: AsyncSession, settings: Settings, db: Database
) -> None:
    """The first shop has every day of P, Tartu three: each branch's days against its own card
    purchases; the chain adds them up."""
    ids = await _chain(session)
    session.add_all(
        StoreDay(day=date(2026, 11, day), revenue=1_000_000, checks=40) for day in range(1, 8)
    )
    session.add_all(
        StoreDay(day=date(2026, 11, day), branch_id=ids["tartu"], revenue=1_000_000, checks=40)
        for day in (3, 4, 5)
    )
    await session.commit()
    one = (await db.report(kpi.compute, settings, *P, branch_id=1)).impact.store
    assert (one.days_covered, one.revenue, one.checks) == (7, 7_000_000, 280)
    assert (one.card_revenue, one.card_purchases) == (310_000 - 15_500, 4)
    two = (await db.report(kpi.compute, settings, *P, branch_id=ids["tartu"])).impact.store
    assert (two.days_covered, two.covered) == (3, [(date(2026, 11, 3), date(2026, 11, 5))])
    assert (two.revenue, two.checks) == (3_000_000, 120)
    assert (two.card_revenue, two.card_purchases) == (95_000 + 47_500, 2)  # a 11-05, b 11-03
    chain = (await db.report(kpi.compute, settings, *P)).impact.store
    assert (chain.days_covered, chain.covered) == (7, [P])
    assert (chain.revenue, chain.checks) == (10_000_000, 400)
    assert (chain.card_revenue, chain.card_purchases) == (294_500 + 142_500, 6)
    assert chain.average_check_others == pytest.approx((10_000_000 - 437_000) / (400 - 6))


async def test_a_chain_of_one_gives_the_same_figures(
    session: AsyncSession, settings: Settings, db: Database
) -> None:
    """Every figure of `compute(branch_id=1)` is the chain's when there is one shop (the
    test_kpi fixture, with surveys — one tied to no purchase — and some store days)."""
    await _main_fixture(session)
    d = Data(session, first_tg=800000)
    client = await d.client()
    await d.survey(client, msk(2026, 11, 3), 9)
    await d.survey(client, msk(2026, 11, 4), 2, "slow")
    session.add_all(StoreDay(day=date(2026, 11, day), revenue=500_000, checks=9) for day in (2, 3))
    await session.commit()
    for last in (P[1], date(2026, 11, 30)):
        assert await db.report(kpi.at_risk_cards, settings, last, branch_id=1) == (
            await db.report(kpi.at_risk_cards, settings, last)
        )
        assert await db.report(kpi.weekly_series, settings, last, 4, branch_id=1) == (
            await db.report(kpi.weekly_series, settings, last, 4)
        )
    for period in (P, (date(2026, 10, 1), date(2026, 11, 30))):
        assert await db.report(kpi.detractor_comments, settings, *period, branch_id=1) == (
            await db.report(kpi.detractor_comments, settings, *period)
        )
        chain = await db.report(kpi.compute, settings, *period)
        one = await db.report(kpi.compute, settings, *period, branch_id=1)
        assert one.branch_id == 1
        assert replace(one, branch_id=None) == chain
        (row,) = await db.report(kpi.by_branch, settings, *period)
        assert (row.branch_id, row.name) == (1, settings.store.name)
        assert (row.purchases, row.revenue, row.discount_total, row.active_cards) == (
            chain.purchases,
            chain.revenue,
            chain.discount_total,
            chain.active_cards,
        )
        assert (row.nps, row.nps_answers, row.new_buyers) == (
            chain.nps.score,
            chain.nps.answers,
            chain.new_buyers,
        )
        assert row.average_check == chain.average_check
        assert row.average_discount_pct == chain.average_discount_pct


async def _cashiers(session: AsyncSession) -> int:
    """Branch 1: cashiers 11 and 12 give 5 %, 13 gives 20 %. Tartu: 21 and 22 give 25 %, 23
    30 %. Three sales each in P."""
    d = Data(session)
    tartu = await d.branch("Tartu", chat=-100222)
    card = await d.card("100001", issued_at=msk(2026, 10, 1))
    for cashier, pct, branch in (
        (11, 5, 1),
        (12, 5, 1),
        (13, 20, 1),
        (21, 25, tartu.id),
        (22, 25, tartu.id),
        (23, 30, tartu.id),
    ):
        for day in (2, 3, 4):
            await d.buy(
                card,
                msk(2026, 11, day, 10 + cashier % 10),
                10_000,
                discount=100 * pct,
                cashier=cashier,
                branch=branch,
            )
    await d.commit()
    return tartu.id


async def test_a_cashier_is_compared_with_the_same_branch(
    session: AsyncSession, settings: Settings, db: Database
) -> None:
    """13's 20 % stands out among their colleagues' 5 % — not among the whole chain's cashiers
    (5, 5, 25, 25, 30: mean 18, σ 10.8); 23's 30 % does not stand out in Tartu (1.5 × 25)."""
    tartu = await _cashiers(session)
    found = await db.report(kpi.anomalies, settings, *P)
    assert [(g.cashier_id, g.branch_id, g.purchases) for g in found.cashiers] == [(13, 1, 3)]
    (generous,) = found.cashiers
    assert generous.share_pct == pytest.approx(20.0)
    assert generous.others_mean_pct == pytest.approx(5.0)  # their colleagues, not the chain
    assert (await db.report(kpi.anomalies, settings, *P, branch_id=tartu)).cashiers == []
    mine = await db.report(kpi.anomalies, settings, *P, branch_id=1)
    assert [g.cashier_id for g in mine.cashiers] == [13]
    # The same card used 18 times over three days: 6 a day in the chain, 3 in each branch.
    assert {(c.day.day, c.uses) for c in found.cards} == {(2, 6), (3, 6), (4, 6)}
    assert (await db.report(kpi.anomalies, settings, *P, branch_id=tartu)).cards == []


async def test_cli_kpi_branch_text_and_json(session: AsyncSession, cli: Cli) -> None:
    await _chain(session)
    result = await asyncio.to_thread(cli, "kpi", *CLI_P, "--branch", " tartu ", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["branch"] == "Tartu"
    assert (data["purchases"], data["revenue"], data["discount_total"]) == (2, 1500.0, 75.0)
    assert (data["active_cards"], data["new_buyers"], data["cards_total"]) == (2, 1, 2)
    assert "branch_id" not in data
    assert [row["name"] for row in data["by_branch"]] == ["Our Store", "Tartu"]
    assert data["by_branch"][1] == {
        "branch_id": 2,
        "name": "Tartu",
        "purchases": 2,
        "revenue": 1500.0,
        "discount_total": 75.0,
        "active_cards": 2,
        "average_check": 750.0,
        "average_discount_pct": 5.0,
        "nps": -100.0,
        "nps_answers": 1,
        "new_buyers": 1,
    }
    whole = json.loads((await asyncio.to_thread(cli, "kpi", *CLI_P, "--json")).out)
    assert "branch" not in whole
    assert (whole["purchases"], whole["revenue"]) == (6, 4600.0)
    assert whole["by_branch"] == data["by_branch"]

    text = await asyncio.to_thread(cli, "kpi", *CLI_P, "--branch", "Tartu")
    assert text.code == 0, text.err
    lines = text.out.splitlines()
    assert lines[0] == "KPIs 2026-11-01 to 2026-11-07, branch Tartu (Europe/Moscow, RUB)"
    assert any(line.split() == ["revenue", "1,500.00"] for line in lines)
    table = lines[lines.index("Branches by revenue:") + 1 :]
    assert table[0].split() == [
        "branch",
        "purchases",
        "revenue",
        "active",
        "cards",
        "average",
        "check",
        "discount",
        "%",
        "NPS",
        "answers",
        "new",
        "buyers",
    ]
    main = ["Our", "Store", "4", "3,100.00", "4", "775.00", "5.00", "50.00", "2", "1"]
    assert table[1].split() == main
    assert table[2].split() == [
        "Tartu",
        "2",
        "1,500.00",
        "2",
        "750.00",
        "5.00",
        "-100.00",
        "1",
        "1",
    ]


async def test_cli_kpi_refuses_an_unknown_branch(session: AsyncSession, cli: Cli) -> None:
    await _chain(session)
    for args in (("--json",), ()):
        result = await asyncio.to_thread(cli, "kpi", *CLI_P, "--branch", "Narva", *args)
        assert result.code == 2
        assert result.out == ""
        (line,) = result.err.strip().splitlines()
        assert "Narva" in line and "python -m bot branches list" in line


async def test_cli_kpi_of_a_single_shop_never_says_branch(session: AsyncSession, cli: Cli) -> None:
    await _main_fixture(session)
    text = await asyncio.to_thread(cli, "kpi", *CLI_P)
    assert text.code == 0, text.err
    assert "branch" not in text.out.lower()
    data = json.loads((await asyncio.to_thread(cli, "kpi", *CLI_P, "--json")).out)
    assert [(row["name"], row["purchases"], row["revenue"]) for row in data["by_branch"]] == [
        ("Our Store", 3, 3500.0)
    ]
    # The first shop by its name (STORE_NAME) is the whole shop.
    one = json.loads(
        (await asyncio.to_thread(cli, "kpi", *CLI_P, "--branch", "our store", "--json")).out
    )
    assert one["branch"] == "Our Store"
    assert {k: v for k, v in one.items() if k != "branch"} == data


async def test_store_sales_by_branch_reach_the_branch_kpis(
    session: AsyncSession, cli: Cli, write_file: Any
) -> None:
    await _chain(session)
    path = write_file(
        "till.csv",
        "date,revenue,checks,branch\n2026-11-03,10000,40,Tartu\n2026-11-03,5000,20,\n",
    )
    result = await asyncio.to_thread(cli, "store-sales", "import", str(path))
    assert result.code == 0, result.err
    tartu = json.loads(
        (await asyncio.to_thread(cli, "kpi", *CLI_P, "--branch", "Tartu", "--json")).out
    )["impact"]["store"]
    assert (tartu["revenue"], tartu["checks"], tartu["card_purchases"]) == (10000.0, 40, 1)
    assert tartu["card_revenue"] == 475.0  # b's 11-03 purchase in Tartu, paid
    chain = json.loads((await asyncio.to_thread(cli, "kpi", *CLI_P, "--json")).out)["impact"][
        "store"
    ]
    assert (chain["revenue"], chain["checks"], chain["card_purchases"]) == (15000.0, 60, 1)
    bad = write_file("bad.csv", "date,revenue,checks,branch\n2026-11-04,1,1,Narva\n")
    before = await asyncio.to_thread(cli, "kpi", *CLI_P, "--json")
    refused = await asyncio.to_thread(cli, "store-sales", "import", str(bad))
    assert refused.code == 1
    assert "bad.csv:2: branch 'Narva' is not a branch of the chain" in refused.err
    after = await asyncio.to_thread(cli, "kpi", *CLI_P, "--json")
    assert after.out == before.out
