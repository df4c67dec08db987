"""The owner's figures in a chain of two shops, end to end through the fake Bot API: the /stats
branch switch (ru/en/et), a manager who sees their branch only, the digest's branch table,
chart and per-branch anomalies, the managers' scheduled digest (once), the export's branch
column and per-branch sheet; and a one-shop install that never reads the word "branch".

The data (the clock is Mon 2026-11-16 09:00 UTC, 12:00 in Moscow): the digest's week is
Nov 9–15, the week before Nov 2–8; /stats' 7 days are Nov 10–16.

    branch A (the settings' "Test Store")     branch B ("Tartu")
    Nov 3   100045  1 500 ₽  (week before)    Nov 5   100048  2 000 ₽  (week before)
    Nov 10  100045  1 000 ₽                   Nov 12  100045  3 000 ₽
    Nov 11  100046    200 ₽                   Nov 13  100048  1 000 ₽
                                              Nov 14  100048  2 000 ₽

This week: A 2 purchases, 1 200 ₽, 2 active cards, average check 600 ₽ (last week 1, 1 500 ₽,
1, 1 500 ₽); B 3 purchases, 6 000 ₽, 2 active cards, average check 2 000 ₽ (last week 1,
2 000 ₽, 1, 2 000 ₽). The chain: 5 purchases, 7 200 ₽.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from datetime import timedelta

import pytest
from matplotlib.figure import Figure
from openpyxl import load_workbook

from bot.demo.emulator import FakeMessage
from handlers import formatting as fmt
from handlers import owner_reports
from services import jobs, reports
from tests.branch_helpers import (
    BRANCH_B,
    MANAGER_A,
    MANAGER_B,
    Chain,
    buy,
    heading,
    seed_chain,
    seed_sales,
    tr,
)
from tests.conftest import OWNER_ID, App
from tests.kpi_helpers import Data, msk

PNG = b"\x89PNG\r\n\x1a\n"
LANGUAGES = ("ru", "en", "et")


def money(minor: int, app: App, language: str) -> str:
    return fmt.money(minor, app.settings, language)


@pytest.fixture
async def chain(app: App) -> Chain:
    found = await seed_chain(app, managers_a=[MANAGER_A], managers_b=[MANAGER_B])
    await seed_sales(app.sessionmaker, found)
    return found


def _line(text: str, label: str) -> str:
    """The line of `text` that starts with `label`."""
    found = [line for line in text.splitlines() if line.startswith(label)]
    assert found, (label, text)
    return found[0]


def _figures(message: FakeMessage, language: str, app: App) -> tuple[str, str]:
    text = message.text or ""
    return (
        _line(text, tr(language, "Purchases") + ":"),
        _line(text, tr(language, "Revenue through cards") + ":"),
    )


def _expect(language: str, app: App, purchases: int, revenue: int) -> tuple[str, str]:
    return (
        f"{tr(language, 'Purchases')}: {fmt.number(purchases, language)}",
        f"{tr(language, 'Revenue through cards')}: {money(revenue, app, language)}",
    )


def _starts(pair: tuple[str, str], expected: tuple[str, str]) -> bool:
    return all(line.startswith(want) for line, want in zip(pair, expected, strict=True))


def _edits(app: App, chat_id: int) -> int:
    return len(app.tg.sent(chat_id, "editMessageText"))


# ------------------------------------------------------------------------------ /stats


@pytest.mark.parametrize("language", LANGUAGES)
async def test_stats_switches_between_the_branches(app: App, chain: Chain, language: str) -> None:
    owner = app.tg.user(OWNER_ID, language_code=language)
    await owner.send("/stats")
    reply = await owner.wait_message(heading(language, "<b>Program KPIs</b> for {period}"))
    assert tr(language, "🏬 All branches") in (reply.text or "")
    assert _starts(_figures(reply, language, app), _expect(language, app, 5, 720_000))
    texts = [b["text"] for b in reply.buttons]
    periods = [tr(language, p) for p in ("7 days", "30 days", "90 days", "Month")]
    assert texts == [
        "• " + periods[0],
        *periods[1:],
        "• " + tr(language, "All branches"),
        "Test Store",
        BRANCH_B,
    ]

    await owner.press(reply, BRANCH_B)
    tartu = await owner.wait_message(lambda m: m.edited and BRANCH_B in (m.text or ""))
    assert tartu.message_id == reply.message_id
    assert _starts(_figures(tartu, language, app), _expect(language, app, 3, 600_000))
    assert "• " + BRANCH_B in [b["text"] for b in tartu.buttons]
    # The period buttons now stay on Tartu: 30 days (Oct 18 – Nov 16) adds the Nov 5 sale.
    await owner.press(tartu, periods[1])
    month = await owner.wait_message(lambda m: m.edited and BRANCH_B in (m.text or ""))
    assert _starts(_figures(month, language, app), _expect(language, app, 4, 800_000))

    await owner.press(month, "Test Store")
    shop_a = await owner.wait_message(lambda m: m.edited and "Test Store" in (m.text or ""))
    # Branch A over the 30 days: Nov 3, 10, 11.
    assert _starts(_figures(shop_a, language, app), _expect(language, app, 3, 270_000))

    # A forged branch id: refused with an alert, the message stays as it was.
    before = _edits(app, OWNER_ID)
    call = await owner.press_data(reply.message_id, "sb:999:7d")
    assert call.params.get("text") == tr(language, "These figures are not available to you.")
    assert call.params.get("show_alert") is True
    await app.tg.wait_for_idle()
    assert _edits(app, OWNER_ID) == before


async def test_stats_with_a_typed_branch_and_period(app: App, chain: Chain) -> None:
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/stats tartu 30d")
    reply = await owner.wait_message("Program KPIs")
    assert "Oct 18, 2026 – Nov 16, 2026" in (reply.text or "")
    assert "🏬 Branch: Tartu" in (reply.text or "")
    assert _starts(_figures(reply, "en", app), _expect("en", app, 4, 800_000))
    # The period the owner typed is what the branch buttons keep.
    assert owner_reports.StatsBranchCb(branch=1, period="30d").pack() in [
        b["callback_data"] for b in reply.buttons
    ]
    await owner.send("/stats 2026-11-01 2026-11-08 Test Store")
    dates = await owner.wait_message("Program KPIs")
    assert "🏬 Branch: Test Store" in (dates.text or "")
    assert _starts(_figures(dates, "en", app), _expect("en", app, 1, 150_000))
    token = owner_reports.StatsBranchCb(branch=chain.b.id, period="2026-11-01_2026-11-08")
    assert token.pack() in [b["callback_data"] for b in dates.buttons]
    await owner.press(dates, BRANCH_B)
    edited = await owner.wait_message(lambda m: m.edited and "Branch: Tartu" in (m.text or ""))
    assert "Nov 1, 2026 – Nov 8, 2026" in (edited.text or "")
    assert _starts(_figures(edited, "en", app), _expect("en", app, 1, 200_000))


async def test_a_closed_branch_that_never_sold_is_refused(app: App, chain: Chain) -> None:
    from tests.branch_helpers import add_branch, branch_service

    empty = await add_branch(app, "Pärnu", -1009300)
    await branch_service(app).close("Pärnu")
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/stats Pärnu")
    refused = await owner.wait_message()
    assert refused.text == (
        "The branch Pärnu is closed and never sold anything: no figures to show."
    )
    await owner.send("/stats")
    reply = await owner.wait_message("Program KPIs")
    assert "Pärnu" not in [b["text"] for b in reply.buttons]
    call = await owner.press_data(reply.message_id, f"sb:{empty.id}:7d")
    assert "closed and never sold" in (call.params.get("text") or "")


# ------------------------------------------------------------------------------ managers


@pytest.mark.parametrize("language", ["en", "et"])
async def test_a_manager_sees_their_branch_only(app: App, chain: Chain, language: str) -> None:
    manager = app.tg.user(MANAGER_A, "Mari", language_code=language)
    await manager.send("/stats")
    reply = await manager.wait_message(heading(language, "<b>Program KPIs</b> for {period}"))
    text = reply.text or ""
    assert "Test Store" in text and BRANCH_B not in text
    assert tr(language, "🏬 All branches") not in text
    assert _starts(_figures(reply, language, app), _expect(language, app, 2, 120_000))
    buttons = [b["text"] for b in reply.buttons]
    assert BRANCH_B not in buttons and tr(language, "All branches") not in buttons
    assert len(buttons) == 4  # the periods only: one branch, nothing to switch to

    before = _edits(app, MANAGER_A)
    for forged in (f"sb:{chain.b.id}:7d", "sb:0:7d", "st:7d"):
        call = await manager.press_data(reply.message_id, forged)
        alert = call.params.get("text") or ""
        assert alert == tr(language, "These figures are not available to you."), forged
        assert BRANCH_B not in alert
    await app.tg.wait_for_idle()
    assert _edits(app, MANAGER_A) == before

    await manager.send(f"/stats {BRANCH_B}")  # another branch's name: not a period of theirs
    answer = await manager.wait_message()
    assert BRANCH_B not in (answer.text or "").split("/stats")[0]
    assert heading(language, "<b>Program KPIs</b> for {period}") not in (answer.text or "")

    await manager.send("/digest")
    digest = await manager.wait_message(heading(language, "<b>Weekly digest</b> for {period}"))
    assert BRANCH_B not in (digest.text or "") and "Test Store" in (digest.text or "")
    revenue = _line(digest.text or "", tr(language, "Revenue through cards") + ":")
    assert revenue.startswith(
        f"{tr(language, 'Revenue through cards')}: {money(120_000, app, language)}"
    )
    chart = await manager.wait_message(lambda m: m.photo is not None)
    assert chart.photo.data.startswith(PNG)  # type: ignore[union-attr]

    # Owner-only tools stay the owner's.
    for command in ("/export", "/cards", "/card 100045"):
        await manager.send(command)
        await manager.wait_message()
    await app.tg.wait_for_idle()
    assert not any(m.document for m in manager.messages())
    assert not any("100 045" in (m.text or "") for m in manager.messages())


async def test_a_manager_of_both_branches_switches_between_them_only(
    app: App, chain: Chain
) -> None:
    from tests.branch_helpers import set_managers

    await set_managers(app, BRANCH_B, [MANAGER_B, MANAGER_A])
    manager = app.tg.user(MANAGER_A, language_code="en")
    await manager.send(f"/stats {BRANCH_B}")
    reply = await manager.wait_message("Program KPIs")
    assert "🏬 Branch: Tartu" in (reply.text or "")
    assert [b["text"] for b in reply.buttons][4:] == ["Test Store", "• Tartu"]
    call = await manager.press_data(reply.message_id, "sb:0:7d")
    assert call.params.get("text") == "These figures are not available to you."
    await manager.press(reply, "Test Store")
    shop_a = await manager.wait_message(lambda m: m.edited)
    assert "🏬 Branch: Test Store" in (shop_a.text or "")


# ------------------------------------------------------------------------------ the digest


@pytest.fixture
def branch_charts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Figure]]:
    figures: list[Figure] = []
    render = reports.render_branch_chart

    def capture(
        rows: list[reports.BranchWeek], labels: reports.BranchChartLabels, exp: int
    ) -> bytes:
        figure = reports.branch_chart_figure(rows, labels, exp)
        figure.canvas.draw()
        figures.append(figure)
        return render(rows, labels, exp)

    monkeypatch.setattr(owner_reports, "render_branch_chart", capture)
    yield figures


async def test_digest_has_the_branch_table_and_chart(
    app: App, chain: Chain, branch_charts: list[Figure]
) -> None:
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/digest")
    digest = await owner.wait_message("Weekly digest")
    text = digest.text or ""
    assert "🏬 All branches" in text
    assert "Revenue through cards: ₽7,200" in text
    lines = text.splitlines()
    title = lines.index("Branches: this week against last week, by revenue")
    assert lines[title + 1 : title + 3] == [
        "• Tartu: ₽6,000 (▲ 200 %); purchases 3 (▲ 200 %); active cards 2 (▲ 100 %); "
        "average check ₽2,000 (= 0 %)",
        "• Test Store: ₽1,200 (▼ 20 %); purchases 2 (▲ 100 %); active cards 2 (▲ 100 %); "
        "average check ₽600 (▼ 60 %)",
    ]
    photos = [await owner.wait_message(lambda m: m.photo is not None) for _ in range(2)]
    assert all(p.photo.data.startswith(PNG) for p in photos)  # type: ignore[union-attr]
    (figure,) = branch_charts
    (ax,) = figure.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Tartu", "Test Store"]
    this_week, last_week = ax.containers
    assert [bar.get_width() for bar in this_week] == [6000, 1200]
    assert [bar.get_width() for bar in last_week] == [2000, 1500]
    assert figure._suptitle.get_text() == "Revenue through cards per branch"  # type: ignore[union-attr]


async def test_worth_a_look_names_the_branch_of_a_generous_cashier(app: App, chain: Chain) -> None:
    async with app.sessionmaker() as session:
        d = Data(session)
        cards = [await d.card(f"2000{i:02d}", issued_at=msk(2026, 9, 1)) for i in range(9)]
        # Tartu: two cashiers at 5 %, one at 30 % (three sales each, on different cards/days).
        for i, (cashier, pct) in enumerate(((2201, 5), (2202, 5), (2203, 30))):
            for k in range(3):
                card = cards[3 * i + k]
                await buy(
                    session,
                    card,
                    msk(2026, 11, 9 + k, 10 + i),
                    10_000,
                    chain.b.id,
                    cashier=cashier,
                    pct=pct,
                )
        await session.commit()
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/digest")
    text = (await owner.wait_message("Weekly digest")).text or ""
    # Compared with the others of Tartu only: 5 %, 5 % and cashier 2102's 6 % (36 000 of
    # 600 000 ₽), mean 5.3 %; cashier 2001 of the first shop is not among them.
    assert "• cashier 2203 at Tartu: discounts 30 % of sales, others of that branch 5.3 %" in text
    manager = app.tg.user(MANAGER_B, language_code="en")
    await manager.send("/digest")
    mine = (await manager.wait_message("Weekly digest")).text or ""
    assert "• cashier 2203: discounts 30 % of sales, others 5.3 %" in mine
    manager_a = app.tg.user(MANAGER_A, language_code="en")
    await manager_a.send("/digest")
    theirs = (await manager_a.wait_message("Weekly digest")).text or ""
    assert "2203" not in theirs and "Nothing unusual this week." in theirs


async def test_the_scheduled_digest_reaches_each_manager_once(app: App, chain: Chain) -> None:
    """Sent in the store's language (ru): none of them ever wrote to the bot."""
    owner, manager_a, manager_b = (app.tg.user(u) for u in (OWNER_ID, MANAGER_A, MANAGER_B))
    now = app.clock()
    assert await jobs.digest_pass(app.db, app.settings, now) == 3  # the owner, two managers
    assert await jobs.digest_pass(app.db, app.settings, now + timedelta(hours=2)) == 0
    app.dp["outbox"].notify()

    title = heading("ru", "<b>Weekly digest</b> for {period}")
    revenue = tr("ru", "Revenue through cards")
    text_a = (await manager_a.wait_message(title, timeout=10)).text or ""
    assert "🏬 Филиал: Test Store" in text_a and BRANCH_B not in text_a
    assert f"{revenue}: {money(120_000, app, 'ru')}" in text_a
    text_b = (await manager_b.wait_message(title, timeout=10)).text or ""
    assert "🏬 Филиал: Tartu" in text_b and "Test Store" not in text_b
    assert f"{revenue}: {money(600_000, app, 'ru')}" in text_b
    chain_text = (await owner.wait_message(title, timeout=10)).text or ""
    assert heading("ru", "<b>Branches</b>: this week against last week, by revenue") in chain_text
    photos = [await owner.wait_message(lambda m: m.photo is not None) for _ in range(2)]
    assert [p.text for p in photos] == [
        tr("ru", "📈 The last 12 weeks: revenue through cards, active cards and NPS."),
        tr("ru", "🏬 Revenue through cards per branch: this week against last week."),
    ]
    await app.tg.wait_for_idle()
    assert len(owner.messages()) == 3
    chart = tr("ru", "📈 The last 12 weeks: revenue through cards, active cards and NPS.")
    for user in (manager_a, manager_b):  # their branch's text and 12-week chart, once
        assert [m.text for m in user.messages() if m.photo is not None] == [chart]
        assert len(user.messages()) == 2


# ------------------------------------------------------------------------------ export


async def test_export_has_the_branch_column_and_sheet(app: App, chain: Chain) -> None:
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/export 2026-11-01 2026-11-16")
    message = await owner.wait_message(lambda m: m.document is not None, timeout=10)
    book = load_workbook(io.BytesIO(message.document.data))  # type: ignore[union-attr]
    assert book.sheetnames == [
        "KPIs",
        "Branches",
        "Purchases",
        "Cards",
        "Clients",
        "Surveys",
        "Offers",
    ]
    rows = list(book["Purchases"].iter_rows(values_only=True))
    header = list(rows[0])
    assert header[header.index("Cashier") + 1] == "Branch"
    where = [(row[1], row[header.index("Branch")]) for row in rows[1:]]
    assert where == [
        ("100045", "Test Store"),
        ("100048", "Tartu"),
        ("100045", "Test Store"),
        ("100046", "Test Store"),
        ("100045", "Tartu"),
        ("100048", "Tartu"),
        ("100048", "Tartu"),
    ]
    sheet = list(book["Branches"].iter_rows(values_only=True))
    assert list(sheet[0]) == [
        "Branch",
        "Purchases",
        "Revenue through cards",
        "Discounts given",
        "Active cards",
        "Average check",
        "Average discount",
        "NPS",
        "NPS: answers",
        "New buyers",
    ]
    by_name = {row[0]: row for row in sheet[1:]}
    assert [row[0] for row in sheet[1:]] == ["Tartu", "Test Store"]  # by revenue
    assert by_name["Tartu"][1:3] == (4, 8000)
    assert by_name["Test Store"][1:3] == (3, 2700)
    assert by_name["Tartu"][4:6] == (2, 2000)  # two cards; 8 000 ₽ / 4
    assert by_name["Test Store"][4] == 2

    await owner.send("/export 2026-11-01 2026-11-16 csv")
    zipped = await owner.wait_message(lambda m: m.document is not None, timeout=10)
    archive = zipfile.ZipFile(io.BytesIO(zipped.document.data))  # type: ignore[union-attr]
    assert "branches.csv" in archive.namelist()
    purchases = list(csv.reader(io.StringIO(archive.read("purchases.csv").decode("utf-8-sig"))))
    assert "Branch" in purchases[0]
    assert {row[purchases[0].index("Branch")] for row in purchases[1:]} == {"Test Store", "Tartu"}
    summary = list(csv.reader(io.StringIO(archive.read("branches.csv").decode("utf-8-sig"))))
    assert [row[:3] for row in summary[1:]] == [
        ["Tartu", "4", "8000.00"],
        ["Test Store", "3", "2700.00"],
    ]


# ------------------------------------------------------------------------------ one shop


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_one_shop_install_never_reads_the_word_branch(app: App, language: str) -> None:
    from tests.test_reports import seed

    await seed(app.sessionmaker)
    owner = app.tg.user(OWNER_ID, language_code=language)
    words = {
        tr(language, msgid).casefold()
        for msgid in ("Branch", "Branches", "All branches", "🏬 All branches", "Last week")
    } | {"branch", "филиал", "filiaal"}

    def clean(text: str | None) -> bool:
        return not any(word in (text or "").casefold() for word in words)

    await owner.send("/stats")
    stats = await owner.wait_message(heading(language, "<b>Program KPIs</b> for {period}"))
    assert clean(stats.text)
    periods = [tr(language, p) for p in ("7 days", "30 days", "90 days", "Month")]
    assert [b["text"] for b in stats.buttons] == periods
    assert [b["callback_data"] for b in stats.buttons] == ["st:7d", "st:30d", "st:90d", "st:month"]
    await owner.press(stats, periods[1])
    edited = await owner.wait_message(lambda m: m.edited)
    assert clean(edited.text)

    await owner.send("/digest")
    digest = await owner.wait_message(heading(language, "<b>Weekly digest</b> for {period}"))
    assert clean(digest.text)
    await owner.wait_message(lambda m: m.photo is not None)

    await owner.send("/export")
    message = await owner.wait_message(lambda m: m.document is not None, timeout=10)
    book = load_workbook(io.BytesIO(message.document.data))  # type: ignore[union-attr]
    assert len(book.sheetnames) == 6
    for sheet in book.worksheets:
        assert all(clean(str(cell)) for cell in next(sheet.iter_rows(values_only=True)))
    await app.tg.wait_for_idle()
    assert len([m for m in owner.messages() if m.photo is not None]) == 1  # no branch chart

    # The scheduled digest: the owner's text and chart, no branch chart, nobody else.
    assert await jobs.digest_pass(app.db, app.settings, app.clock()) == 1
    kinds = await _queued_kinds(app)
    assert kinds == ["digest", "digest_chart"]


async def _queued_kinds(app: App) -> list[str]:
    from sqlalchemy import select

    from db.models import Delivery

    async with app.sessionmaker() as session:
        rows = await session.scalars(select(Delivery.kind).order_by(Delivery.id))
        return list(rows)


async def test_a_big_chain_digest_stays_within_telegram_limits(app: App, chain: Chain) -> None:
    """Forty branches with long names: the table shows the best-selling ones and says how many
    more there are; the whole text stays within the digest's 4 000 visible characters."""
    from tests.branch_helpers import add_branch

    added = [
        await add_branch(app, f"Branch number {i:02d} on a rather long street name", -1009400 - i)
        for i in range(40)
    ]
    async with app.sessionmaker() as session:
        d = Data(session)
        card = await d.card("300001", issued_at=msk(2026, 9, 1))
        for i, branch in enumerate(added):
            await buy(session, card, msk(2026, 11, 12, 10), 10_000 * (i + 1), branch.id)
        await session.commit()
    owner = app.tg.user(OWNER_ID, language_code="en")
    await owner.send("/digest")
    message = await owner.wait_message("Weekly digest")
    text = message.text or ""
    assert len(text) <= owner_reports.DIGEST_TEXT_LIMIT
    lines = text.splitlines()
    first = lines.index("Branches: this week against last week, by revenue") + 1
    assert lines[first].startswith("• Tartu: ₽6,000")
    assert lines[first + 1].startswith("• Branch number 39 on a rather long street name: ₽4,000")
    assert lines[first + 2].startswith("• Branch number 38 on a rather long street name: ₽3,900")
    shown = [line for line in lines if line.startswith("• Branch number")] + [lines[first]]
    assert 3 <= len(shown) < 40
    more = 42 - len(shown)  # 40 + the two of the chain fixture
    assert f"… and {more} more branches (all of them: /export)" in lines


async def test_a_manager_asking_in_the_staff_group_is_answered_privately(
    app: App, chain: Chain
) -> None:
    from tests.branch_helpers import group_of

    manager = app.tg.user(MANAGER_B, "Mart", language_code="en")
    await manager.send("/start")  # the bot may write to them privately
    await app.tg.wait_for_idle()
    group = group_of(app, chain.b)
    await group.send(manager, "/stats")
    note = await group.wait_message()
    assert note.text == "📬 Sent to you in a private chat with me."
    private = await manager.wait_message("Program KPIs")
    assert "🏬 Branch: Tartu" in (private.text or "")
    await app.tg.wait_for_idle()
    assert [m.text for m in group.messages()] == [note.text]  # the bot's messages there
