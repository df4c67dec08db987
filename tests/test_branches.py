"""The chain's branches (services.branches): the first one is the settings' shop; the owner's
additions, edits and closings are checked before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from config import Settings
from db.database import Database
from db.engine import create_engine
from db.migrate import upgrade
from db.models import AuditEvent, Branch, BranchManager
from services.branches import (
    MAIN_BRANCH_ID,
    BranchChanges,
    BranchDraft,
    BranchError,
    BranchService,
    distance_km,
)
from tests.conftest import STAFF_CHAT_ID, FrozenClock, make_settings


@pytest.fixture
def branches(db: Database, settings: Settings, clock: FrozenClock) -> BranchService:
    return BranchService(db, settings, clock)


async def _counts(db: Database) -> tuple[int, int, int]:
    def unit(session):  # type: ignore[no-untyped-def]
        return (
            session.scalar(select(func.count()).select_from(Branch)),
            session.scalar(select(func.count()).select_from(BranchManager)),
            session.scalar(select(func.count()).select_from(AuditEvent)),
        )

    return await db.read(unit)


async def test_an_upgraded_shop_is_a_chain_of_one_described_by_its_settings(
    branches: BranchService,
) -> None:
    (main,) = await branches.listed()
    assert main.id == MAIN_BRANCH_ID
    assert (main.name, main.address, main.hours) == ("Test Store", "1 Main St", "10-20")
    assert main.staff_chat_id == STAFF_CHAT_ID
    assert not await branches.is_chain()
    assert await branches.by_chat(STAFF_CHAT_ID) == main


async def test_a_second_branch_with_its_group_and_managers(branches: BranchService) -> None:
    tartu = await branches.add(
        BranchDraft(
            name="  Tartu  Rüütli ",
            staff_chat_id="-100222",
            address="Rüütli 1",
            latitude="58.38",
            longitude="26.72",
            managers=["555", "556"],
        )
    )
    assert tartu.name == "Tartu Rüütli" and tartu.staff_chat_id == -100222
    assert tartu.managers == (555, 556) and tartu.located
    assert await branches.is_chain()
    assert await branches.by_chat(-100222) == tartu
    assert [b.name for b in await branches.managed_by(555)] == ["Tartu Rüütli"]
    edited = await branches.edit("tartu rüütli", BranchChanges(hours="9–21", managers=["557"]))
    assert edited.hours == "9–21" and edited.managers == (557,)
    assert await branches.managed_by(555) == []


@pytest.mark.parametrize(
    ("draft", "reason"),
    [
        (BranchDraft(name="test store", staff_chat_id=-100333), "name_taken"),
        (BranchDraft(name="Narva", staff_chat_id=STAFF_CHAT_ID), "chat_taken"),
        (BranchDraft(name="Narva", staff_chat_id="12ab"), "chat"),
        (BranchDraft(name="Narva", staff_chat_id="100333"), "chat"),
        (BranchDraft(name="", staff_chat_id=-100333), "name"),
        (BranchDraft(name="x" * 65, staff_chat_id=-100333), "name"),
        (BranchDraft(name="Narva", staff_chat_id=-100333, latitude="59.3"), "location"),
        (
            BranchDraft(name="Narva", staff_chat_id=-100333, latitude="91", longitude="0"),
            "location",
        ),
        (BranchDraft(name="Narva", staff_chat_id=-100333, managers=["@olga"]), "manager"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_written(
    branches: BranchService, db: Database, draft: BranchDraft, reason: str
) -> None:
    before = await _counts(db)
    with pytest.raises(BranchError) as refused:
        await branches.add(draft)
    assert refused.value.reason == reason
    assert await _counts(db) == before


async def test_a_group_of_another_branch_and_the_first_shops_settings_are_refused(
    branches: BranchService, db: Database
) -> None:
    await branches.add(BranchDraft(name="Tartu", staff_chat_id=-100222))
    await branches.add(BranchDraft(name="Narva", staff_chat_id=-100333))
    before = await _counts(db)
    with pytest.raises(BranchError) as taken:
        await branches.edit("Narva", BranchChanges(staff_chat_id=-100222))
    assert taken.value.reason == "chat_taken" and "Tartu" in str(taken.value)
    with pytest.raises(BranchError) as main:
        await branches.edit("Test Store", BranchChanges(address="2 Main St"))
    assert main.value.reason == "settings" and "STORE_ADDRESS" in str(main.value)
    with pytest.raises(BranchError) as unknown:
        await branches.close("Pärnu")
    assert unknown.value.reason == "unknown"
    assert await _counts(db) == before
    # The first shop's managers are not the settings': they can be set.
    main_branch = await branches.edit("Test Store", BranchChanges(managers=["777"]))
    assert main_branch.managers == (777,) and main_branch.address == "1 Main St"


async def test_closing_keeps_the_branch_but_not_the_last_open_one(
    branches: BranchService, db: Database
) -> None:
    await branches.add(BranchDraft(name="Tartu", staff_chat_id=-100222))
    closed = await branches.close("Tartu")
    assert not closed.is_open
    assert await branches.by_chat(-100222) is None
    assert await branches.is_chain()  # its history still counts
    with pytest.raises(BranchError) as again:
        await branches.close("Tartu")
    assert again.value.reason == "closed"
    with pytest.raises(BranchError) as last:
        await branches.close("Test Store")
    assert last.value.reason == "last"


async def test_staff_seen_and_chosen(branches: BranchService) -> None:
    tartu = await branches.add(BranchDraft(name="Tartu", staff_chat_id=-100222))
    await branches.seen(42, MAIN_BRANCH_ID)
    await branches.seen(42, tartu.id)
    await branches.seen(42, tartu.id)  # twice: once
    assert await branches.staff_branches(42) == [MAIN_BRANCH_ID, tartu.id]
    assert await branches.chosen(42) is None
    await branches.choose(42, tartu.id)
    assert await branches.chosen(42) == tartu.id
    assert await branches.staff_branches(42) == [tartu.id, MAIN_BRANCH_ID]


def test_distance() -> None:
    tallinn, tartu = (59.437, 24.7536), (58.378, 26.729)
    assert distance_km(*tallinn, *tartu) == pytest.approx(163.5, abs=1)
    assert distance_km(*tallinn, *tallinn) == 0


async def test_an_existing_shop_upgrades_into_a_chain_of_one_with_nothing_to_do(
    tmp_path: Path, clock: FrozenClock
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"
    await upgrade(url, "0009")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for sql in (
                "INSERT INTO cards (id, number, base_pct, segment, kind, status, created_at, "
                "bind_failures, purchase_count, purchase_total) VALUES (1, '100001', 5, 'b2c', "
                "'printed', 'issued', '2026-01-01 00:00:00.000000', 0, 1, 1000)",
                "INSERT INTO purchases (card_id, amount, discount_pct, discount_amount, "
                "paid_amount, source, created_at, promo_pct) VALUES "
                "(1, 1000, 5, 50, 950, 'bot', '2026-03-01 10:00:00.000000', 0)",
                "INSERT INTO store_days (day, revenue, checks, imported_at) VALUES "
                "('2026-03-01', 500000, 40, '2026-03-02 00:00:00.000000')",
            ):
                await conn.execute(text(sql))
        await upgrade(url)
        async with engine.connect() as conn:
            purchases = (await conn.execute(text("SELECT branch_id FROM purchases"))).all()
            cards = (await conn.execute(text("SELECT branch_id FROM cards"))).all()
            days = (
                await conn.execute(text("SELECT day, branch_id, revenue FROM store_days"))
            ).all()
        settings = make_settings(url)
        (shop,) = await BranchService(Database.of(engine), settings, clock).listed()
    finally:
        await engine.dispose()
    assert purchases == [(MAIN_BRANCH_ID,)] and cards == [(MAIN_BRANCH_ID,)]
    assert [(str(d), b, r) for d, b, r in days] == [("2026-03-01", MAIN_BRANCH_ID, 500000)]
    # The settings' shop is the chain's one branch: nothing for the owner to redo.
    assert (shop.id, shop.name, shop.staff_chat_id) == (MAIN_BRANCH_ID, "Test Store", STAFF_CHAT_ID)
