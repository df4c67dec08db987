"""NPS surveys: timing, cooldown, who is asked, one answer, expiry, detractor alerts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.demo.emulator import FakeTelegram
from config import Settings
from db.database import Database
from db.models import Survey
from services import surveys
from services.delivery import DeliverySender
from services.surveys import AnswerStatus
from tests.conftest import OWNER_ID, App, FrozenClock
from tests.engagement_helpers import (
    bot_for,
    buy,
    deliveries,
    fast_limiter,
    make_client,
    sender_for,
)

# These tests run delivery passes by hand: no background worker racing for the rows.
pytestmark = pytest.mark.manual_delivery


async def _surveys(session: AsyncSession) -> list[Survey]:
    query = select(Survey).order_by(Survey.id).execution_options(populate_existing=True)
    return list((await session.scalars(query)).all())


async def test_survey_is_due_delay_minutes_after_the_purchase(
    db: Database, session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    client = await make_client(session, 5001)
    purchase = await buy(session, client, clock())
    clock.advance(minutes=settings.engagement.survey_delay_min - 1)
    assert await surveys.sweep(db, settings, clock()) == 0
    clock.advance(minutes=1)
    assert await surveys.sweep(db, settings, clock()) == 1
    assert await surveys.sweep(db, settings, clock()) == 0  # idempotent
    [row] = await deliveries(session)
    assert row.key == f"survey:{purchase.id}" and row.kind == "survey" and row.chat_id == 5001
    # Turning offers and surveys off cancels it even while it waits (quiet hours).
    assert row.marketing is True


async def test_one_survey_per_cooldown(
    db: Database, session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    client = await make_client(session, 5002)
    await buy(session, client, clock())
    clock.advance(hours=3)
    assert await surveys.sweep(db, settings, clock()) == 1
    clock.advance(days=10)
    await buy(session, client, clock())
    clock.advance(hours=3)
    assert await surveys.sweep(db, settings, clock()) == 0  # within 30 days
    clock.advance(days=settings.engagement.survey_cooldown_days)
    await buy(session, client, clock())
    clock.advance(hours=3)
    assert await surveys.sweep(db, settings, clock()) == 1


async def test_who_is_not_asked(
    db: Database, session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    start = clock()
    await buy(session, await make_client(session, 5101), start, source="import")
    await buy(session, await make_client(session, 5102), start, voided=True)
    await buy(session, await make_client(session, 5103, consent=False), start)
    await buy(session, await make_client(session, 5104, reachable=False), start)
    await buy(session, await make_client(session, 5105, opt_out=True), start)
    await buy(session, await make_client(session, 5106, erased=True), start)
    # Two purchases of the same client in the window: one survey.
    twice = await make_client(session, 5107)
    await buy(session, twice, start)
    await buy(session, twice, start + timedelta(minutes=5))
    clock.advance(hours=3)
    assert await surveys.sweep(db, settings, clock()) == 1
    [row] = await deliveries(session)
    assert row.chat_id == 5107
    # A purchase from days ago (the bot was down) is not asked about any more.
    old = await make_client(session, 5108)
    await buy(session, old, clock() - timedelta(days=3))
    assert await surveys.sweep(db, settings, clock()) == 0


# ------------------------------------------------------------------------- end to end


@pytest.fixture
async def sender(app: App) -> AsyncIterator[DeliverySender]:
    yield sender_for(app.bot, app.sessionmaker, app.settings, app.clock, limiter=fast_limiter())


async def _send_survey(app: App, sender: DeliverySender, session: AsyncSession, tg_id: int) -> None:
    client = await make_client(session, tg_id)
    await buy(session, client, app.clock())
    app.clock.advance(minutes=app.settings.engagement.survey_delay_min)
    assert await surveys.sweep(app.db, app.settings, app.clock()) == 1
    assert (await sender.deliver_due()).sent == 1


async def test_promoter_answers_once(
    app: App, sender: DeliverySender, session: AsyncSession
) -> None:
    user = app.tg.user(5201, language_code="en")
    await _send_survey(app, sender, session, 5201)
    question = user.last_message()
    assert "recommend" in (question.text or "")
    assert [b["text"] for b in question.buttons] == [str(n) for n in range(11)]
    await user.press(question, "9")
    assert "Your rating: 9 of 10" in (await user.wait_message()).text
    second = await user.press_data(question.message_id, question.buttons[3]["callback_data"])
    assert "already answered" in second.params.get("text", "")
    [survey] = await _surveys(session)
    assert survey.score == 9 and survey.comment is None
    assert survey.sent_at is not None
    # No comment prompt for a promoter, no alert for the owner.
    assert not [m for m in user.messages() if "better" in (m.text or "")]
    assert await deliveries(session, kind="detractor_alert") == []


async def test_detractor_comment_reaches_the_owner(
    app: App, sender: DeliverySender, session: AsyncSession
) -> None:
    user = app.tg.user(5202, "Bob", language_code="en")
    owner = app.tg.user(OWNER_ID, language_code="en")
    await _send_survey(app, sender, session, 5202)
    await user.press(user.last_message(), "3")
    prompt = await user.wait_message("better")
    assert prompt.buttons[0]["text"] == "Skip"
    await user.send("Queue was <long> & slow")
    assert "Thank you for the feedback" in (await user.wait_message()).text
    assert (await sender.deliver_due()).sent == 1
    alert = owner.last_message()
    assert "3 из 10" in (alert.text or "")  # owners without a client row read the default (ru)
    assert "Queue was <long> & slow" in (alert.text or "")
    assert "tg://user?id=5202" in (alert.html or "")
    [survey] = await _surveys(session)
    assert survey.score == 3 and survey.comment == "Queue was <long> & slow"


async def test_detractor_alert_goes_out_after_the_grace_without_a_comment(
    app: App, sender: DeliverySender, session: AsyncSession
) -> None:
    user = app.tg.user(5203, language_code="en")
    await _send_survey(app, sender, session, 5203)
    await user.press(user.last_message(), "0")
    await user.wait_message("better")
    assert (await sender.deliver_due()).sent == 0  # waiting for a comment
    app.clock.advance(seconds=surveys.DETRACTOR_COMMENT_GRACE.total_seconds())
    assert (await sender.deliver_due()).sent == 1
    assert "без комментария" in (app.tg.user(OWNER_ID).last_message().text or "")


async def test_passive_may_skip_the_comment(
    app: App, sender: DeliverySender, session: AsyncSession
) -> None:
    user = app.tg.user(5204, language_code="en")
    await _send_survey(app, sender, session, 5204)
    await user.press(user.last_message(), "8")
    prompt = await user.wait_message("better")
    await user.press(prompt, "Skip")
    assert "Thank you for your answer" in (await user.wait_message()).text
    assert await deliveries(session, kind="detractor_alert") == []


async def test_an_old_survey_takes_no_answer(
    app: App, sender: DeliverySender, session: AsyncSession
) -> None:
    user = app.tg.user(5205, language_code="en")
    await _send_survey(app, sender, session, 5205)
    app.clock.advance(days=app.settings.engagement.survey_answer_days, seconds=1)
    answer = await user.press(user.last_message(), "10")
    assert "closed" in answer.params.get("text", "")
    [survey] = await _surveys(session)
    assert survey.score is None


async def test_a_forged_survey_button_changes_nothing(
    app: App, sender: DeliverySender, session: AsyncSession
) -> None:
    await _send_survey(app, sender, session, 5206)
    other = app.tg.user(5207, language_code="en")
    [survey] = await _surveys(session)
    answer = await other.press_data(1, f"nps:s:{survey.id}:2")
    assert "not available" in answer.params.get("text", "")
    assert (await _surveys(session))[0].score is None


async def test_absurd_survey_button_data_is_refused_without_an_error(
    app: App, sender: DeliverySender, session: AsyncSession
) -> None:
    await _send_survey(app, sender, session, 5208)
    user = app.tg.user(5208, language_code="en")
    for data in ("nps:s:" + "9" * 40 + ":5", "nps:s:-1:5", "nps:s:1:11", "nps:k:" + "9" * 30):
        answer = await user.press_data(1, data)
        assert answer.params.get("text") == "This button is no longer valid.", data
    assert (await _surveys(session))[0].score is None


async def test_an_answered_survey_is_not_sent_late(
    db: Database,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    """The renderer drops a survey whose answer window closed while it waited (quiet hours)."""
    client = await make_client(session, 5301)
    await buy(session, client, clock())
    clock.advance(hours=3)
    await surveys.sweep(db, settings, clock())
    clock.advance(days=settings.engagement.survey_answer_days + 1)
    sender = sender_for(None, sessionmaker, settings, clock, limiter=fast_limiter())  # type: ignore[arg-type]
    assert (await sender.deliver_due()).skipped == 1


async def test_the_survey_speaks_the_clients_language(
    db: Database,
    tg: FakeTelegram,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    for tg_id, language in ((5401, "ru"), (5402, "et")):
        await buy(session, await make_client(session, tg_id, language=language), clock())
    clock.advance(hours=3)
    assert await surveys.sweep(db, settings, clock()) == 2
    bot = bot_for(tg, settings)
    try:
        sender = sender_for(bot, sessionmaker, settings, clock, limiter=fast_limiter())
        assert (await sender.deliver_due()).sent == 2
    finally:
        await bot.session.close()
    assert "Насколько вероятно" in (tg.user(5401).last_message().text or "")
    assert "Kui tõenäoliselt" in (tg.user(5402).last_message().text or "")


# ------------------------------------------------------------- concurrent transactions
# `asyncio.gather` of units: on PostgreSQL they run at once on two connections.


async def test_two_sweeps_at_once_ask_once(
    db: Database, session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    client = await make_client(session, 5501)
    purchase = await buy(session, client, clock())
    clock.advance(hours=3)
    counts = await asyncio.gather(*(surveys.sweep(db, settings, clock()) for _ in range(2)))
    assert sorted(counts) == [0, 1]
    assert [s.purchase_id for s in await _surveys(session)] == [purchase.id]
    assert [row.key for row in await deliveries(session)] == [f"survey:{purchase.id}"]


async def test_two_presses_at_once_record_one_score_and_one_alert(
    db: Database, session: AsyncSession, settings: Settings, clock: FrozenClock
) -> None:
    await buy(session, await make_client(session, 5502), clock())
    clock.advance(hours=3)
    assert await surveys.sweep(db, settings, clock()) == 1
    [survey] = await _surveys(session)
    answers = await asyncio.gather(
        *(
            surveys.answer(db, settings, survey_id=survey.id, tg_id=5502, score=score, now=clock())
            for score in (2, 3)
        )
    )
    assert sorted(a.status for a in answers) == [AnswerStatus.ALREADY, AnswerStatus.RECORDED]
    recorded = next(a for a in answers if a.status is AnswerStatus.RECORDED)
    assert {a.score for a in answers} == {recorded.score}  # the refused press sees it
    assert len(await deliveries(session, kind="detractor_alert")) == 1
