"""Data rights end to end: /privacy, /mydata, /deletemydata, /notifications, retention."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeTelegram
from db.database import Database
from db.models import (
    AuditEvent,
    BindAttempt,
    Card,
    CardStatus,
    Client,
    ConversationState,
    Delivery,
    DeliveryStatus,
    Offer,
    Purchase,
    Survey,
)
from services import privacy
from services.cards import refresh_totals
from tests.conftest import App, FrozenClock, make_settings, running_app

TG_ID = 777555333
FIRST, LAST, USERNAME = "Zephyrina", "Quillfeather", "zeph_quill_77"
PHONE = "+37255512345"
BIRTHDAY = date(1987, 6, 5)
COMMENT = "The coffee machine was broken again"
PAST = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


async def seed_member(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    tg_id: int = TG_ID,
    language: str = "en",
    consent_version: str = "1",
    number: str = "100045",
) -> int:
    """A member with a card, purchases, a survey, an offer, deliveries and audit events."""
    async with sessionmaker() as session:
        client = Client(
            tg_id=tg_id,
            first_name=FIRST,
            last_name=LAST,
            username=USERNAME,
            language=language,
            consent_at=PAST - timedelta(days=20),
            consent_version=consent_version,
            phone=PHONE,
            birthday=BIRTHDAY,
            created_at=PAST - timedelta(days=20),
            last_seen_at=PAST,
        )
        session.add(client)
        await session.flush()
        card = Card(
            number=number,
            base_pct=5,
            status=CardStatus.ISSUED,
            issued_at=PAST - timedelta(days=20),
            client_id=client.id,
            bound_at=PAST - timedelta(days=20),
            created_at=PAST - timedelta(days=30),
            image_key="k",
            image_file_id="photo-of-zephyrina",
        )
        session.add(card)
        await session.flush()
        offer = Offer(
            client_id=client.id,
            kind="winback",
            bonus_pct=5,
            valid_from=PAST,
            valid_until=PAST + timedelta(days=14),
            created_at=PAST,
        )
        session.add(offer)
        purchases = [
            Purchase(
                card_id=card.id,
                amount=amount,
                discount_pct=5,
                discount_amount=amount // 20,
                paid_amount=amount - amount // 20,
                cashier_id=2001,
                draft_id=f"d{number}-{amount}",
                created_at=PAST + timedelta(days=i),
            )
            for i, amount in enumerate((250000, 120050))
        ]
        session.add_all(purchases)
        await session.flush()
        await session.run_sync(refresh_totals, card.id)
        session.add(
            Survey(
                client_id=client.id,
                purchase_id=purchases[0].id,
                created_at=PAST,
                sent_at=PAST,
                score=4,
                answered_at=PAST,
                comment=COMMENT,
                comment_at=PAST,
            )
        )
        session.add_all(
            [
                Delivery(
                    key=f"survey:{client.id}",
                    kind="survey",
                    chat_id=tg_id,
                    client_id=client.id,
                    marketing=True,
                    payload={"name": FIRST},
                    status=DeliveryStatus.PENDING,
                    due_at=PAST + timedelta(days=30),
                ),
                Delivery(
                    key=f"sale:{client.id}",
                    kind="staff_sale",
                    chat_id=-1009000,
                    client_id=None,
                    payload={"text": f"Sale to {FIRST} {LAST} (@{USERNAME})"},
                    status=DeliveryStatus.SENT,
                    due_at=PAST,
                    sent_at=PAST,
                ),
                BindAttempt(tg_id=tg_id, card_number=number, success=True, at=PAST),
                AuditEvent(
                    at=PAST,
                    actor_id=tg_id,
                    action="consent.given",
                    client_id=client.id,
                    details={"version": consent_version},
                ),
                AuditEvent(
                    at=PAST,
                    actor_id=tg_id,
                    action="card.bound",
                    card_id=card.id,
                    client_id=client.id,
                    details={"name": f"{FIRST} {LAST}", "tg": tg_id, "phone": PHONE},
                ),
                AuditEvent(
                    at=PAST,
                    actor_id=2001,
                    action="sale.note",
                    details={"note": f"regular customer @{USERNAME}, said: {COMMENT}"},
                ),
            ]
        )
        await session.commit()
        return client.id


async def dump_db(session: AsyncSession) -> dict[str, list[tuple[Any, ...]]]:
    conn = await session.connection()
    tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
    result = {}
    for table in tables:
        rows = (await session.execute(text(f'SELECT * FROM "{table}" ORDER BY 1'))).all()
        result[table] = [tuple(row) for row in rows]
    return result


# ------------------------------------------------------------------------------ /privacy

POLICY = {
    "ru": ("Политика конфиденциальности", "Мы ничего о вас не храним", "Вы приняли эту версию"),
    "en": ("Privacy policy", "We store nothing about you", "You accepted this version"),
    "et": (
        "privaatsuspoliitika",
        "Me ei säilita sinu kohta midagi",
        "Kiitsid selle poliitika versiooni",
    ),
}


@pytest.mark.parametrize("language", ["ru", "en", "et"])
async def test_privacy_answers_before_and_after_consent(app: App, language: str) -> None:
    user = app.tg.user(TG_ID, language_code=language)
    heading, before, after = POLICY[language]
    await user.send("/privacy")
    message = await user.wait_message(heading)
    assert "Test Store" in message.text
    assert "/deletemydata" in message.text and "/mydata" in message.text
    assert "{" not in message.text  # every placeholder filled
    assert before in message.text

    await seed_member(app.sessionmaker, language=language)
    await user.send("/privacy")
    message = await user.wait_message(heading)
    assert after in message.text


async def test_privacy_tells_a_member_when_the_policy_changed(app: App) -> None:
    await seed_member(app.sessionmaker, consent_version="0")
    user = app.tg.user(TG_ID, language_code="en")
    await user.send("/privacy")
    message = await user.wait_message("Privacy policy")
    assert "version 0" in message.text and "current version is 1" in message.text


QUESTIONS = {"ru": "Вопросы:", "en": "Questions:", "et": "Küsimused:"}


@pytest.mark.parametrize("language", ["ru", "en", "et"])
async def test_privacy_without_store_contacts_has_no_empty_heading(
    tg: FakeTelegram,
    db_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
    language: str,
) -> None:
    settings = make_settings(db_url, store_phone="", store_address="")
    async with running_app(tg, settings, sessionmaker, clock) as app:
        user = app.tg.user(TG_ID, language_code=language)
        await user.send("/privacy")
        message = await user.wait_message(POLICY[language][0])
    assert QUESTIONS[language] not in message.text
    dangling = [line for line in message.text.splitlines() if line.rstrip().endswith(":")]
    assert dangling == []
    assert "/deletemydata" in message.text  # the rest of the policy is all there


@pytest.mark.parametrize("language", ["ru", "en", "et"])
async def test_privacy_shows_the_store_contacts_when_set(app: App, language: str) -> None:
    user = app.tg.user(TG_ID, language_code=language)
    await user.send("/privacy")
    message = await user.wait_message(POLICY[language][0])
    assert f"{QUESTIONS[language]} +7 900 000-00-00 1 Main St" in message.text


def test_policy_lines_whose_values_are_all_empty_are_left_out() -> None:
    from handlers.privacy import render_policy

    source = (
        "# Title {store_name}\n"
        "Text {retention}\n"
        "\n"
        "## Contacts\n"
        "{store_phone}\n"
        "\n"
        "## Rights\n"
        "- one {unknown}\n"
        "\n"
        "Questions: {store_phone} {store_address}"
    )
    empty = {"store_name": "", "retention": "", "store_phone": "", "store_address": " "}
    assert render_policy(source, empty) == ("<b>Title</b>\nText\n\n<b>Rights</b>\n• one {unknown}")
    some = {"store_name": "S", "retention": "R", "store_phone": "", "store_address": "A"}
    assert render_policy(source, some) == (
        "<b>Title S</b>\nText R\n\n<b>Rights</b>\n• one {unknown}\n\nQuestions: A"
    )


def test_policy_rendering_escapes_and_splits() -> None:
    from handlers.privacy import render_policy, split_message

    html_text = render_policy("# T {store_name}\n- a {unknown} {\n**b**", {"store_name": "<A&B>"})
    assert html_text == "<b>T &lt;A&amp;B&gt;</b>\n• a {unknown} {\n<b>b</b>"
    parts = split_message("\n\n".join(["x" * 3000] * 3))
    assert len(parts) == 3 and all(len(p) <= 4096 for p in parts)


def test_every_policy_fits_in_one_message() -> None:
    from handlers.privacy import policy_path, render_policy

    values = {
        "store_name": "S" * 60,
        "store_phone": "+7 900 000-00-00",
        "store_address": "A" * 120,
        "version": "2026-11",
        "retention": "R" * 200,
    }
    for language in ("ru", "en", "et"):
        rendered = render_policy(policy_path(language).read_text(encoding="utf-8"), values)
        assert len(rendered) < 4096 - 300, language


# ------------------------------------------------------------------------------- /mydata


async def test_mydata_without_a_client_row_says_nothing_is_stored(app: App) -> None:
    user = app.tg.user(3901, language_code="en")
    await user.send("/mydata")
    assert "We store nothing about you" in (await user.wait_message()).text


async def test_mydata_sends_everything_as_json(app: App) -> None:
    await seed_member(app.sessionmaker)
    user = app.tg.user(TG_ID, language_code="en")
    await user.send("/mydata")
    message = await user.wait_message(lambda m: m.document is not None)
    assert message.document.filename == "my-data.json"
    data = json.loads(message.document.data)
    assert data["profile"]["telegram_id"] == TG_ID
    assert data["profile"]["first_name"] == FIRST
    assert data["profile"]["phone"] == PHONE
    assert data["profile"]["birthday"] == "1987-06-05"
    assert [c["number"] for c in data["cards"]] == ["100045"]
    assert [p["amount"] for p in data["purchases"]] == ["2500.00", "1200.50"]
    assert data["surveys"][0]["comment"] == COMMENT
    assert data["offers"][0]["kind"] == "winback"
    assert {d["kind"] for d in data["deliveries"]} == {"survey"}
    assert data["consent"]["policy_version"] == "1"
    assert data["card_binding_attempts"][0]["card"] == "100045"
    assert [e["action"] for e in data["consent"]["history"]] == ["consent.given"]


# -------------------------------------------------------------------------- /deletemydata


def _contains(value: Any, needles: list[str]) -> str | None:
    if value is None:
        return None
    as_text = str(value)
    if isinstance(value, bytes):
        as_text = value.decode("utf-8", "replace")
    for needle in needles:
        if needle.lower() in as_text.lower():
            return needle
        escaped = json.dumps(needle)[1:-1]
        if escaped != needle and escaped.lower() in as_text.lower():
            return needle
    return None


async def test_deletemydata_erases_every_personal_field_and_kpis_still_add_up(app: App) -> None:
    from services import kpi
    from tests.kpi_helpers import report_service

    client_id = await seed_member(app.sessionmaker)
    first, last = date(2026, 11, 1), date(2026, 11, 10)
    reports = report_service(app.sessionmaker.kw["bind"], app.settings)
    async with app.sessionmaker() as session:
        kpis_before = kpi.to_json(await reports.kpis(first, last), 2)
        ledger_before = (await dump_db(session))["purchases"]

    user = app.tg.user(TG_ID, FIRST, language_code="en", username=USERNAME, last_name=LAST)
    await user.send("/deletemydata")
    question = await user.wait_message("Erase all your data?")
    await user.press(question, "Keep my data")
    assert (await user.wait_message()).text == "Nothing was deleted."
    async with app.sessionmaker() as session:
        assert (await session.get(Client, client_id)).tg_id == TG_ID

    await user.send("/deletemydata")
    question = await user.wait_message("Erase all your data?")
    await user.press(question, "🗑 Yes, erase my data")
    assert "Your data was erased" in (await user.wait_message()).text
    await app.tg.wait_for_idle()

    async with app.sessionmaker() as session:
        dump = await dump_db(session)
        # Personal values: nowhere in any column of any table (text, JSON or number).
        needles = [str(TG_ID), FIRST, LAST, USERNAME, PHONE, "1987-06-05", COMMENT]
        for table, rows in dump.items():
            for row in rows:
                for value in row:
                    assert value != TG_ID, (table, row)
                    assert _contains(value, needles) is None, (table, row)

        client = await session.get(Client, client_id)
        assert client.erased_at is not None and client.tg_id is None
        assert client.marketing_opt_out and not client.reachable
        card = await session.scalar(select(Card).where(Card.number == "100045"))
        assert card.status == CardStatus.BLOCKED and card.block_reason == "erased"
        assert card.client_id == client_id  # per-client aggregates keep adding up
        survey_delivery = await session.scalar(select(Delivery).where(Delivery.kind == "survey"))
        assert survey_delivery.status == DeliveryStatus.SKIPPED
        erased_event = await session.scalar(
            select(AuditEvent).where(AuditEvent.action == "client.erased")
        )
        assert erased_event.client_id == client_id and erased_event.actor_id is None
        assert (await session.scalar(select(Survey.score))) == 4  # NPS still counts

        # The ledger is untouched and the KPIs of the past period are exactly the same.
        assert dump["purchases"] == ledger_before
        kpis_after = kpi.to_json(await reports.kpis(first, last), 2)
        assert kpis_after == kpis_before
        assert kpis_after["purchases"] == 2 and kpis_after["revenue"] == 3700.5

    # The person is unknown now; the bot only answers what they write.
    await user.send("/mydata")
    assert "We store nothing about you" in (await user.wait_message()).text


async def test_deletemydata_for_a_stranger_stores_nothing(app: App) -> None:
    user = app.tg.user(3902, language_code="ru")
    await user.send("/deletemydata")
    assert "Мы ничего о вас не храним" in (await user.wait_message()).text
    await user.press_data(1, "pv:erase")
    async with app.sessionmaker() as session:
        assert (await session.scalar(select(Client.id))) is None


# ------------------------------------------------------------------------- /notifications


async def test_notifications_toggle(app: App) -> None:
    client_id = await seed_member(app.sessionmaker)
    user = app.tg.user(TG_ID, language_code="en")
    await user.send("/notifications")
    message = await user.wait_message("Offers and surveys: on")
    answer = await user.press(message, "🔕 Turn off")
    assert answer.params.get("text") == "Saved."
    message = await user.wait_message("Offers and surveys: off")
    async with app.sessionmaker() as session:
        assert (await session.get(Client, client_id)).marketing_opt_out is True
        survey = await session.scalar(select(Delivery).where(Delivery.kind == "survey"))
        assert survey.status == DeliveryStatus.SKIPPED  # a queued survey is not sent either
    # A stale "Turn off" tapped again changes nothing and does not error.
    await user.press_data(message.message_id, "pv:off")
    await user.press(message, "🔔 Turn on")
    await user.wait_message("Offers and surveys: on")
    async with app.sessionmaker() as session:
        assert (await session.get(Client, client_id)).marketing_opt_out is False
        actions = (await session.scalars(select(AuditEvent.action).order_by(AuditEvent.id))).all()
        assert actions[-2:] == ["marketing.off", "marketing.on"]


async def test_notifications_for_a_stranger(app: App) -> None:
    user = app.tg.user(3903, language_code="et")
    await user.send("/notifications")
    assert "Me ei säilita sinu kohta midagi" in (await user.wait_message()).text


async def test_privacy_commands_do_nothing_in_groups(app: App) -> None:
    await seed_member(app.sessionmaker)
    user = app.tg.user(TG_ID, language_code="en")
    group = app.tg.group(-1005555)
    await group.send(user, "/mydata")
    await app.tg.wait_for_idle()
    assert not [m for m in app.tg.messages_in(-1005555) if m.document is not None]


# ------------------------------------------------------------------------------ retention


async def test_anonymise_inactive_erases_only_the_long_inactive(
    sessionmaker: async_sessionmaker[AsyncSession], db: Database
) -> None:
    old_id = await seed_member(sessionmaker)
    recent_id = await seed_member(sessionmaker, tg_id=888, number="100046")
    buyer_id = await seed_member(sessionmaker, tg_id=999, number="100047")
    async with sessionmaker() as session:
        recent = await session.get(Client, recent_id)
        recent.last_seen_at = datetime(2027, 6, 1, tzinfo=UTC)
        card = await session.scalar(select(Card).where(Card.number == "100047"))
        session.add(  # silent in the chat, but bought something recently
            Purchase(
                card_id=card.id,
                amount=1000,
                discount_pct=5,
                discount_amount=50,
                paid_amount=950,
                created_at=datetime(2027, 5, 1, tzinfo=UTC),
            )
        )
        await session.flush()
        await session.run_sync(refresh_totals, card.id)
        await session.commit()
        # A conversation they left half-way long ago (its key names them), and someone else's.
        for user_id in (TG_ID, 888):
            session.add(
                ConversationState(
                    key=f"fsm:123456:{user_id}:{user_id}:default",
                    state="wallet:pin",
                    data={"number": "100045"},
                    updated_at=datetime(2026, 12, 1, tzinfo=UTC),
                )
            )
        await session.commit()
    now = datetime(2027, 7, 1, tzinfo=UTC)
    assert await privacy.anonymise_inactive(db, now, 6) == 1
    assert await privacy.anonymise_inactive(db, now, 6) == 0  # idempotent
    async with sessionmaker() as session:
        assert (await session.get(Client, old_id)).erased_at is not None
        assert (await session.get(Client, recent_id)).erased_at is None
        assert (await session.get(Client, buyer_id)).erased_at is None
        event = await session.scalar(select(AuditEvent).where(AuditEvent.action == "client.erased"))
        assert event.details == {"reason": "retention"}
        keys = (await session.scalars(select(ConversationState.key))).all()
        assert keys == ["fsm:123456:888:888:default"]


def test_months_before_clamps_the_day() -> None:
    moment = datetime(2027, 3, 31, 12, tzinfo=UTC)
    assert privacy.months_before(moment, 1) == datetime(2027, 2, 28, 12, tzinfo=UTC)
    assert privacy.months_before(moment, 15) == datetime(2025, 12, 31, 12, tzinfo=UTC)


async def test_erasure_after_the_real_wallet_flow_leaves_no_trace(app: App) -> None:
    """Whatever the wallet stores while someone joins and binds a card, erasure finds it."""
    from tests.wallet_helpers import bind, seed_cards

    await seed_cards(app.sessionmaker, 100040, 100050, 5, PAST - timedelta(days=30))
    user = app.tg.user(TG_ID, FIRST, language_code="en", username=USERNAME, last_name=LAST)
    await bind(user, "100045")
    await app.tg.wait_for_idle()
    async with app.sessionmaker() as session:
        client = await session.scalar(select(Client).where(Client.tg_id == TG_ID))
        assert client is not None and client.first_name == FIRST

    await user.send("/deletemydata")
    question = await user.wait_message("Erase all your data?")
    await user.press(question, "🗑 Yes, erase my data")
    await user.wait_message("Your data was erased")
    await app.tg.wait_for_idle()
    async with app.sessionmaker() as session:
        dump = await dump_db(session)
    needles = [str(TG_ID), FIRST, LAST, USERNAME]
    for table, rows in dump.items():
        for row in rows:
            for value in row:
                assert value != TG_ID, (table, row)
                assert _contains(value, needles) is None, (table, row)

    # Starting over is possible: they are a stranger again and asked for consent.
    await user.send("/start")
    assert (await user.wait_message(lambda m: bool(m.buttons))).buttons


# ------------------------------------------------------------- concurrent transactions
# Two taps at once (`asyncio.gather` of two units: on PostgreSQL two transactions at a time).


async def _events(sessionmaker: async_sessionmaker[AsyncSession], action: str) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(select(func.count()).where(AuditEvent.action == action)) or 0
        )


async def test_two_erasures_at_once_erase_once(
    sessionmaker: async_sessionmaker[AsyncSession], db: Database
) -> None:
    await seed_member(sessionmaker)
    erased = await asyncio.gather(*(privacy.erase_client(db, TG_ID, PAST) for _ in range(2)))
    assert sorted(erased) == [False, True]
    assert await _events(sessionmaker, "client.erased") == 1


async def test_two_opt_outs_at_once_are_one_change(
    sessionmaker: async_sessionmaker[AsyncSession], db: Database
) -> None:
    await seed_member(sessionmaker)
    states = await asyncio.gather(
        *(privacy.set_marketing(db, TG_ID, False, PAST) for _ in range(2))
    )
    assert states == [False, False]
    assert await _events(sessionmaker, "marketing.off") == 1
    assert await privacy.marketing_enabled(db, TG_ID) is False
