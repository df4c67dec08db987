"""Why members take part: asked once after the third purchase (through the outbox, in the
member's language, never beside an NPS survey), answered once, erased with the person, and
counted in the weekly digest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeTelegram
from bot.i18n import create_i18n
from config import Settings
from db.database import Database
from db.engine import scrub_wal
from db.models import Client, DeliveryStatus, Motivation, Survey
from handlers.motivation import MotivationCb, motivation_lines
from handlers.owner_reports import digest_message
from services import backup, jobs, motivation, privacy
from services.delivery import DeliverySender
from services.motivation import Asked
from tests.conftest import App, FrozenClock, make_settings, on_postgres, running_app
from tests.engagement_helpers import (
    buy,
    deliveries,
    fast_limiter,
    make_client,
    sender_for,
)
from tests.kpi_helpers import report_service
from tests.test_privacy import PAST, TG_ID, seed_member

# These tests run sweeps and delivery passes by hand: no background worker racing for rows.
pytestmark = pytest.mark.manual_delivery

I18N = create_i18n()

# The texts as the code writes them (msgids): what each catalog says for them is looked up,
# so these tests hold before and after the translations arrive.
QUESTION = (
    "Thank you for being a regular at {store}! One quick question: what keeps you in our "
    "loyalty program?"
)
LABELS = ["The discount", "The store itself", "Convenience", "Something else"]
PROMPT = "What keeps you with us? Just write a few words, or press Skip."
THANKS = "Thank you for your answer!"
ALREADY = "You have already answered this survey. Thank you!"
FEEDBACK = "Thank you for the feedback! We will read it carefully."
HAVE_IT = "Thank you! We already have your answer."
NOT_AVAILABLE = "This survey is not available."
INVALID = "This button is no longer valid."
SKIP = MotivationCb(action="k").pack()


def tr(msgid: str, language: str = "en") -> str:
    return I18N.gettext(msgid, locale=language)


async def _rows(session: AsyncSession) -> list[Motivation]:
    query = select(Motivation).order_by(Motivation.client_id)
    return list((await session.scalars(query.execution_options(populate_existing=True))).all())


async def _regular(session: AsyncSession, tg_id: int, now: datetime, **options: Any) -> Client:
    """A member with two purchases long ago (no survey due for them, none in the cooldown):
    their next purchase is their third."""
    client = await make_client(session, tg_id, **options)
    for days in (50, 40):
        await buy(session, client, now - timedelta(days=days))
    return client


async def _sweep(db: Database, settings: Settings, now: datetime) -> Asked:
    return await motivation.ask_due(db, settings, now)


# ------------------------------------------------------------------------------ who, when


async def test_asked_once_after_the_third_purchase(
    db: Database, session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    delay = settings.engagement.survey_delay_min
    client = await make_client(session, 6001)
    await buy(session, client, clock())
    clock.advance(minutes=delay)
    assert await _sweep(db, settings, clock()) == Asked(0, 1)  # the first: an NPS survey
    clock.advance(days=2)
    await buy(session, client, clock())
    clock.advance(minutes=delay)
    assert await _sweep(db, settings, clock()) == Asked(0, 0)  # the second: nothing
    clock.advance(days=2)
    await buy(session, client, clock())
    clock.advance(minutes=delay - 1)
    assert await _sweep(db, settings, clock()) == Asked(0, 0)  # not before the delay
    clock.advance(minutes=1)
    result = await jobs.run_pass("surveys", db, settings, clock())
    assert result.counts == {"enqueued": 1, "motivation": 1}
    assert await _sweep(db, settings, clock()) == Asked(0, 0)  # idempotent
    [row] = await _rows(session)
    assert (row.client_id, row.asked_at, row.answered_at) == (client.id, clock(), None)
    [question] = await deliveries(session, kind="motivation")
    assert question.key == f"motivation:{client.id}" and question.chat_id == 6001
    assert question.marketing is True and question.payload == {}
    # The fourth purchase (and any later one) asks nothing more.
    clock.advance(days=2)
    await buy(session, client, clock())
    clock.advance(minutes=delay)
    assert (await _sweep(db, settings, clock())).motivation == 0
    assert len(await deliveries(session, kind="motivation")) == 1


async def test_a_voided_third_purchase_does_not_count(
    db: Database, session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    client = await _regular(session, 6002, clock())
    await buy(session, client, clock(), voided=True)
    clock.advance(minutes=settings.engagement.survey_delay_min)
    assert (await _sweep(db, settings, clock())).motivation == 0
    await buy(session, client, clock())  # the real third purchase
    clock.advance(minutes=settings.engagement.survey_delay_min)
    assert (await _sweep(db, settings, clock())).motivation == 1


async def test_who_is_not_asked(
    db: Database, session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    start = clock()
    for tg_id, options in (
        (6101, {"opt_out": True}),
        (6102, {"consent": False}),
        (6103, {"reachable": False}),
        (6104, {"erased": True}),
    ):
        await buy(session, await _regular(session, tg_id, start, **options), start)
    # A third purchase that came in with an imported history is not one made in the bot.
    await buy(session, await _regular(session, 6105, start), start, source="import")
    clock.advance(minutes=settings.engagement.survey_delay_min)
    assert await _sweep(db, settings, clock()) == Asked(0, 0)
    assert await _rows(session) == []


async def test_the_question_takes_the_place_of_the_nps_survey(
    db: Database, session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    """The third purchase would have had an NPS survey (the cooldown is over): it gets the
    motivation question instead; the NPS survey comes with a purchase at least a day later."""
    client = await _regular(session, 6201, clock())
    third = await buy(session, client, clock())
    clock.advance(minutes=settings.engagement.survey_delay_min)
    assert await _sweep(db, settings, clock()) == Asked(1, 0)
    assert await session.scalar(select(Survey.id).where(Survey.purchase_id == third.id)) is None
    clock.advance(hours=2)  # a fourth purchase the same day: no NPS survey the same day
    await buy(session, client, clock())
    clock.advance(minutes=settings.engagement.survey_delay_min)
    assert await _sweep(db, settings, clock()) == Asked(0, 0)
    clock.advance(days=1)
    await buy(session, client, clock())
    clock.advance(minutes=settings.engagement.survey_delay_min)
    assert await _sweep(db, settings, clock()) == Asked(0, 1)
    assert [row.kind for row in await deliveries(session)] == ["motivation", "survey"]


async def test_a_survey_in_the_last_day_puts_the_question_off(
    db: Database, session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    """Second and third purchase half an hour apart: the NPS survey about the second one goes
    first; the question waits a day, so the two never arrive together (quiet hours
    included)."""
    delay = settings.engagement.survey_delay_min
    client = await make_client(session, 6301)
    await buy(session, client, clock() - timedelta(days=40))
    second = clock()
    await buy(session, client, second)
    await buy(session, client, second + timedelta(minutes=30))
    clock.set(second + timedelta(minutes=delay))
    assert await _sweep(db, settings, clock()) == Asked(0, 1)
    clock.advance(minutes=30)
    assert await _sweep(db, settings, clock()) == Asked(0, 0)
    clock.set(second + timedelta(minutes=delay, days=1))
    assert await _sweep(db, settings, clock()) == Asked(1, 0)


async def test_two_sweeps_at_once_ask_once(
    db: Database, session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    await buy(session, await _regular(session, 6401, clock()), clock())
    clock.advance(minutes=settings.engagement.survey_delay_min)
    results = await asyncio.gather(*(_sweep(db, settings, clock()) for _ in range(2)))
    assert sorted(r.motivation for r in results) == [0, 1]
    assert sum(r.surveys for r in results) == 0
    assert len(await _rows(session)) == 1
    assert len(await deliveries(session, kind="motivation")) == 1


# ------------------------------------------------------------------------- end to end


@pytest.fixture
async def sender(app: App) -> AsyncIterator[DeliverySender]:
    yield sender_for(app.bot, app.sessionmaker, app.settings, app.clock, limiter=fast_limiter())


async def _ask(
    app: App, sender: DeliverySender, session: AsyncSession, tg_id: int, language: str = "en"
) -> Client:
    """A member's third purchase, the delay, the sweep, the delivery: the question is sent."""
    client = await _regular(session, tg_id, app.clock(), language=language)
    await buy(session, client, app.clock())
    app.clock.advance(minutes=app.settings.engagement.survey_delay_min)
    assert await _sweep(app.db, app.settings, app.clock()) == Asked(1, 0)
    assert (await sender.deliver_due()).sent == 1
    return client


def _thanks_sent(app: App, tg_id: int, text: str) -> int:
    return len([c for c in app.tg.sent(chat_id=tg_id) if text in (c.text or "")])


async def test_a_reason_is_recorded_once(
    app: App, sender: DeliverySender, session: AsyncSession
) -> None:
    user = app.tg.user(6501, language_code="en")
    await _ask(app, sender, session, 6501)
    question = user.last_message()
    assert question.text == QUESTION.format(store="Test Store")
    assert [b["text"] for b in question.buttons] == LABELS
    old_button = question.find_button("The store itself")["callback_data"]
    await user.press(question, "The discount")
    edited = await user.wait_message(THANKS)
    assert edited.message_id == question.message_id and edited.buttons == []
    assert edited.text == f"✅ The discount\n\n{THANKS}"
    [row] = await _rows(session)
    assert (row.reason, row.answered_at, row.comment) == ("discount", app.clock(), None)
    # A second press on an old button: the first answer stands; a short "already" only.
    for _attempt in range(2):
        again = await user.press_data(question.message_id, old_button)
        assert again.params.get("text") == ALREADY
    await app.tg.wait_for_idle()
    assert (await _rows(session))[0].reason == "discount"
    assert _thanks_sent(app, 6501, THANKS) == 1
    assert not [m for m in user.messages() if PROMPT in (m.text or "")]


async def test_something_else_takes_one_text(
    app: App, sender: DeliverySender, session: AsyncSession
) -> None:
    user = app.tg.user(6502, language_code="en")
    await _ask(app, sender, session, 6502)
    question = user.last_message()
    await user.press(question, "Something else")
    prompt = await user.wait_message(PROMPT)
    assert prompt.message_id == question.message_id  # the question turns into the prompt
    assert [b["text"] for b in prompt.buttons] == ["Skip"]
    assert (await _rows(session))[0].reason == "other"
    await user.send("Parking is <easy> & close " + "x" * 1200)
    assert (await user.wait_message(FEEDBACK)).text == FEEDBACK
    await app.tg.wait_for_idle()
    assert user.last_message().text == FEEDBACK
    assert app.tg.messages_in(6502)[0].buttons == []  # Skip went away with the answer
    [row] = await _rows(session)
    assert row.reason == "other" and row.comment is not None
    assert row.comment.startswith("Parking is <easy> & close x")
    assert len(row.comment) == motivation.COMMENT_MAX_CHARS
    # One message only: the next one is not taken as the comment.
    await user.send("and the coffee")
    await app.tg.wait_for_idle()
    assert (await _rows(session))[0].comment == row.comment
    # An old Skip, an old reason button: nothing changes, no second thank-you.
    skip = await user.press_data(prompt.message_id, SKIP)
    assert skip.params.get("text") == HAVE_IT
    again = await user.press_data(prompt.message_id, "why:a:discount")
    assert again.params.get("text") == ALREADY
    await app.tg.wait_for_idle()
    assert (await _rows(session))[0].reason == "other"
    assert _thanks_sent(app, 6502, FEEDBACK) == 1


async def test_something_else_may_skip_the_text(
    app: App, sender: DeliverySender, session: AsyncSession
) -> None:
    user = app.tg.user(6503, language_code="en")
    await _ask(app, sender, session, 6503)
    await user.press(user.last_message(), "Something else")
    prompt = await user.wait_message(PROMPT)
    await user.send_sticker()
    assert "as text" in (await user.wait_message()).text
    await user.press(prompt, "Skip")
    assert (await user.wait_message(THANKS)).text == f"✅ Something else\n\n{THANKS}"
    [row] = await _rows(session)
    assert (row.reason, row.comment) == ("other", None)
    await user.send("hello")  # no longer waiting for a comment
    await app.tg.wait_for_idle()
    assert (await _rows(session))[0].comment is None


async def test_forged_presses_are_refused(
    app: App, sender: DeliverySender, session: AsyncSession
) -> None:
    await _ask(app, sender, session, 6504)
    asked = app.tg.user(6504, language_code="en")
    # A member who was never asked, and a stranger: the same button changes nothing.
    await make_client(session, 6505)
    for tg_id in (6505, 6506):
        other = app.tg.user(tg_id, language_code="en")
        for data in ("why:a:discount", "why:a:other", SKIP):
            answer = await other.press_data(1, data)
            assert answer.params.get("text") == NOT_AVAILABLE, (tg_id, data)
    # Malformed data is refused before any query.
    for data in ("why:a:bogus", "why:x:discount", "why:a", "why:a:store:1", "why:" + "9" * 40):
        answer = await asked.press_data(1, data)
        assert answer.params.get("text") == INVALID, data
    # The member's own button pressed in a group: nothing changes there either.
    group = app.tg.group(-1006504)
    await group.press_data(asked, 1, "why:a:discount")
    await app.tg.wait_for_idle()
    [row] = await _rows(session)
    assert row.answered_at is None and row.reason is None
    assert app.tg.messages_in(-1006504) == []


async def test_opting_out_cancels_a_queued_question(
    app: App, sender: DeliverySender, session: AsyncSession
) -> None:
    client = await _regular(session, 6601, app.clock())
    await buy(session, client, app.clock())
    app.clock.advance(minutes=app.settings.engagement.survey_delay_min)
    assert (await _sweep(app.db, app.settings, app.clock())).motivation == 1
    assert await privacy.set_marketing(app.db, 6601, False, app.clock()) is False
    assert (await sender.deliver_due()).sent == 0
    [row] = await deliveries(session, kind="motivation")
    assert row.status == DeliveryStatus.SKIPPED and row.last_error == "opted out"
    assert app.tg.messages_in(6601) == []


async def test_quiet_hours_hold_the_question_until_the_morning(
    tg: FakeTelegram,
    db_url: str,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    evening = datetime(2026, 11, 16, 20, 0, tzinfo=UTC)  # 23:00 in the store (Europe/Moscow)
    clock = FrozenClock(evening - timedelta(hours=2))
    settings = make_settings(db_url, quiet_hours="21-09")
    async with running_app(tg, settings, sessionmaker, clock, delivery_worker=False) as app:
        sender = sender_for(app.bot, app.sessionmaker, app.settings, clock, limiter=fast_limiter())
        await buy(session, await _regular(session, 6602, clock()), clock())
        clock.set(evening)
        assert (await _sweep(app.db, app.settings, clock())).motivation == 1
        stats = await sender.deliver_due()
        assert stats.sent == 0 and stats.quiet_deferred == 1
        clock.set(datetime(2026, 11, 17, 6, 0, tzinfo=UTC))  # 09:00 in the store
        assert (await sender.deliver_due()).sent == 1
        assert app.tg.user(6602).last_message().text == QUESTION.format(store="Test Store")


@pytest.mark.parametrize(("language", "telegram"), [("ru", "en"), ("en", "et"), ("et", "ru")])
async def test_the_question_speaks_the_members_language(
    app: App, sender: DeliverySender, session: AsyncSession, language: str, telegram: str
) -> None:
    """The member's stored language, not their Telegram app's: the question from the outbox
    and the answer's thank-you both come from that language's catalog."""
    user = app.tg.user(6700, language_code=telegram)
    await _ask(app, sender, session, 6700, language=language)
    question = user.last_message()
    assert question.text == tr(QUESTION, language).format(store="Test Store")
    labels = [tr(label, language) for label in LABELS]
    assert [b["text"] for b in question.buttons] == labels
    await user.press(question, labels[2])
    thanks = tr(THANKS, language)
    assert thanks != tr(THANKS, telegram)  # translated: the language is told apart
    assert (await user.wait_message(thanks)).text == f"✅ {labels[2]}\n\n{thanks}"
    assert (await _rows(session))[0].reason == "convenience"


# ------------------------------------------------------------------------------- erasure


SECRET_WHY = "Mirjam bakes the cardamom buns herself"


async def _seed_with_answer(app: App) -> int:
    """The privacy tests' member, who answered "something else" with a text."""
    client_id = await seed_member(app.sessionmaker)
    async with app.sessionmaker() as session:
        session.add(
            Motivation(
                client_id=client_id,
                asked_at=PAST,
                answered_at=PAST,
                reason="other",
                comment=SECRET_WHY,
            )
        )
        await session.commit()
    return client_id


async def test_erasure_deletes_the_answer(app: App, session: AsyncSession) -> None:
    await _seed_with_answer(app)
    user = app.tg.user(TG_ID, language_code="en")
    await user.send("/deletemydata")
    await user.press(await user.wait_message("Erase all your data?"), "🗑")
    await user.wait_message("Your data was erased")
    assert await _rows(session) == []
    assert await motivation.ask_due(app.db, app.settings, app.clock()) == Asked(0, 0)


async def test_retention_deletes_the_answer(app: App, session: AsyncSession) -> None:
    await _seed_with_answer(app)
    assert await privacy.anonymise_inactive(app.db, PAST + timedelta(days=800), 12) == 1
    assert await _rows(session) == []


def _bytes(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


@pytest.mark.skipif(on_postgres(), reason="bytes in SQLite's own file and log")
async def test_erasure_leaves_no_byte_of_the_answer(
    app: App, engine: AsyncEngine, db_path: Path, tmp_path: Path
) -> None:
    await _seed_with_answer(app)
    await app.db.write(scrub_wal)  # in the database file itself, as in a real store's
    secret = SECRET_WHY.encode()
    assert secret in _bytes(db_path)
    user = app.tg.user(TG_ID, language_code="en")
    await user.send("/deletemydata")
    await user.press(await user.wait_message("Erase all your data?"), "🗑")
    await user.wait_message("Your data was erased")
    wal = db_path.with_name(db_path.name + "-wal")
    for file in (db_path, wal):
        assert secret not in _bytes(file), file.name
    copy = backup.backup_database(db_path, tmp_path / "backups", keep=3, now=app.clock())
    assert secret not in _bytes(copy)


# -------------------------------------------------------------------------------- digest


async def _answer(
    session: AsyncSession, tg_id: int, reason: str | None, at: datetime | None, text: str = ""
) -> None:
    client = await make_client(session, tg_id)
    session.add(
        Motivation(
            client_id=client.id,
            asked_at=(at or datetime(2026, 11, 1, tzinfo=UTC)) - timedelta(hours=1),
            answered_at=at,
            reason=reason,
            comment=text or None,
        )
    )
    await session.commit()


async def test_the_digest_lines(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    now = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)  # Monday: the week is 9–15 Nov, store time
    start = datetime(2026, 11, 8, 21, 0, tzinfo=UTC)  # 9 Nov 00:00 in Moscow
    end = datetime(2026, 11, 15, 21, 0, tzinfo=UTC)  # 16 Nov 00:00 in Moscow
    reports = report_service(engine, settings)
    with I18N.context(), I18N.use_locale("en"):
        assert await motivation_lines(reports, now) == []  # nothing before the first answer
    week = [
        ("discount", start),  # the week's first moment counts
        ("discount", start + timedelta(days=2)),
        ("store", start + timedelta(days=3)),
        ("other", start + timedelta(days=1), "A comment old enough to be left out"),
        ("other", start + timedelta(days=4), "Parking is <easy> & close"),
        ("other", end - timedelta(seconds=1), "My mum " + "shops here " * 20),
    ]
    before = [
        ("discount", start - timedelta(days=3)),
        ("convenience", start - timedelta(seconds=1)),
        ("other", start - timedelta(days=1), "Last week's comment"),
    ]
    after = [("convenience", end), ("other", end + timedelta(hours=1), "Next week's")]
    for n, (reason, at, *text) in enumerate(week + before + after):
        await _answer(session, 6800 + n, reason, at, *text)
    await _answer(session, 6899, None, None)  # asked, not answered
    with I18N.context(), I18N.use_locale("en"):
        lines = await motivation_lines(reports, now)
    assert lines == [
        "",
        "<b>Why members take part</b> (this week · in total)",
        "• The discount: 2 (33 %) · 3 (33 %)",
        "• The store itself: 1 (17 %) · 1 (11 %)",
        "• Convenience: 0 (0 %) · 1 (11 %)",
        "• Something else: 3 (50 %) · 4 (44 %)",
        "   «My mum shops here shops here shops here shops here shops here shops here shops…»",
        "   «Parking is &lt;easy&gt; &amp; close»",
    ]
    # Within the room the caption has left: the oldest comment goes first, then the block.
    full = len("\n".join(lines).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    full -= len("<b></b>") - 1  # the heading's tags are not shown; the joining line break is
    with I18N.context(), I18N.use_locale("en"):
        assert await motivation_lines(reports, now, room=full) == lines
        assert await motivation_lines(reports, now, room=full - 1) == lines[:-1]
        assert await motivation_lines(reports, now, room=120) == []
    figures = await reports.db.report(
        motivation.figures, settings, date(2026, 11, 9), date(2026, 11, 15), 5
    )
    assert (figures.week_answers, figures.total_answers) == (6, 9)
    assert [text[:8] for text in figures.comments] == ["My mum s", "Parking ", "A commen"]
    # In the digest's caption, the reasons come whole (one item of its sections) when they fit.
    with I18N.context(), I18N.use_locale("en"):
        text, _chart = await digest_message(reports, now)
    assert "<b>Why members take part</b> (this week · in total)" in text
    assert "\n".join(lines[2:6]) in text
