"""Happy hours: `promos add|list|end` (every refusal writes nothing), the owner's /promos, and
the till applying a promotion inside its window (store time) as its own line of the quote,
with the purchase keeping it. In a chain of shops: a happy hour for one branch applies to the
quotes made there only, one for every branch everywhere, the best applicable one wins."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from aiogram.utils.i18n import gettext as _
from sqlalchemy import select

from bot.i18n import create_i18n
from db.models import Promotion, Purchase
from handlers import formatting
from services import kpi
from services.branches import MAIN_BRANCH_ID
from services.promotions import (
    InvalidPromotion,
    PromotionService,
    active,
    parse_days,
    parse_time,
)
from services.reports import ReportService
from tests.branch_helpers import (
    BRANCH_B,
    CASHIER_B,
    branch_service,
    cashier_of,
    group_of,
    quote_in_group,
    seed_chain,
    sell_in_group,
)
from tests.cli_helpers import Cli
from tests.conftest import CASHIER_ID, OWNER_ID, App
from tests.till_helpers import purchases, quote_for, seed_bound

# The tests' clock starts on Monday 2026-11-16 09:00 UTC: 12:00 in the store (Europe/Moscow).
MONDAY_NOON_UTC = datetime.fromisoformat("2026-11-16T09:00:00+00:00")


@pytest.fixture
def cli(db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(db_path, monkeypatch, capsys)


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("mon", ["mon"]),
        ("mon,tue", ["mon", "tue"]),
        ("MON-fri", ["mon", "tue", "wed", "thu", "fri"]),
        ("sat, sun", ["sat", "sun"]),
        ("all", ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
    ],
)
def test_days_read_as_the_owner_writes_them(text: str, days: list[str]) -> None:
    names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    assert parse_days(text) == sum(1 << names.index(day) for day in days)


@pytest.mark.parametrize("text", ["", "funday", "fri-mon", "mon,,", "1,2"])
def test_days_that_are_not_days_are_refused(text: str) -> None:
    with pytest.raises(InvalidPromotion):
        parse_days(text)


def test_times_are_store_times() -> None:
    assert (parse_time("10:00"), parse_time("9:30"), parse_time("24:00")) == (600, 570, 1440)
    for bad in ("10", "25:00", "10:60", "ten", "24:01"):
        with pytest.raises(InvalidPromotion):
            parse_time(bad)


def test_cli_adds_lists_and_ends_and_refuses_without_writing(cli: Cli) -> None:
    result = cli(
        "promos", "add", "--name", "Lunch", "--bonus-pct", "3", "--days", "mon-fri",
        "--from", "12:00", "--to", "14:00",
    )  # fmt: skip
    assert (result.code, result.out) == (0, "added Lunch: +3% mon,tue,wed,thu,fri 12:00-14:00\n")
    before = cli.query("SELECT * FROM promotions")
    refusals = [
        (["--name", "Lunch", "--bonus-pct", "5"], "exists already"),
        (["--name", "X", "--bonus-pct", "0"], "the bonus must be 1 to 99 %"),
        (["--name", "X", "--bonus-pct", "100"], "the bonus must be 1 to 99 %"),
        (["--name", " ", "--bonus-pct", "3"], "needs a name"),
        (["--name", "X", "--bonus-pct", "3", "--until", "2020-01-01"], "already past"),
    ]
    for extra, reason in refusals:
        args = ["--days", "mon", "--from", "12:00", "--to", "14:00", *extra]
        result = cli("promos", "add", *args)
        assert result.code == 1 and reason in result.err, (extra, result)
        assert len(result.err.splitlines()) == 1
    for args in (
        ["--days", "someday", "--from", "12:00", "--to", "14:00"],
        ["--days", "mon", "--from", "noon", "--to", "14:00"],
        ["--days", "mon", "--from", "12:00", "--to", "12:00"],
    ):
        result = cli("promos", "add", "--name", "X", "--bonus-pct", "3", *args)
        assert result.code in (1, 2) and len(result.err.splitlines()) == 1, (args, result)
    assert cli.query("SELECT * FROM promotions") == before

    assert cli("promos", "list").out == "Lunch: +3% mon,tue,wed,thu,fri 12:00-14:00\n"
    assert cli("promos", "end", "Lunch").code == 0
    assert cli("promos", "list").out == "no running promotions\n"
    assert "Lunch" in cli("promos", "list", "--all").out
    assert cli("promos", "end", "Lunch").code == 1  # not running any more


async def test_the_till_applies_a_happy_hour_inside_its_window_only(app: App) -> None:
    await seed_bound(app.sessionmaker)
    promos = PromotionService(app.db, app.settings, app.clock)
    await promos.add(
        "Lunch", bonus_pct=3, weekdays=parse_days("mon"), starts=720, ends=840, until=None
    )
    await promos.add(
        "Small", bonus_pct=1, weekdays=parse_days("all"), starts=0, ends=1440, until=None
    )
    cashier = app.tg.user(CASHIER_ID, language_code="en")

    # Monday 12:00 store time: Lunch (the highest of the two running) is on the quote.
    quote = await quote_for(cashier)
    assert "Happy hour (Lunch): +3 %" in (quote.text or "")
    assert "Discount: 8 % = ₽200" in (quote.text or "")  # the card's 5 % + 3 %
    await cashier.press(quote, "✅ Confirm")
    receipt = await cashier.wait_message("recorded")
    assert "₽2,300" in (receipt.text or "")
    async with app.sessionmaker() as session:
        purchase = (await session.scalars(select(Purchase))).one()
        lunch = await session.scalar(select(Promotion).where(Promotion.name == "Lunch"))
    assert lunch is not None
    assert (purchase.promo_id, purchase.promo_pct, purchase.discount_pct) == (lunch.id, 3, 8)
    today = app.clock().astimezone(app.settings.store.tz).date()
    figures = kpi.to_json(await ReportService(app.db, app.settings).kpis(today, today), 2)
    assert figures["promotions"] == {"purchases": 1, "revenue": 2500.0, "discount_total": 200.0}

    # 14:00 the window is over (its end is exclusive): only "Small" remains.
    app.clock.set(MONDAY_NOON_UTC + timedelta(hours=2))
    quote = await quote_for(cashier)
    assert "Happy hour (Small): +1 %" in (quote.text or "")
    await promos.end("Small")
    quote = await quote_for(cashier)
    assert "Happy hour" not in (quote.text or "") and "Discount: 5 %" in (quote.text or "")
    # Tuesday noon: not a Lunch day.
    app.clock.set(MONDAY_NOON_UTC + timedelta(days=1))
    assert "Happy hour" not in ((await quote_for(cashier)).text or "")


async def test_a_happy_hours_last_day_is_inclusive(app: App) -> None:
    promos = PromotionService(app.db, app.settings, app.clock)
    await promos.add(
        "Week", bonus_pct=2, weekdays=parse_days("all"), starts=0, ends=1440,
        until=date(2026, 11, 17),
    )  # fmt: skip
    tz = app.settings.store.tz
    for moment, running in (
        (MONDAY_NOON_UTC, True),
        (datetime(2026, 11, 17, 20, 59, tzinfo=tz), True),  # Tuesday 20:59 store time
        (datetime(2026, 11, 18, 0, 0, tzinfo=tz), False),  # Wednesday
    ):

        def unit(session, at=moment):  # type: ignore[no-untyped-def]
            return active(session, at, tz, MAIN_BRANCH_ID)

        found = await app.db.read(unit)
        assert (found is not None) == running, moment


async def test_the_owner_runs_happy_hours_from_telegram(app: App) -> None:
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/promos add Lunch 3 mon-fri 12:00-14:00 2026-12-31")
    started = await owner.wait_message("Happy hour started")
    assert "<b>Lunch</b>: +3 %, Mon, Tue, Wed, Thu, Fri, 12:00–14:00, until" in (started.html or "")

    for bad, reason in (
        ("/promos add Lunch 5 mon 10:00-11:00", "exists already"),
        ("/promos add Late 3 mon 14:00-12:00", "must start before they end"),
        ("/promos add Late 300 mon 10:00-12:00", "from 1 to 99"),
        ("/promos add Late 3 someday 10:00-12:00", "Days are mon"),
        ("/promos add Late 3 mon 10:00-12:00 yesterday", "The last day"),
        ("/promos add Late", "Start a happy hour"),
    ):
        await owner.send(bad)
        await owner.wait_message(reason)
    async with app.sessionmaker() as session:
        assert (await session.scalars(select(Promotion.name))).all() == ["Lunch"]

    await owner.send("/promos")
    listing = await owner.wait_message("Happy hours")
    assert not any(word in (listing.text or "").lower() for word in ("shop", "branch"))
    answer = await owner.press(listing, "⏹ End Lunch")
    assert answer.params.get("text") == "Ended."
    await owner.wait_message("No happy hours are running")
    forged = await owner.press_data(listing.message_id, "promo:999")
    assert forged.params.get("show_alert") is True

    # Not an owner: the command is not theirs.
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    await cashier.send("/promos add Sneaky 50 all 00:00-24:00")
    async with app.sessionmaker() as session:
        assert (await session.scalars(select(Promotion.name))).all() == ["Lunch"]


@pytest.mark.parametrize("language", ["ru", "en", "et"])
async def test_the_happy_hour_line_reads_in_the_cashiers_language(app: App, language: str) -> None:
    await seed_bound(app.sessionmaker)
    promos = PromotionService(app.db, app.settings, app.clock)
    await promos.add(
        "Обед", bonus_pct=3, weekdays=parse_days("all"), starts=0, ends=1440, until=None
    )
    cashier = app.tg.user(CASHIER_ID, language_code=language)
    await cashier.send("/sale 100045")
    await cashier.wait_message(lambda m: m.reply_markup is not None or "100" in (m.text or ""))
    await cashier.send("2500")
    with I18N.context(), I18N.use_locale(language):
        line = _("Happy hour ({name}): +{pct}").format(name="Обед", pct=formatting.pct(3))
    quote = await cashier.wait_message(line)
    assert "8" in (quote.text or "")


I18N = create_i18n()


# ------------------------------------------------------------------ a chain of shops


def _happy_hour(quote_text: str | None) -> str | None:
    """The quote's happy-hour line (None: no happy hour)."""
    lines = [line for line in (quote_text or "").splitlines() if "Happy hour" in line]
    assert len(lines) <= 1
    return lines[0].strip() if lines else None


async def test_a_branchs_happy_hour_applies_in_that_branch_only(app: App) -> None:
    await seed_bound(app.sessionmaker)
    chain = await seed_chain(app)
    olga = cashier_of(app, chain.a, CASHIER_ID, "Olga")
    mari = cashier_of(app, chain.b, CASHIER_B, "Mari")
    group_a, group_b = group_of(app, chain.a), group_of(app, chain.b)
    promos = PromotionService(app.db, app.settings, app.clock)
    every_day = {"weekdays": parse_days("all"), "starts": 0, "ends": 1440, "until": None}

    async def lines() -> tuple[str | None, str | None]:
        in_a = _happy_hour((await quote_in_group(group_a, olga)).text)
        in_b = _happy_hour((await quote_in_group(group_b, mari)).text)
        return in_a, in_b

    view = await promos.add("Tartu", bonus_pct=3, branch_id=chain.b.id, **every_day)
    assert view.branch_id == chain.b.id
    assert await lines() == (None, "Happy hour (Tartu): +3 %")

    # Every branch's: both; in B the best of the two that apply there.
    await promos.add("Small", bonus_pct=1, **every_day)
    assert await lines() == ("Happy hour (Small): +1 %", "Happy hour (Tartu): +3 %")
    await promos.add("Big", bonus_pct=4, **every_day)
    await promos.add("First", bonus_pct=6, branch_id=chain.a.id, **every_day)
    assert await lines() == ("Happy hour (First): +6 %", "Happy hour (Big): +4 %")
    await promos.end("Big")
    assert await lines() == ("Happy hour (First): +6 %", "Happy hour (Tartu): +3 %")

    listed = {v.name: v.branch_id for v in await promos.listed()}
    assert listed == {"First": chain.a.id, "Small": None, "Tartu": chain.b.id}


async def test_a_branchs_kpis_count_its_own_happy_hour_purchases(app: App) -> None:
    await seed_bound(app.sessionmaker)
    chain = await seed_chain(app)
    olga = cashier_of(app, chain.a, CASHIER_ID, "Olga")
    mari = cashier_of(app, chain.b, CASHIER_B, "Mari")
    promos = PromotionService(app.db, app.settings, app.clock)
    await promos.add(
        "Tartu", bonus_pct=3, weekdays=parse_days("all"), starts=0, ends=1440, until=None,
        branch_id=chain.b.id,
    )  # fmt: skip
    await sell_in_group(app, chain.b, mari, amount="2500")
    await sell_in_group(app, chain.a, olga, amount="1000")
    await sell_in_group(app, chain.b, mari, amount="4000")
    sold = [(p.branch_id, p.amount, p.promo_pct) for p in await purchases(app.sessionmaker)]
    assert sold == [(chain.b.id, 250000, 3), (chain.a.id, 100000, 0), (chain.b.id, 400000, 3)]

    today = app.clock().astimezone(app.settings.store.tz).date()
    figures = {}
    for branch_id in (None, chain.a.id, chain.b.id):
        found = await app.db.report(kpi.compute, app.settings, today, today, branch_id=branch_id)
        figures[branch_id] = (found.promotions.purchases, found.promotions.revenue)
    assert figures == {None: (2, 650000), chain.a.id: (0, 0), chain.b.id: (2, 650000)}


async def test_no_happy_hour_for_a_closed_or_unknown_branch(app: App) -> None:
    chain = await seed_chain(app)
    promos = PromotionService(app.db, app.settings, app.clock)
    await branch_service(app).close(BRANCH_B)
    for branch_id, field in ((chain.b.id, "closed"), (99, "branch")):
        with pytest.raises(InvalidPromotion) as refused:
            await promos.add(
                "Late", bonus_pct=3, weekdays=1, starts=0, ends=60, until=None,
                branch_id=branch_id,
            )  # fmt: skip
        assert refused.value.field == field
    assert await promos.listed(ended=True) == []


@pytest.fixture
def chain_cli(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    monkeypatch.setenv("STORE_NAME", "Main Shop")
    monkeypatch.setenv("STAFF_CHAT_ID", "-1009000")
    return Cli(db_path, monkeypatch, capsys)


def test_cli_adds_a_happy_hour_for_one_branch(chain_cli: Cli) -> None:
    cli = chain_cli
    hours = ["--days", "mon", "--from", "12:00", "--to", "14:00"]
    assert cli("branches", "add", "--name", "Tartu", "--staff-chat", "-100222").code == 0
    assert cli("branches", "add", "--name", "Pärnu", "--staff-chat", "-100333").code == 0
    result = cli(
        "promos", "add", "--name", "Lunch", "--bonus-pct", "3", *hours, "--branch", "tartu"
    )
    assert (result.code, result.err) == (0, "")
    assert result.out == "added Lunch: +3% mon 12:00-14:00 in Tartu\n"
    assert cli("promos", "add", "--name", "All", "--bonus-pct", "2", *hours).code == 0
    assert cli("branches", "close", "Pärnu").code == 0

    before = cli.query("SELECT * FROM promotions ORDER BY id")
    audit = cli.query("SELECT count(*) FROM audit_events")
    for branch, reason in (
        ("Nowhere", "no branch named 'Nowhere'"),
        ("Pärnu", "the branch 'Pärnu' is closed"),
    ):
        result = cli("promos", "add", "--name", "X", "--bonus-pct", "3", *hours, "--branch", branch)
        assert result.code == 1 and reason in result.err, result
        assert len(result.err.splitlines()) == 1 and result.out == ""
    result = cli(
        "promos", "add", "--name", "Lunch", "--bonus-pct", "3", *hours, "--branch", "Main Shop"
    )
    assert result.code == 1 and "exists already" in result.err  # a name is the whole chain's
    assert cli.query("SELECT * FROM promotions ORDER BY id") == before
    assert cli.query("SELECT count(*) FROM audit_events") == audit
    assert cli.query("SELECT name, branch_id FROM promotions ORDER BY id") == [
        ("Lunch", 2),
        ("All", None),
    ]

    assert cli("promos", "list").out == (
        "All: +2% mon 12:00-14:00 in every branch\nLunch: +3% mon 12:00-14:00 in Tartu\n"
    )
    ended = cli("promos", "end", "Lunch").out
    assert ended.startswith("ended Lunch: +3% mon 12:00-14:00 in Tartu (ended ")


async def test_the_owner_runs_a_branchs_happy_hour_from_telegram(app: App) -> None:
    await seed_chain(app)
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/promos")
    empty = await owner.wait_message("No happy hours are running")
    assert "[SHOP]" in (empty.text or "") and BRANCH_B in (empty.text or "")

    await owner.send(f"/promos add Lunch 3 mon-fri 12:00-14:00 2026-12-31 {BRANCH_B.lower()}")
    started = await owner.wait_message("Happy hour started")
    assert (started.text or "").endswith(f", in {BRANCH_B}")
    await owner.send("/promos add Small 1 all 00:00-24:00")
    started = await owner.wait_message("Happy hour started")
    assert (started.text or "").endswith(", in every shop")

    for bad, reason in (
        ("/promos add Late 3 mon 10:00-12:00 Nowhere Town", "There is no shop named Nowhere Town"),
        ("/promos add Late 3 mon 10:00-12:00 2026-02-30 Tartu", "The last day"),
        ("/promos add Late 3 mon 14:00-12:00 Tartu", "must start before they end"),
    ):
        await owner.send(bad)
        refusal = await owner.wait_message(reason)
        assert "[SHOP]" in (refusal.text or "")
    await branch_service(app).close(BRANCH_B)
    await owner.send(f"/promos add Late 3 mon 10:00-12:00 {BRANCH_B}")
    await owner.wait_message(f"The shop {BRANCH_B} is closed")
    async with app.sessionmaker() as session:
        rows = (await session.execute(select(Promotion.name, Promotion.branch_id))).all()
    assert sorted(rows, key=lambda r: r.name) == [("Lunch", 2), ("Small", None)]

    await owner.send("/promos")
    listing = await owner.wait_message("Happy hours")
    lines = [line for line in (listing.text or "").splitlines() if line.startswith("•")]
    assert len(lines) == 2
    assert lines[0].startswith("• Lunch") and lines[0].endswith(f", in {BRANCH_B}")
    assert lines[1].startswith("• Small") and lines[1].endswith(", in every shop")
