"""NPS surveys: scheduled after a purchase, answered once, detractors reported to the owners.

Who is asked (the `sweep`): purchases made in the bot (`source = bot`, not voided) at least
`SURVEY_DELAY_MIN` ago (and at most a day more: after a long downtime we do not ask about a
purchase from last week), whose card is bound to a client who consented, is reachable, is not
erased, has not opted out of marketing and had no survey in `SURVEY_COOLDOWN_DAYS` — and was
not asked why they take part in the last day (`services.motivation`: the `surveys` job asks
that first, in the same unit of work, and it takes the place of this survey).

Opt-out: a survey is not an offer, but it is an unsolicited message; a client who pressed
"no more offers" asked us to write less, so they get no surveys either — and a survey is queued
as a marketing message, so pressing it also cancels one still waiting (quiet hours).

A detractor (0–6) alert goes to every owner. It waits `DETRACTOR_COMMENT_GRACE` for the client's
comment; the comment (or the skip button) releases it at once, and it is rendered with whatever
comment the survey holds by then.

Every public coroutine takes the `Database` and runs one unit of work; `view` is a unit itself
(the delivery renderers read with it). Concurrency: a score and a comment are each recorded by
one conditional `UPDATE` (two presses at once: exactly one is recorded, one owner alert), and a
survey is created with `INSERT … ON CONFLICT DO NOTHING` on its purchase, so two sweeps at once
(two workers) create and queue each survey once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from db.database import Database
from db.models import (
    Card,
    Client,
    Delivery,
    DeliveryStatus,
    Motivation,
    Purchase,
    PurchaseSource,
    Survey,
)
from db.sql import insert_ignoring
from services.delivery import OutboxMessage, queue_messages
from services.errors import DomainError

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings

SURVEY_KIND = "survey"
DETRACTOR_KIND = "detractor_alert"
LOOKBACK = timedelta(days=1)
DETRACTOR_COMMENT_GRACE = timedelta(minutes=5)
COMMENT_MAX_CHARS = 1000
DETRACTOR_MAX = 6
COMMENT_ASKED_MAX = 8


class SurveyNotFound(DomainError):
    """No such survey for this user (a forged or foreign button)."""

    def __init__(self, survey_id: int) -> None:
        super().__init__(f"survey {survey_id} not found")
        self.survey_id = survey_id


class AnswerStatus(StrEnum):
    RECORDED = "recorded"
    ALREADY = "already"  # a second press: the first answer stands
    EXPIRED = "expired"


@dataclass(frozen=True)
class Answer:
    status: AnswerStatus
    survey_id: int
    score: int | None  # the score that stands
    ask_comment: bool = False


async def sweep(db: Database, settings: Settings, now: datetime) -> int:
    """Create the surveys that are due; returns how many were enqueued. (The `surveys` job
    runs `services.motivation.ask_due`, which asks the motivation question first.)"""
    return await db.write(_sweep, settings, now)


def _sweep(session: Session, settings: Settings, now: datetime) -> int:
    created = queue_due(session, settings, now)
    session.commit()
    return created


def queue_due(session: Session, settings: Settings, now: datetime) -> int:
    """Create and queue the surveys that are due inside the caller's unit of work (the caller
    commits); returns how many were queued."""
    latest = now - timedelta(minutes=settings.engagement.survey_delay_min)
    cooldown_from = now - timedelta(days=settings.engagement.survey_cooldown_days)
    recent_survey = exists().where(Survey.client_id == Client.id, Survey.created_at > cooldown_from)
    # One question at a time: not within a day of the motivation question (services.motivation).
    asked_why = exists().where(
        Motivation.client_id == Client.id, Motivation.asked_at > now - LOOKBACK
    )
    rows = session.execute(
        select(Purchase.id, Client.id, Client.tg_id)
        .join(Card, Card.id == Purchase.card_id)
        .join(Client, Client.id == Card.client_id)
        .where(
            Purchase.source == PurchaseSource.BOT,
            Purchase.voided_at.is_(None),
            Purchase.created_at <= latest,
            Purchase.created_at > latest - LOOKBACK,
            Client.tg_id.is_not(None),
            Client.erased_at.is_(None),
            Client.consent_at.is_not(None),
            Client.reachable.is_(True),
            Client.marketing_opt_out.is_(False),
            ~recent_survey,
            ~asked_why,
            ~exists().where(Survey.purchase_id == Purchase.id),
        )
        .order_by(Purchase.created_at.desc())
    ).all()
    create = insert_ignoring(
        Survey.__table__, "purchase_id", dialect=session.get_bind().dialect.name
    ).returning(Survey.__table__.c.id)
    created = 0
    seen: set[int] = set()
    for purchase_id, client_id, tg_id in rows:
        if client_id in seen:  # one survey per client: about the latest purchase
            continue
        seen.add(client_id)
        survey_id = session.scalar(
            create.values(client_id=client_id, purchase_id=purchase_id, created_at=now)
        )
        if survey_id is None:  # another sweep created it just now
            continue
        message = OutboxMessage(
            key=f"survey:{purchase_id}",
            kind=SURVEY_KIND,
            chat_id=tg_id,
            client_id=client_id,
            payload={"survey_id": survey_id},
            marketing=True,  # turning offers and surveys off cancels it, queued or not
        )
        created += sum(queue_messages(session, [message], now))
    return created


def _own_survey(session: Session, survey_id: int, tg_id: int) -> Survey:
    survey = session.scalar(
        select(Survey)
        .join(Client, Client.id == Survey.client_id)
        .where(Survey.id == survey_id, Client.tg_id == tg_id)
    )
    if survey is None:
        raise SurveyNotFound(survey_id)
    return survey


def _open_since(settings: Settings, now: datetime) -> datetime:
    return now - timedelta(days=settings.engagement.survey_answer_days)


async def answer(
    db: Database,
    settings: Settings,
    *,
    survey_id: int,
    tg_id: int,
    score: int,
    now: datetime,
) -> Answer:
    """Record the score once (a conditional update)."""
    if not 0 <= score <= 10:
        raise SurveyNotFound(survey_id)
    return await db.write(_answer, settings, survey_id, tg_id, score, now)


def _answer(
    session: Session, settings: Settings, survey_id: int, tg_id: int, score: int, now: datetime
) -> Answer:
    survey = _own_survey(session, survey_id, tg_id)
    result = session.execute(
        update(Survey)
        .where(
            Survey.id == survey.id,
            Survey.score.is_(None),
            func.coalesce(Survey.sent_at, Survey.created_at) >= _open_since(settings, now),
        )
        .values(score=score, answered_at=now)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        session.rollback()
        standing = session.scalar(select(Survey.score).where(Survey.id == survey.id))
        status = AnswerStatus.ALREADY if standing is not None else AnswerStatus.EXPIRED
        return Answer(status, survey.id, standing)
    if score <= DETRACTOR_MAX:
        alerts = [
            OutboxMessage(
                key=f"detractor:{survey.id}:{owner_id}",
                kind=DETRACTOR_KIND,
                chat_id=owner_id,
                payload={"survey_id": survey.id},
            )
            for owner_id in settings.telegram.owner_ids
        ]
        queue_messages(session, alerts, now + DETRACTOR_COMMENT_GRACE)
    session.commit()
    return Answer(AnswerStatus.RECORDED, survey.id, score, ask_comment=score <= COMMENT_ASKED_MAX)


async def comment(
    db: Database,
    settings: Settings,
    *,
    survey_id: int,
    tg_id: int,
    text: str | None,
    now: datetime,
) -> bool:
    """Store the "what could we do better" text (None = skipped) and release the owners'
    alert. False when the survey takes no comment (already given, or not asked)."""
    return await db.write(_comment, survey_id, tg_id, text, now)


def _comment(session: Session, survey_id: int, tg_id: int, text: str | None, now: datetime) -> bool:
    survey = _own_survey(session, survey_id, tg_id)
    stored = True
    if text is not None:
        result = session.execute(
            update(Survey)
            .where(
                Survey.id == survey.id,
                Survey.comment.is_(None),
                Survey.score.is_not(None),
                Survey.score <= COMMENT_ASKED_MAX,
            )
            .values(comment=text.strip()[:COMMENT_MAX_CHARS], comment_at=now)
            .execution_options(synchronize_session=False)
        )
        stored = bool(result.rowcount)  # type: ignore[attr-defined]
    session.execute(
        update(Delivery)
        .where(
            Delivery.key.like(f"detractor:{survey.id}:%"),
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.attempts == 0,
        )
        .values(due_at=now, next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return stored


@dataclass(frozen=True)
class SurveyView:
    """What the renderers need: the survey and who answered it."""

    id: int
    score: int | None
    comment: str | None
    open: bool
    client_tg_id: int | None
    client_name: str


def view(session: Session, settings: Settings, survey_id: int, now: datetime) -> SurveyView | None:
    """A unit that reads one survey (`await db.read(surveys.view, settings, id, now)`)."""
    row = session.execute(
        select(Survey, Client)
        .join(Client, Client.id == Survey.client_id)
        .where(Survey.id == survey_id)
    ).first()
    if row is None:
        return None
    survey, client = row
    name = " ".join(part for part in (client.first_name, client.last_name) if part)
    opened = survey.sent_at or survey.created_at
    return SurveyView(
        id=survey.id,
        score=survey.score,
        comment=survey.comment,
        open=survey.score is None and opened >= _open_since(settings, now),
        client_tg_id=client.tg_id,
        client_name=name or (f"@{client.username}" if client.username else ""),
    )
