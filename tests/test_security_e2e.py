"""Every staff/owner command and callback attempted by someone without the role: refused (or
fallen through to the customer features), nothing leaked, nothing changed in the database."""

from __future__ import annotations

import enum
import itertools
import typing
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeTelegram, FakeUser
from db.models import Card, CardStatus, Client, SaleDraft
from services import qr_payload
from tests.conftest import CASHIER_ID, STAFF_CHAT_ID, App, FrozenClock, make_settings, running_app
from tests.test_privacy import FIRST, LAST, TG_ID, USERNAME, seed_member
from tests.test_security_fuzz import CALLBACK_CLASSES

STRANGER_ID = 3801  # never joined: nothing about them may be stored
MEMBER_ID = 3802  # a member with their own card
DRAFT_ID = "draftSecret0123456789abcdef"
DRAFT_AMOUNT = 4321_09  # 4 321.09: must never be shown to a customer

OWNER_COMMANDS = [
    "/stats",
    "/stats 30d",
    "/digest",
    "/export",
    "/export csv",
    "/cards",
    "/card 100045",
    "/block 100045",
    "/unblock 100045",
    "/unbind 100045",
    "/staff",
    "/audit",
    "/audit 100045",
    "/campaign",
    "/campaigns",
]
STAFF_COMMANDS = ["/sale 100045", "/sale", "/issue 100046", "/issue 100046 b2b", "/void 1"]
STAFF_MODULES = ("handlers.till", "handlers.owner_reports", "handlers.owner_tools")


@pytest.fixture
async def app(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> AsyncIterator[App]:
    """The usual app, with the flood limit out of the way: this test is one long flood."""
    async with running_app(
        tg, make_settings(db_url, flood_limit=100_000), sessionmaker, clock
    ) as application:
        yield application


async def seed(app: App) -> int:
    await seed_member(app.sessionmaker)
    now = app.clock()
    async with app.sessionmaker() as session:
        member = Client(
            tg_id=MEMBER_ID,
            first_name="Mallory",
            language="en",
            consent_at=now - timedelta(days=3),
            consent_version=app.settings.privacy.policy_version,
            created_at=now - timedelta(days=3),
        )
        session.add(member)
        await session.flush()
        session.add_all(
            [
                Card(number="100046", base_pct=5, status=CardStatus.IN_STOCK),
                Card(
                    number="100047",
                    base_pct=7,
                    status=CardStatus.ISSUED,
                    issued_at=now - timedelta(days=3),
                    client_id=member.id,
                    bound_at=now - timedelta(days=3),
                ),
            ]
        )
        card_id = (await session.execute(text("SELECT id FROM cards WHERE number='100045'"))).one()[
            0
        ]
        session.add(
            SaleDraft(
                id=DRAFT_ID,
                card_id=card_id,
                cashier_id=CASHIER_ID,
                chat_id=CASHIER_ID,
                amount=DRAFT_AMOUNT,
                base_pct=5,
                discount_pct=5,
                discount_amount=DRAFT_AMOUNT // 20,
                paid_amount=DRAFT_AMOUNT - DRAFT_AMOUNT // 20,
                created_at=now,
                expires_at=now + timedelta(minutes=10),
            )
        )
        await session.commit()
        purchase_id = (await session.execute(text("SELECT max(id) FROM purchases"))).one()[0]
    return int(purchase_id)


async def dump(app: App) -> dict[str, list[dict[str, Any]]]:
    async with app.sessionmaker() as session:
        conn = await session.connection()
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        result = {}
        for table in tables:
            if table in ("processed_updates", "alembic_version"):
                continue
            rows = (await session.execute(text(f'SELECT * FROM "{table}" ORDER BY 1'))).all()
            result[table] = [dict(row._mapping) for row in rows]
        return result


def _pool(annotation: Any, refs: list[str], ints: list[int]) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return list(typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return list(annotation)
    if annotation is bool:
        return [True, False]
    if annotation is int:
        return ints
    return ["ok", "no", "void", "confirm", "cancel", "yes", *refs]


def forged_callbacks(purchase_id: int) -> list[str]:
    """Plausible staff button data: every action with every real id we seeded."""
    refs = [DRAFT_ID, str(purchase_id), "100045", "100046"]
    ints = [purchase_id, 1, 0, 100045]
    data: list[str] = []
    for klass in CALLBACK_CLASSES:
        if not klass.__module__.startswith(STAFF_MODULES):
            continue
        hints = typing.get_type_hints(klass)
        names = list(klass.model_fields)
        pools = [_pool(hints.get(name, str), refs, ints) for name in names]
        for combo in itertools.islice(itertools.product(*pools), 80):
            try:
                data.append(klass(**dict(zip(names, combo, strict=True))).pack())
            except (ValueError, TypeError):
                continue
    return data


def push_callback(app: App, user: FakeUser, data: str, n: int) -> str:
    query_id = f"forged-{user.id}-{n}"
    messages = app.tg.messages_in(user.id)
    message = (
        messages[-1].payload if messages else {"chat": user.as_chat(), "message_id": 1, "date": 0}
    )
    app.tg.push_update(
        "callback_query",
        {
            "id": query_id,
            "from": user.as_user(),
            "chat_instance": "1",
            "data": data,
            "message": message,
        },
    )
    return query_id


def what_the_user_saw(app: App, user_id: int, query_ids: set[str]) -> list[str]:
    seen = []
    for call in app.tg.calls:
        if not call.ok:
            continue
        if call.method == "answerCallbackQuery" and call.params.get("callback_query_id") in (
            query_ids
        ):
            seen.append(str(call.params.get("text") or ""))
        elif call.chat_id == user_id:
            seen.append(call.text or "")
    return seen


SECRETS = [FIRST, LAST, USERNAME, str(TG_ID), "4 321", "4321", "4,321", "Owners", "Владельцы"]


async def attack(app: App, user: FakeUser, commands: list[str], purchase_id: int) -> set[str]:
    for command in commands:
        await user.send(command)
    forged = forged_callbacks(purchase_id)
    assert any(d.startswith("till:") for d in forged)  # the till's buttons are covered
    query_ids = {push_callback(app, user, data, n) for n, data in enumerate(forged)}
    # A tampered QR payload pasted as a deep link: refused like any stranger's text.
    payload = qr_payload.sign(app.settings.telegram.secret_key.get_secret_value(), "100045")
    await user.send(f"/start {payload[:-1]}{'A' if payload[-1] != 'A' else 'B'}")
    # Every press is answered (a refusal at least) before the quiet period counts: on a busy
    # machine the bot may take longer than the quiet period to make its first call.
    for query_id in query_ids:
        await app.tg.wait_for(
            lambda c, q=query_id: (
                c.method == "answerCallbackQuery" and c.params.get("callback_query_id") == q
            ),
            timeout=30,
        )
    await app.tg.wait_for_idle(quiet=0.5, timeout=30)
    return query_ids


def assert_no_leak(app: App, user_id: int, query_ids: set[str]) -> None:
    seen = what_the_user_saw(app, user_id, query_ids)
    assert seen, "the attacker got no answer at all"
    for shown in seen:
        for secret in SECRETS:
            assert secret not in shown, (secret, shown)
    documents = [c for c in app.tg.sent(user_id) if c.method == "sendDocument"]
    assert documents == []  # no export, no data file


@pytest.mark.parametrize("language", ["en", "ru"])
async def test_a_stranger_can_do_nothing_staff_or_owner(app: App, language: str) -> None:
    purchase_id = await seed(app)
    before = await dump(app)
    user = app.tg.user(STRANGER_ID, "Eve", language_code=language, username="eve")
    query_ids = await attack(app, user, OWNER_COMMANDS + STAFF_COMMANDS, purchase_id)
    assert_no_leak(app, STRANGER_ID, query_ids)
    assert [c for c in app.tg.sent(STRANGER_ID) if c.method == "sendPhoto"] == []
    assert await dump(app) == before


async def test_a_member_can_do_nothing_staff_or_owner(app: App) -> None:
    purchase_id = await seed(app)
    before = await dump(app)
    user = app.tg.user(MEMBER_ID, "Mallory", language_code="en")
    query_ids = await attack(app, user, OWNER_COMMANDS + STAFF_COMMANDS, purchase_id)
    assert_no_leak(app, MEMBER_ID, query_ids)
    after = await dump(app)
    # Seeing a member, caching the image of *their own* card and making *their own* invite
    # code (the share button under the card) are not changes of data.
    (member,) = [row["id"] for row in after["clients"] if row["tg_id"] == MEMBER_ID]
    for dumped in (before, after):
        for row in dumped["clients"]:
            row.pop("last_seen_at")
        for row in dumped["cards"]:
            if row["number"] == "100047":
                row.pop("image_key")
                row.pop("image_file_id")
        dumped["invite_codes"] = [r for r in dumped["invite_codes"] if r["client_id"] != member]
    assert after == before


async def test_a_cashier_cannot_use_owner_commands(app: App) -> None:
    await seed(app)
    before = await dump(app)
    cashier = app.tg.user(CASHIER_ID, "Carl", language_code="en")
    for command in OWNER_COMMANDS:
        await cashier.send(command)
    await app.tg.wait_for_idle(quiet=0.5, timeout=30)
    seen = what_the_user_saw(app, CASHIER_ID, set())
    assert seen and not any("Owners" in s for s in seen)
    assert [c for c in app.tg.sent(CASHIER_ID) if c.method == "sendDocument"] == []
    assert await dump(app) == before
    group = app.tg.group(STAFF_CHAT_ID)
    for command in OWNER_COMMANDS:
        await group.send(cashier, command)
    await app.tg.wait_for_idle(quiet=0.5, timeout=30)
    assert not [c for c in app.tg.sent(STAFF_CHAT_ID) if c.method == "sendDocument"]
    assert not any("Owners" in (c.text or "") for c in app.tg.sent(STAFF_CHAT_ID))
    assert await dump(app) == before
