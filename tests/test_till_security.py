"""Security and exactly-once at the till: forged presses, lost staff rights, concurrent confirms."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeTelegram
from config import Settings
from db.database import Database
from db.models import SaleDraft
from services.sales import DraftGone, SalesService
from tests.conftest import (
    CASHIER_ID,
    STAFF_CHAT_ID,
    App,
    FrozenClock,
    make_settings,
    running_app,
)
from tests.till_helpers import add_offer, count, purchases, seed_bound, seed_card

STRANGER = 3777
OTHER_CASHIER = 2002
PROJECT_ROOT = Path(__file__).resolve().parent.parent


async def test_a_non_staff_press_is_refused_and_changes_nothing(app: App) -> None:
    await seed_bound(app.sessionmaker)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    group = app.tg.group(STAFF_CHAT_ID)
    await group.send(cashier, "100045")
    prompt = await group.wait_message("Enter the purchase amount")
    await group.send(cashier, "1000", reply_to=prompt)
    quote = await group.wait_message("To pay")
    stranger = app.tg.user(STRANGER, language_code="en")
    confirm = quote.find_button("✅")["callback_data"]
    cancel = quote.find_button("❌")["callback_data"]
    for data in (confirm, cancel, "till:void:1", "till:ok:forged0000000000", "till:x:y:z", "till:"):
        answer = await group.press_data(stranger, quote.message_id, data)
        assert answer.params["text"] == "Not allowed." and answer.params.get("show_alert")
        # The same data replayed in the stranger's own chat: refused as well.
        answer = await stranger.press_data(quote.message_id, data)
        assert answer.params["text"] == "Not allowed."
    assert await purchases(app.sessionmaker) == []
    async with app.sessionmaker() as session:
        [draft] = (await session.scalars(select(SaleDraft))).all()
        assert draft.status == "open"
    # The real cashier's draft still works after all that.
    answer = await group.press(cashier, quote, "✅")
    assert answer.params["text"] == "Recorded."
    [purchase] = await purchases(app.sessionmaker)
    answer = await group.press_data(stranger, quote.message_id, f"till:void:{purchase.id}")
    assert answer.params["text"] == "Not allowed."
    assert (await purchases(app.sessionmaker))[0].voided_at is None


@pytest.fixture
async def uncached_app(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> AsyncIterator[App]:
    async with running_app(
        tg, make_settings(db_url, staff_cache_sec=0), sessionmaker, clock
    ) as application:
        yield application


async def test_a_cashier_removed_from_the_staff_chat_loses_access(uncached_app: App) -> None:
    app = uncached_app
    await seed_card(app.sessionmaker, "100045", 5)
    cashier = app.tg.user(CASHIER_ID, language_code="en")
    await cashier.send("/sale 100045")
    await cashier.wait_message("Enter the purchase amount")
    await cashier.send("1000")
    quote = await cashier.wait_message("To pay")
    app.tg.set_member(STAFF_CHAT_ID, CASHIER_ID, "left")
    answer = await cashier.press(quote, "✅")
    assert answer.params["text"] == "Not allowed."
    await cashier.send("/sale 100045")
    await app.tg.wait_for_idle(quiet=0.1)
    assert not any("Enter the purchase amount" in (m.text or "") for m in cashier.messages()[2:])
    assert await purchases(app.sessionmaker) == []


async def _draft(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, clock: FrozenClock
) -> str:
    card_id, _client = await seed_card(sessionmaker, "100045", 5)
    async with sessionmaker() as session:
        sales = SalesService(Database.of(session.bind), settings, clock)
        draft = await sales.quote(card_id, 250000, CASHIER_ID, CASHIER_ID, clock())
    return draft.id


async def test_twenty_concurrent_confirms_record_one_purchase(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, clock: FrozenClock
) -> None:
    draft_id = await _draft(sessionmaker, settings, clock)

    async def confirm() -> bool:
        async with sessionmaker() as session:
            sales = SalesService(Database.of(session.bind), settings, clock)
            return (await sales.confirm(draft_id, CASHIER_ID, False, clock())).already

    results = await asyncio.gather(*(confirm() for _ in range(20)))
    assert sorted(results) == [False] + [True] * 19
    rows = await purchases(sessionmaker)
    assert len(rows) == 1 and rows[0].draft_id == draft_id
    assert await count(sessionmaker, SaleDraft) == 1


CONFIRM_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import datetime
    from config import load_settings
    from db.engine import create_engine, create_sessionmaker
    from db.database import Database
    from services.sales import DraftGone, SalesService

    async def main(url, draft_id, now_iso):
        now = datetime.fromisoformat(now_iso)
        engine = create_engine(url)
        sessionmaker = create_sessionmaker(engine)
        settings = load_settings(env_file=None, database_url=url)
        async with sessionmaker() as session:
            sales = SalesService(Database.of(session.bind), settings, lambda: now)
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            result = await sales.confirm(draft_id, 2001, False, now)
            print("already" if result.already else "won", result.purchase_id, flush=True)
        await engine.dispose()

    asyncio.run(main(*sys.argv[1:4]))
    """
)


async def test_two_bot_processes_on_one_database_record_one_purchase(
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    draft_id = await _draft(sessionmaker, settings, clock)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CONFIRM_SCRIPT,
            db_url,
            draft_id,
            clock().isoformat(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=PROJECT_ROOT,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
    for proc in procs:  # both press ✅ at the same moment
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
    outputs = await asyncio.gather(*(asyncio.wait_for(p.communicate(), 30) for p in procs))
    results = sorted(out.decode().split()[0] for out, _err in outputs)
    assert results == ["already", "won"]
    assert [p.returncode for p in procs] == [0, 0]
    assert len(await purchases(sessionmaker)) == 1


async def test_one_offer_two_open_quotes_only_the_first_confirm_gets_it(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, clock: FrozenClock
) -> None:
    card_id, client_id = await seed_bound(sessionmaker)
    offer_id = await add_offer(sessionmaker, client_id, clock(), pct=5)
    async with sessionmaker() as session:
        sales = SalesService(Database.of(session.bind), settings, clock)
        # Two tills at once (the same cashier's second quote would replace the first).
        first = await sales.quote(card_id, 100000, CASHIER_ID, CASHIER_ID, clock())
        second = await sales.quote(card_id, 200000, OTHER_CASHIER, OTHER_CASHIER, clock())
        assert first.offer_pct == second.offer_pct == 5
        done = await sales.confirm(first.id, CASHIER_ID, False, clock())
        with pytest.raises(DraftGone) as gone:
            await sales.confirm(second.id, OTHER_CASHIER, False, clock())
        assert gone.value.reason == "offer_used"
        # The void returns the offer; a fresh quote gets it again.
        await sales.void(done.purchase_id, CASHIER_ID, False, clock())
        again = await sales.quote(card_id, 200000, CASHIER_ID, CASHIER_ID, clock())
        assert again.offer_pct == 5
        assert (await sales.confirm(again.id, CASHIER_ID, False, clock())).offer_pct == 5
    rows = await purchases(sessionmaker)
    assert [(p.offer_id, p.voided_at is not None) for p in rows] == [
        (offer_id, True),
        (offer_id, False),
    ]
    async with sessionmaker() as session:
        statuses = (
            await session.scalars(select(SaleDraft.status).order_by(SaleDraft.amount))
        ).all()
    assert sorted(statuses) == ["cancelled", "confirmed", "confirmed"]


async def test_a_working_cashiers_staff_check_is_renewed_before_it_runs_out(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> None:
    """A scan must not wait for getChatMember: while a cashier works, their membership is
    asked again in the background before the cached answer runs out — and a cashier removed
    from the group still loses access within STAFF_CACHE_SEC."""
    settings = make_settings(db_url, staff_cache_sec=6)  # asked again with 3 s left
    async with running_app(tg, settings, sessionmaker, clock) as app:
        await seed_card(app.sessionmaker, "100045", 5)
        cashier = app.tg.user(CASHIER_ID, language_code="en")
        await cashier.send("/sale 100045")
        await cashier.wait_message("Enter the purchase amount")
        asked = len([c for c in app.tg.calls if c.method == "getChatMember"])
        await asyncio.sleep(7)  # longer than the first answer lasts: renewed meanwhile
        assert len([c for c in app.tg.calls if c.method == "getChatMember"]) > asked
        # Telegram stops answering getChatMember: a scan that asked it now would be refused
        # (staff rights fail closed), so the cashier served proves the scan did not ask.
        app.tg.fail_next("getChatMember", 500, times=1000)
        await cashier.send("/sale 100045")
        await cashier.wait_message("Enter the purchase amount")
        await cashier.send("/cancel")
        await cashier.wait_message("Cancelled")
    # A cashier removed from the group loses access within STAFF_CACHE_SEC.
    tg.clear_faults()
    async with running_app(
        tg, make_settings(db_url, staff_cache_sec=1), sessionmaker, clock
    ) as app:
        cashier = app.tg.user(CASHIER_ID, language_code="en")
        await cashier.send("/sale 100045")
        await cashier.wait_message("Enter the purchase amount")
        app.tg.set_member(STAFF_CHAT_ID, CASHIER_ID, "left")
        await asyncio.sleep(1.5)
        await cashier.send("/sale 100045")
        assert "Enter the purchase amount" not in (await cashier.wait_message()).text
