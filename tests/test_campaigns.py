"""Campaigns with a hold-out group: the owner's wizard from /campaign to the lift in
/campaigns (in ru, en and et), refusals that change nothing, sending exactly once, opt-outs,
the audiences, and the CLI's create/list/report."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import create_i18n
from config import Settings
from db.database import Database
from db.engine import create_engine, create_sessionmaker
from db.models import Campaign, CampaignMember, Client, Delivery, Offer, Purchase
from handlers import experiments
from handlers import formatting as fmt
from handlers.campaigns import campaign_message
from services import campaigns, jobs
from services.campaigns import Audience, CampaignDraft, EmptyAudience, InvalidCampaign
from services.experiments import lift_ci
from tests.cli_helpers import Cli
from tests.conftest import CASHIER_ID, OWNER_ID, App, FrozenClock
from tests.engagement_helpers import (
    buy,
    card_of,
    deliveries,
    fast_limiter,
    make_client,
    sender_for,
)
from tests.till_helpers import quote_for

I18N = create_i18n()
LANGUAGES = ("ru", "en", "et")


def data(prefix: str) -> Any:
    """A button selector by its callback data (the texts are translated)."""
    return lambda button: str(button.get("callback_data", "")).startswith(prefix)


def tr(language: str, render: Any) -> str:
    with I18N.context(), I18N.use_locale(language):
        return str(render())


def draft(audience: Audience | None = None, holdout: int = 10, **changes: Any) -> CampaignDraft:
    values: dict[str, Any] = {
        "name": "Spring",
        "audience": audience or Audience("all"),
        "bonus_pct": 10,
        "valid_days": 14,
        "holdout_pct": holdout,
        "texts": {"*": "Spring sale!"},
    }
    values.update(changes)
    return CampaignDraft(**values)


async def count(session: AsyncSession, model: Any) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# ------------------------------------------------------------------ the wizard, end to end


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_campaign_from_the_wizard_to_the_lift(
    app: App, session: AsyncSession, language: str
) -> None:
    now = app.clock()
    # Ten members in three languages, each with a purchase two months ago; one who turned
    # offers off is not in the audience at all.
    members = []
    for i in range(10):
        client = await make_client(session, 8100 + i, language=LANGUAGES[i % 3], first_name=f"M{i}")
        await buy(session, client, now - timedelta(days=60))
        members.append(client)
    opted_out = await make_client(session, 8199, opt_out=True)
    await buy(session, opted_out, now - timedelta(days=60))

    owner = app.tg.user(OWNER_ID, language_code=language)
    await owner.send("/campaign Spring")
    question = await owner.wait_message(lambda m: bool(m.buttons))
    await owner.press(question, data("cmp:aud:all"))
    await owner.wait_message(lambda m: "10" in (m.text or ""))
    await owner.send("10 14")
    await owner.wait_message()
    await owner.send("Spring sale!")
    more = await owner.wait_message(lambda m: bool(m.buttons))
    await owner.press(more, data("cmp:lang:et"))
    await owner.wait_message()
    await owner.send("Kevadmüük!")
    more = await owner.wait_message(lambda m: bool(m.buttons))
    await owner.press(more, data("cmp:next"))
    await owner.wait_message(lambda m: bool(m.buttons))
    await owner.send("20")
    preview = await owner.wait_message(lambda m: bool(m.buttons))

    texts = {"*": "Spring sale!", "et": "Kevadmüük!"}
    until = now + timedelta(days=14)
    html = preview.html or ""
    for code in LANGUAGES:  # the message as each language's customers will read it
        assert tr(code, lambda c=code: campaign_message(texts, c, 10, until, app.settings)) in html
    assert tr(language, campaigns_sizes_line) in html

    await owner.press(preview, data("cmp:send"))
    await owner.wait_message("/campaigns")
    # A second press (the message still shows the button to a slow client) sends nothing.
    again = await owner.press_data(preview.message_id, f"cmp:send:{_id(preview)}")
    assert again.params.get("show_alert") is True

    async with app.sessionmaker() as s:
        rows = (await s.execute(select(CampaignMember.client_id, CampaignMember.control))).all()
    control = {client_id for client_id, is_control in rows if is_control}
    offered = {client_id for client_id, is_control in rows if not is_control}
    assert (len(control), len(offered)) == (2, 8)
    assert opted_out.id not in control | offered

    # The worker sends the offer to every offered member, in their language, nothing else.
    for client in members:
        user = app.tg.user(client.tg_id or 0, language_code=client.language)
        if client.id in offered:
            got = await user.wait_message(
                lambda m: "Spring sale" in (m.text or "") or "Kevad" in (m.text or "")
            )
            expected = tr(
                client.language,
                lambda c=client: campaign_message(texts, c.language, 10, until, app.settings),
            )
            assert got.html == expected
            assert got.buttons  # the opt-out button
    await asyncio.sleep(0.3)
    for client in members:
        if client.id in control:
            assert app.tg.user(client.tg_id or 0).messages() == []
    assert app.tg.user(8199).messages() == []
    async with app.sessionmaker() as s:
        assert len(await deliveries(s, kind="campaign")) == 8

    # Two offered members buy at the till (the offer applies), one of the hold-out too.
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    buyers = sorted(offered)[:2]
    for client_id in buyers:
        client = next(c for c in members if c.id == client_id)
        number = (await card_of(session, client)).number
        quote = await quote_for(cashier, "2500", number)
        assert "+10 %" in (quote.text or "")
        await cashier.press(quote, "✅ Confirm")
        await cashier.wait_message("recorded")
    held = next(c for c in members if c.id in control)
    await buy(session, held, now + timedelta(days=1), amount=300_000)

    async with app.sessionmaker() as s:
        redeemed = await s.scalar(
            select(func.count()).select_from(Offer).where(Offer.redeemed_at.is_not(None))
        )
    assert redeemed == 2
    await owner.send("/campaigns")
    listing = await owner.wait_message(lambda m: bool(m.buttons))
    text = listing.text or ""
    lift = lift_ci(2, 8, 1, 2)
    for expected in (
        tr(language, lambda: experiments.share(0.25)),  # came back: 2 of 8
        tr(language, lambda: experiments.share(0.5)),  # 1 of 2 in the hold-out
        tr(language, lambda: experiments.lift_text(lift.lift, lift.low, lift.high)),
        tr(language, lambda: fmt.money(500_000, app.settings)),  # two sales of 2,500
        tr(language, lambda: fmt.money(300_000, app.settings)),  # the hold-out's purchase
    ):
        assert expected in text, (expected, text)
    await owner.press(listing, data("cmp:rep"))
    report = await owner.wait_message(lambda m: "95" in (m.text or ""))
    assert tr(language, lambda: experiments.lift_text(lift.lift, lift.low, lift.high)) in (
        report.text or ""
    )


def campaigns_sizes_line() -> str:
    from aiogram.utils.i18n import gettext as _

    return _("Hold-out ({pct}): {holdout} members get nothing; {offered} get the offer").format(
        pct=fmt.pct(20), holdout=fmt.number(2), offered=fmt.number(8)
    )


def _id(message: Any) -> str:
    button = message.find_button(data("cmp:send"))
    return str(button["callback_data"]).rsplit(":", 1)[1]


async def test_bad_input_in_the_wizard_changes_nothing(app: App, session: AsyncSession) -> None:
    client = await make_client(session, 8201)
    await buy(session, client, app.clock() - timedelta(days=5))
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/campaign")
    question = await owner.wait_message("Who should get it")
    await owner.press(question, data("cmp:aud:inactive"))
    await owner.wait_message("how many days")
    for bad, answer in (
        ("sixty", "whole number"),
        ("0", "from 1 to 3650"),
        ("99999", "from 1 to 3650"),
        ("30", "Nobody in this audience"),  # bought 5 days ago: not inactive for 30
    ):
        await owner.send(bad)
        await owner.wait_message(answer)
    await owner.press(owner.last_message(), data("cmp:aud:all"))
    await owner.wait_message("1 member")
    for bad, answer in (
        ("ten 14", "two whole numbers"),
        ("10", "two whole numbers"),
        ("0 14", "from 1 to 99"),
        ("120 14", "from 1 to 99"),
        ("10 0", "from 1 to 365"),
    ):
        await owner.send(bad)
        await owner.wait_message(answer)
    await owner.send("10 14")
    await owner.wait_message("send its text")
    await owner.send("x" * 3001)
    await owner.wait_message("1 to 3000 characters")
    await owner.send("Hello")
    more = await owner.wait_message(lambda m: bool(m.buttons))
    await owner.press(more, data("cmp:next"))
    await owner.wait_message("from 0 to 50")
    for bad, answer in (("60", "from 0 to 50"), ("half", "from 0 to 50")):
        await owner.send(bad)
        await owner.wait_message(answer)
    # Forged or stale buttons: refused, nothing changes.
    for forged in ("cmp:send:999999", "cmp:aud:all", "cmp:rfm:bogus", "cmp:send:x"):
        answer = await owner.press_data(more.message_id, forged)
        assert answer.params.get("show_alert") is True, forged
    async with app.sessionmaker() as s:
        assert await count(s, Campaign) == 0
    await owner.send("50")
    preview = await owner.wait_message("Send it now?")
    await owner.press(preview, data("cmp:drop"))
    await owner.wait_message("cancelled")
    answer = await owner.press_data(preview.message_id, f"cmp:send:{_id(preview)}")
    assert answer.params.get("show_alert") is True
    async with app.sessionmaker() as s:
        assert (await s.scalars(select(Campaign.status))).all() == ["cancelled"]
        assert await count(s, CampaignMember) == 0
        assert await count(s, Delivery) == 0


async def test_the_wizard_is_for_owners_in_private(app: App) -> None:
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    await cashier.send("/campaign")
    await cashier.send("/campaigns")
    await asyncio.sleep(0.2)
    assert not any("campaign" in (m.text or "").lower() for m in cashier.messages())


# ---------------------------------------------------------------------- the service


async def test_sending_twice_at_once_sends_once(
    db: Database, session: AsyncSession, clock: FrozenClock
) -> None:
    for i in range(30):
        await make_client(session, 8300 + i)
    view = await campaigns.create(db, draft(holdout=20), clock())
    assert (view.audience_size, view.holdout_size) == (30, 6)
    results = await asyncio.gather(
        *(campaigns.send(db, view.id, clock(), random.Random(n), chunk=7) for n in range(2))
    )
    assert sorted(r.sent_now for r in results) == [False, True]
    assert await count(session, CampaignMember) == 30
    assert await count(session, Offer) == 24
    assert len(await deliveries(session, kind="campaign")) == 24
    again = await campaigns.send(db, view.id, clock())
    assert (again.sent_now, again.queued) == (False, 0)
    assert await count(session, Offer) == 24


async def test_an_interrupted_send_is_finished_without_doubles(
    db: Database, session: AsyncSession, clock: FrozenClock, settings: Settings
) -> None:
    for i in range(12):
        await make_client(session, 8400 + i)
    view = await campaigns.create(db, draft(holdout=0), clock())
    # The process stops after the draw and one chunk of offers.
    await db.write(campaigns._claim_and_draw, view.id, clock(), random.Random(1))
    await db.write(campaigns._offer_chunk, view.id, clock(), 5)
    assert await count(session, Offer) == 5
    # The campaigns job (every 10 minutes and at start-up; /campaigns and `campaigns list`
    # too) finishes it; a later ✅ finds nothing to do.
    finished = await jobs.run_pass("campaigns", db, settings, clock())
    assert finished.counts == {"enqueued": 7}
    assert await campaigns.finish_interrupted(db, clock()) == 0
    result = await campaigns.send(db, view.id, clock())
    assert (result.sent_now, result.queued) == (False, 0)
    keys = [row.key for row in await deliveries(session, kind="campaign")]
    assert len(keys) == len(set(keys)) == 12


@pytest.mark.manual_delivery
async def test_opted_out_members_get_nothing(
    app: App, session: AsyncSession, settings: Settings
) -> None:
    stays = await make_client(session, 8501)
    leaves = await make_client(session, 8502)
    await make_client(session, 8503, opt_out=True)
    await make_client(session, 8504, reachable=False)
    await make_client(session, 8505, consent=False)
    view = await campaigns.create(app.db, draft(holdout=0), app.clock())
    assert view.audience_size == 2
    # One turns offers off after the send, before the message goes out.
    await campaigns.send(app.db, view.id, app.clock())
    await session.execute(
        update(Client).where(Client.id == leaves.id).values(marketing_opt_out=True)
    )
    await session.commit()
    sender = sender_for(app.bot, app.sessionmaker, app.settings, app.clock, limiter=fast_limiter())
    await sender.deliver_due()
    await asyncio.sleep(0.2)
    assert [m.text for m in app.tg.user(8501).messages() if "Spring" in (m.text or "")]
    for tg_id in (8502, 8503, 8504, 8505):
        assert app.tg.user(tg_id).messages() == []
    assert stays.id != leaves.id


async def test_audiences(db: Database, session: AsyncSession, clock: FrozenClock) -> None:
    now = clock()
    recent = await make_client(session, 8601, birthday=date(1990, 5, 3))
    lapsed = await make_client(session, 8602, birthday=date(1991, 6, 1))
    never = await make_client(session, 8603, birthday=date(1992, 5, 31))
    await buy(session, recent, now - timedelta(days=5))
    await buy(session, lapsed, now - timedelta(days=100))
    await buy(session, lapsed, now - timedelta(days=2), voided=True)  # voided: still lapsed

    async def members(audience: Audience) -> set[int]:
        def unit(s: Any) -> set[int]:
            return set(s.scalars(campaigns._members_query(audience, now)))

        return await db.read(unit)

    assert await members(Audience("all")) == {recent.id, lapsed.id, never.id}
    assert await members(Audience("inactive", "30")) == {lapsed.id}
    assert await members(Audience("inactive", "200")) == set()
    assert await members(Audience("birthday", "5")) == {recent.id, never.id}
    segments = {
        segment: await members(Audience("rfm", segment)) for segment in campaigns.RFM_SEGMENTS
    }
    assert set().union(*segments.values()) == {recent.id, lapsed.id}  # buyers only
    assert sum(len(found) for found in segments.values()) == 2
    with pytest.raises(EmptyAudience):
        await campaigns.create(db, draft(Audience("birthday", "12")), now)
    for text in ("rfm:bogus", "inactive:x", "inactive:0", "birthday:13", "some", "all:1"):
        with pytest.raises(InvalidCampaign):
            campaigns.parse_audience(text)
    assert await count(session, Campaign) == 0


async def test_results_count_the_window_only(
    db: Database, session: AsyncSession, clock: FrozenClock
) -> None:
    clients = [await make_client(session, 8700 + i) for i in range(4)]
    view = await campaigns.create(db, draft(holdout=50, valid_days=7), clock())
    await campaigns.send(db, view.id, clock(), random.Random(3))
    rows = (await session.execute(select(CampaignMember.client_id, CampaignMember.control))).all()
    control = [cid for cid, c in rows if c]
    offered = [cid for cid, c in rows if not c]
    by_id = {c.id: c for c in clients}
    await buy(session, by_id[offered[0]], clock() + timedelta(days=1), amount=1000)
    await buy(session, by_id[offered[0]], clock() + timedelta(days=2), amount=500)
    await buy(session, by_id[offered[1]], clock() + timedelta(days=8), amount=9999)  # after
    await buy(session, by_id[control[0]], clock() + timedelta(days=3), amount=700, voided=True)
    await buy(session, by_id[control[1]], clock() - timedelta(days=1), amount=800)  # before
    result = await db.report(campaigns.result, view.id)
    assert (result.offered, result.control) == (2, 2)
    assert (result.returned_offered, result.returned_control) == (1, 0)
    assert (result.revenue_offered, result.revenue_control) == (1500, 0)
    assert result.return_rate_offered == 0.5 and result.return_rate_control == 0.0
    assert result.lift == lift_ci(1, 2, 0, 2)
    assert result.revenue_per_offered == 750


# ------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli(db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(db_path, monkeypatch, capsys)


def _written(cli: Cli) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for table in ("campaigns", "campaign_members", "offers", "deliveries"):
        rows += [(table, *row) for row in cli.query(f"SELECT * FROM {table} ORDER BY 1")]
    return rows


def _seed(db_path: Path, clients: int) -> None:
    """Members with a purchase 90 days ago, in the CLI's database file."""

    async def seed() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{db_path}")
        try:
            async with create_sessionmaker(engine)() as session:
                for i in range(clients):
                    client = await make_client(session, 8800 + i)
                    await buy(session, client, datetime.now(UTC) - timedelta(days=90))
        finally:
            await engine.dispose()

    asyncio.run(seed())


def test_cli_create_list_report_and_refusals(cli: Cli, db_path: Path) -> None:
    _seed(db_path, 20)
    base = ["campaigns", "create", "--name", "Autumn", "--bonus-pct", "10", "--days", "14"]
    result = cli(*base, "--audience", "inactive:60", "--text", "Come back!", "--text-et",
                 "Tule tagasi!", "--holdout-pct", "10", "--dry-run")  # fmt: skip
    assert result.code == 0, result
    assert "audience inactive:60 = 20 members, hold-out 2 (10%), offered 18" in result.out
    assert "message (et): Tule tagasi!" in result.out and "dry run: nothing written" in result.out
    assert _written(cli) == []

    refusals = [
        (["--audience", "all", "--text", "x", "--bonus-pct", "0"], 1, "bonus must be 1 to 99"),
        (["--audience", "all", "--text", "x", "--bonus-pct", "120"], 1, "bonus must be 1 to 99"),
        (["--audience", "all", "--text", "x", "--days", "0"], 1, "valid 1 to 365 days"),
        (["--audience", "all", "--text", "x", "--holdout-pct", "60"], 1, "0 to 50"),
        (["--audience", "all", "--text", "  "], 1, "1 to 3000 characters"),
        (["--audience", "birthday:5", "--text", "x"], 1, "nobody in this audience"),
        (["--audience", "rfm:bogus", "--text", "x"], 2, "unknown RFM segment"),
        (["--audience", "inactive:x", "--text", "x"], 2, "inactive days"),
        (["--audience", "birthday:13", "--text", "x"], 2, "month must be 1 to 12"),
        (["--audience", "everyone", "--text", "x"], 2, "the audience must be"),
        (["--audience", "all", "--text", "x", "--bonus-pct", "ten"], 2, "invalid int"),
    ]
    for extra, code, reason in refusals:
        result = cli(*base, *extra)
        assert result.code == code and reason in result.err, (extra, result)
        assert len(result.err.strip().splitlines()) == 1, result.err
    assert _written(cli) == []

    result = cli(*base, "--audience", "all", "--text", "Hello", "--holdout-pct", "25")
    assert result.code == 0, result
    assert "sent campaign 1: 15 offers queued, 5 in the hold-out" in result.out
    assert cli.scalar("SELECT count(*) FROM campaign_members") == 20
    assert cli.scalar("SELECT count(*) FROM offers WHERE kind = 'campaign'") == 15
    keys = [row[0] for row in cli.query("SELECT key FROM deliveries WHERE kind = 'campaign'")]
    assert len(keys) == 15 and all(key.startswith("campaign:1:") for key in keys)

    listing = cli("campaigns", "list")
    assert listing.code == 0
    assert listing.out.startswith("1 Autumn [sent] all +10% 14d sent ")
    assert "offered 15, hold-out 5; came back 0.0% vs 0.0%; lift +0.0 pp" in listing.out
    report = cli("campaigns", "report", "1")
    assert report.code == 0
    assert "came back: offered 0 of 15 (0.0%), hold-out 0 of 5 (0.0%)" in report.out
    assert "redeemed: 0 of 15 (0.0%)" in report.out
    missing = cli("campaigns", "report", "99")
    assert (missing.code, missing.err) == (1, "error: no campaign 99\n")


async def test_member_data_lists_their_campaigns(
    db: Database, session: AsyncSession, clock: FrozenClock
) -> None:
    client = await make_client(session, 8901)
    view = await campaigns.create(db, draft(holdout=0), clock())
    await campaigns.send(db, view.id, clock())
    found = await db.read(campaigns.member_campaigns, client.id)
    assert found == [
        {"id": view.id, "name": "Spring", "sent_at": clock().isoformat(), "group": "offered"}
    ]
    assert await count(session, Purchase) == 0


async def test_the_wizard_goes_on_after_a_restart(app_with: Any) -> None:
    async with app_with() as app:
        async with app.sessionmaker() as session:
            await make_client(session, 8951)
        owner = app.tg.user(OWNER_ID, language_code="en")
        await owner.send("/campaign Restart")
        question = await owner.wait_message("Who should get it")
        await owner.press(question, data("cmp:aud:all"))
        await owner.wait_message("1 member")
        await owner.send("5 7")
        await owner.wait_message("send its text")
    # A new process, a new dispatcher, the same database (or Redis): the step is kept.
    async with app_with() as app:
        owner = app.tg.user(OWNER_ID, language_code="en")
        await owner.send("Hello again")
        more = await owner.wait_message(lambda m: bool(m.buttons))
        await owner.press(more, data("cmp:next"))
        await owner.wait_message("from 0 to 50")
        await owner.send("0")
        preview = await owner.wait_message("Send it now?")
        assert "Offer: +5 % for 7 days" in (preview.text or "")
        assert "Hello again" in (preview.text or "")


async def test_the_weekly_digest_shows_the_weeks_campaigns(
    db: Database, session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    from handlers.owner_reports import digest_message
    from services.reports import ReportService

    for i in range(4):
        await make_client(session, 8960 + i)
    view = await campaigns.create(db, draft(holdout=50, name="Winter"), clock())
    await campaigns.send(db, view.id, clock(), random.Random(5))
    reports = ReportService(db, settings)
    with I18N.context(), I18N.use_locale("en"):
        text, _chart = await digest_message(reports, clock() + timedelta(days=7))
        before, _chart = await digest_message(reports, clock())  # the week before it
        lift = experiments.lift_text(0.0, 0.0, 0.0)
    assert "<b>Campaigns</b> (offered vs hold-out)" in text and "<b>Winter</b>" in text
    assert f"lift: {lift}" in text and "offered 0 % of 2, hold-out 0 % of 2" in text
    assert "Winter" not in before


# ------------------------------------------------------------- a chain: a branch's regulars


async def _chain_of_two(db: Database, settings: Settings, clock: FrozenClock) -> int:
    from services.branches import BranchDraft, BranchService

    tartu = await BranchService(db, settings, clock).add(
        BranchDraft(name="Tartu", staff_chat_id=-100222)
    )
    return tartu.id


async def _bought_in(session: AsyncSession, client: Client, at: datetime, branch_id: int) -> None:
    purchase = await buy(session, client, at)
    await session.execute(
        update(Purchase).where(Purchase.id == purchase.id).values(branch_id=branch_id)
    )
    await session.commit()


async def test_a_branch_audience_is_its_regulars(
    db: Database, session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    now = clock()
    tartu = await _chain_of_two(db, settings, clock)
    regular = await make_client(session, 8611)  # two in Tartu, one in the first shop
    visitor = await make_client(session, 8612)  # one in Tartu, two in the first shop
    tie = await make_client(session, 8613)  # one each, the later one in Tartu
    voided = await make_client(session, 8614)  # Tartu's two purchases were voided
    await make_client(session, 8615)  # never bought: nobody's regular
    for days, client, branch in (
        (9, regular, tartu), (8, regular, tartu), (7, regular, 1),
        (9, visitor, 1), (8, visitor, tartu), (7, visitor, 1),
        (9, tie, 1), (8, tie, tartu),
        (9, voided, 1),
    ):  # fmt: skip
        await _bought_in(session, client, now - timedelta(days=days), branch)
    for days in (6, 5):
        await buy(session, voided, now - timedelta(days=days), voided=True)
        await session.execute(
            update(Purchase).where(Purchase.voided_at.is_not(None)).values(branch_id=tartu)
        )
        await session.commit()

    def members(audience: Audience) -> Any:
        return db.read(lambda s: set(s.scalars(campaigns._members_query(audience, now))))

    assert await members(Audience("branch", str(tartu))) == {regular.id, tie.id}
    assert await members(Audience("branch", "1")) == {visitor.id, voided.id}
    assert campaigns.parse_audience(f"branch:{tartu}") == Audience("branch", str(tartu))
    for text in ("branch:x", "branch:0", "branch"):
        with pytest.raises(InvalidCampaign):
            campaigns.parse_audience(text)
    # The same rule names the usual shop in the offers' messages.
    from services import offers

    usual = {c.id: await db.read(offers.usual_branch, settings, c.id) for c in (regular, tie)}
    assert usual == {regular.id: "Tartu", tie.id: "Tartu"}
    assert await db.read(offers.usual_branch, settings, visitor.id) == settings.store.name


def test_cli_a_branch_audience(cli: Cli, db_path: Path) -> None:
    _seed(db_path, 6)
    assert cli("branches", "add", "--name", "Tartu", "--staff-chat", "-100222").code == 0
    cli.query("UPDATE purchases SET branch_id = 2 WHERE id <= 4")
    base = ["campaigns", "create", "--name", "Tartu regulars", "--bonus-pct", "10", "--days", "7"]
    result = cli(*base, "--branch", "tartu", "--text", "Hi!", "--holdout-pct", "25", "--dry-run")
    assert result.code == 0, result
    assert "audience branch:Tartu = 4 members, hold-out 1 (25%), offered 3" in result.out
    assert _written(cli) == []
    for extra, code, reason in (
        (["--branch", "Narva"], 1, "no branch named 'Narva'"),
        (["--branch", "Tartu", "--audience", "all"], 2, "not allowed with argument"),
    ):
        result = cli(*base, *extra, "--text", "x")
        assert result.code == code and reason in result.err, (extra, result)
        assert len(result.err.strip().splitlines()) == 1
    assert _written(cli) == []
    assert cli(*base, "--branch", "Tartu", "--text", "Hi!", "--holdout-pct", "0").code == 0
    assert cli.scalar("SELECT count(*) FROM offers WHERE kind = 'campaign'") == 4
    listing = cli("campaigns", "list")
    assert listing.out.startswith("1 Tartu regulars [sent] branch:Tartu +10% 7d sent ")


@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_wizard_offers_a_branchs_regulars_in_a_chain(
    app: App, session: AsyncSession, language: str
) -> None:
    from aiogram.utils.i18n import gettext as _

    owner = app.tg.user(OWNER_ID, language_code=language)
    await owner.send("/campaign Regulars")
    question = await owner.wait_message(lambda m: bool(m.buttons))
    assert not any("cmp:aud:branch" in b.get("callback_data", "") for b in question.buttons)
    await owner.send("/cancel")
    await owner.wait_message()

    tartu = await _chain_of_two(app.db, app.settings, app.clock)
    app.dp["branches"].forget()
    for i in range(3):
        client = await make_client(session, 8950 + i)
        await _bought_in(session, client, app.clock() - timedelta(days=3), tartu if i else 1)
    await owner.send("/campaign Regulars")
    question = await owner.wait_message(lambda m: bool(m.buttons))
    await owner.press(question, data("cmp:aud:branch"))
    shops = await owner.wait_message(
        lambda m: any("cmp:shop" in b.get("callback_data", "") for b in m.buttons)
    )
    assert [b["text"] for b in shops.buttons] == ["Test Store", "Tartu"]
    await owner.press(shops, data(f"cmp:shop:{tartu}"))
    chosen = await owner.wait_message(lambda m: "Tartu" in (m.text or ""))
    label = tr(language, lambda: _("members whose usual shop is {name}").format(name="Tartu"))
    assert label in (chosen.text or "")
    assert tr(language, lambda: fmt.number(2)) in (chosen.text or "")
    # A forged branch id is refused; the step stays.
    forged = await owner.press_data(shops.message_id, "cmp:shop:99")
    assert forged.params.get("show_alert") is True
