"""The Mini App's dashboard in a chain of two shops: the owner switches between the whole chain
and each branch, a branch manager sees their branch only (and no export), a branch the reader
may not see or a malformed id is refused with the reader's words; a one-shop install's
dashboard has no branch in it at all.

The data is `tests/test_branches_owner.py`'s (the clock is Mon 2026-11-16 09:00 UTC, 12:00 in
Moscow). The dashboard's 7 days end yesterday: Nov 9–15, the period before Nov 2–8; 30 days:
Oct 17 – Nov 15.

    branch A (the settings' "Test Store")     branch B ("Tartu")
    Nov 3   100045  1 500 ₽  (period before)  Nov 5   100048  2 000 ₽  (period before)
    Nov 10  100045  1 000 ₽                   Nov 12  100045  3 000 ₽
    Nov 11  100046    200 ₽                   Nov 13  100048  1 000 ₽
                                              Nov 14  100048  2 000 ₽

7 days: A 2 purchases, 1 200 ₽ (before: 1 500 ₽, −20 %), 2 active cards, average check 600 ₽;
B 3 purchases, 6 000 ₽ (before: 2 000 ₽, +200 %), 2 active cards, average check 2 000 ₽;
the chain 5 purchases, 7 200 ₽ (before: 3 500 ₽, +105.7 %), 3 active cards. 30 days: A 3
purchases, 2 700 ₽; B 4, 8 000 ₽. The 12 weeks hold every sale: A 2 700 ₽, B 8 000 ₽.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeTelegram
from services.branches import BranchInfo
from tests.branch_helpers import (
    BRANCH_B,
    MANAGER_A,
    MANAGER_B,
    Chain,
    add_branch,
    branch_service,
    seed_chain,
    seed_sales,
    set_managers,
    tr,
)
from tests.conftest import OWNER_ID, App, FrozenClock, make_settings, running_app
from tests.miniapp_helpers import MINIAPP_URL, Client, init_data, miniapp_server

Env = tuple[App, str, aiohttp.ClientSession]
NOT_YOURS = "These figures are not available to you."
DASHBOARD_KEYS = {"period", "tiles", "nps", "weeks", "rfm", "labels"}  # a one-shop install's


@pytest.fixture
async def miniapp(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> AsyncIterator[Env]:
    settings = make_settings(db_url, miniapp_url=MINIAPP_URL)
    async with (
        running_app(tg, settings, sessionmaker, clock) as app,
        miniapp_server(app) as base,
        aiohttp.ClientSession() as http,
    ):
        yield app, base, http


@pytest.fixture
async def chain(miniapp: Env) -> Chain:
    app = miniapp[0]
    found = await seed_chain(app, managers_a=[MANAGER_A], managers_b=[MANAGER_B])
    await seed_sales(app.sessionmaker, found)
    return found


def client(env: Env, user_id: int, language: str = "en") -> Client:
    app, base, http = env
    return Client(http, base, init_data(app, user_id, language=language))


def figures(body: dict[str, Any]) -> dict[str, Any]:
    """The tiles' raw values and changes: {key: (value, change_pct)}."""
    return {tile["key"]: (tile["value"], tile["change_pct"]) for tile in body["tiles"]}


def week_revenue(body: dict[str, Any]) -> int:
    return sum(week["revenue"] for week in body["weeks"])


async def dashboard(who: Client, query: str = "days=7") -> dict[str, Any]:
    status, body = await who.get(f"dashboard?{query}")
    assert status == 200, (query, body)
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("language", ["ru", "en", "et"])
async def test_the_owner_sees_the_chain_and_each_branch(
    miniapp: Env, chain: Chain, language: str
) -> None:
    owner = client(miniapp, OWNER_ID, language)
    whole = await dashboard(owner)
    assert whole["branch"] is None
    assert whole["branches"] == [
        {"id": 0, "name": tr(language, "All branches"), "closed": False},
        {"id": 1, "name": "Test Store", "closed": False},
        {"id": chain.b.id, "name": BRANCH_B, "closed": False},
    ]
    shown = figures(whole)
    assert shown["purchases"][0] == 5
    assert shown["revenue"] == (720_000, 105.7)
    assert shown["active_cards"][0] == 3
    assert week_revenue(whole) == 270_000 + 800_000
    assert await dashboard(owner, "days=7&branch=0") == whole  # 0: the whole chain too

    shop_a = await dashboard(owner, "days=7&branch=1")
    assert shop_a["branch"] == 1 and shop_a["branches"] == whole["branches"]
    a = figures(shop_a)
    assert (a["purchases"][0], a["revenue"], a["active_cards"][0]) == (2, (120_000, -20.0), 2)
    assert a["average_check"][0] == 60_000
    assert week_revenue(shop_a) == 270_000

    tartu = await dashboard(owner, f"days=7&branch={chain.b.id}")
    assert tartu["branch"] == chain.b.id
    b = figures(tartu)
    assert (b["purchases"][0], b["revenue"], b["active_cards"][0]) == (3, (600_000, 200.0), 2)
    assert b["average_check"][0] == 200_000
    assert week_revenue(tartu) == 800_000

    month_b = figures(await dashboard(owner, f"days=30&branch={chain.b.id}"))
    assert (month_b["purchases"][0], month_b["revenue"][0]) == (4, 800_000)
    month_a = figures(await dashboard(owner, "days=30&branch=1"))
    assert (month_a["purchases"][0], month_a["revenue"][0]) == (3, 270_000)

    # The page's words for the switch, in the owner's language.
    me = (await owner.get("me"))[1]
    assert me["role"] == "owner"
    assert me["texts"]["closed_branch"] == tr(language, "{name} (closed)")
    assert me["texts"]["branch"] == tr(language, "Branch")
    status, _xlsx = await owner.get("export")
    assert status == 200


@pytest.mark.parametrize("language", ["en", "et"])
async def test_a_manager_sees_their_branch_only(miniapp: Env, chain: Chain, language: str) -> None:
    manager = client(miniapp, MANAGER_A, language)
    me = (await manager.get("me"))[1]
    assert me["role"] == "manager"
    mine = await dashboard(manager)  # no branch asked for: their branch
    assert mine["branch"] == 1
    assert mine["branches"] == [{"id": 1, "name": "Test Store", "closed": False}]
    a = figures(mine)
    assert (a["purchases"][0], a["revenue"], a["active_cards"][0]) == (2, (120_000, -20.0), 2)
    assert week_revenue(mine) == 270_000
    assert BRANCH_B not in json.dumps(mine, ensure_ascii=False)
    assert await dashboard(manager, "days=7&branch=1") == mine

    # Another branch, the whole chain, a branch that does not exist: refused, in their words.
    for forged in (str(chain.b.id), "0", "999"):
        status, body = await manager.get(f"dashboard?days=7&branch={forged}")
        assert (status, body["error"]) == (403, "forbidden"), forged
        assert body["message"] == tr(language, NOT_YOURS)
        assert BRANCH_B not in json.dumps(body, ensure_ascii=False)
    # The export stays the owner's.
    status, body = await manager.get("export")
    assert (status, body["message"]) == (403, tr(language, "This is not available to you."))

    other = figures(await dashboard(client(miniapp, MANAGER_B, language)))
    assert (other["purchases"][0], other["revenue"][0]) == (3, 600_000)


async def test_a_manager_of_both_branches_picks_either_but_not_the_chain(
    miniapp: Env, chain: Chain
) -> None:
    await set_managers(miniapp[0], BRANCH_B, [MANAGER_B, MANAGER_A])
    manager = client(miniapp, MANAGER_A)
    first = await dashboard(manager)
    assert first["branch"] == 1
    assert [b["id"] for b in first["branches"]] == [1, chain.b.id]  # no "All branches"
    tartu = await dashboard(manager, f"days=30&branch={chain.b.id}")
    assert figures(tartu)["revenue"][0] == 800_000
    status, body = await manager.get("dashboard?days=7&branch=0")
    assert (status, body["message"]) == (403, NOT_YOURS)


@pytest.mark.parametrize("forged", ["abc", "-1", "1.5", "1e3", "١", "2%200", "9" * 40])
async def test_a_malformed_branch_is_refused(miniapp: Env, chain: Chain, forged: str) -> None:
    status, body = await client(miniapp, OWNER_ID, "et").get(f"dashboard?days=7&branch={forged}")
    assert (status, body["error"], body["field"]) == (400, "bad_request", "branch")
    assert body["message"] == tr("et", NOT_YOURS)


async def test_closed_branches(miniapp: Env, chain: Chain) -> None:
    """A closed branch that sold keeps its figures (marked closed); one that never sold is not
    offered and is refused; its manager no longer sees a dashboard."""
    app = miniapp[0]
    never = await add_branch(app, "Pärnu", -1009300)
    await branch_service(app).close("Pärnu")
    await branch_service(app).close(BRANCH_B)
    owner = client(miniapp, OWNER_ID)
    whole = await dashboard(owner)
    assert whole["branches"][1:] == [
        {"id": 1, "name": "Test Store", "closed": False},
        {"id": chain.b.id, "name": BRANCH_B, "closed": True},
    ]
    tartu = await dashboard(owner, f"days=7&branch={chain.b.id}")
    assert figures(tartu)["revenue"][0] == 600_000
    status, body = await owner.get(f"dashboard?days=7&branch={never.id}")
    assert (status, body["message"]) == (403, NOT_YOURS)
    status, _body = await client(miniapp, MANAGER_B).get("dashboard?days=7")
    assert status == 403


async def test_a_one_shop_install_has_no_branch_in_its_dashboard(miniapp: Env) -> None:
    app = miniapp[0]
    shop = BranchInfo(id=1, name=app.settings.store.name)
    await seed_sales(app.sessionmaker, Chain(a=shop, b=shop))  # every sale: the one shop
    owner = client(miniapp, OWNER_ID)
    body = await dashboard(owner)
    assert set(body) == DASHBOARD_KEYS
    shown = figures(body)
    assert (shown["purchases"][0], shown["revenue"]) == (5, (720_000, 105.7))
    assert await dashboard(owner, "days=7&branch=2") == body  # nothing to pick: as before
    # A manager of the one shop (branches edit … --manager): the shop's figures, no switch.
    await set_managers(app, "Test Store", [MANAGER_A])
    manager = client(miniapp, MANAGER_A)
    assert (await manager.get("me"))[1]["role"] == "manager"
    assert await dashboard(manager) == body
    assert (await manager.get("export"))[0] == 403
