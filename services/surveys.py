"""NPS surveys: scheduled after a purchase, answered once, detractors reported to the owners.

Who is asked (the `sweep`): purchases made in the bot (`source = bot`, not voided) at least
`SURVEY_DELAY_MIN` ago (and at most a day more: after a long downtime we do not ask about a
purchase from last week), whose card is bound to a client who consented, is reachable, is not
erased, has not opted out of marketing and had no survey in `SURVEY_COOLDOWN_DAYS`.

Opt-out: a survey is not marketing, but it is an unsolicited message; a client who pressed
"no more offers" asked us to write less, so they get no surveys either.

A detractor (0–6) alert goes to every owner. It waits `DETRACTOR_COMMENT_GRACE` for the client's
comment; the comment (or the skip button) releases it at once, and it is rendered with whatever
comment the survey holds by then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from db.models import Card, Client, Delivery, DeliveryStatus, Purchase, PurchaseSource, Survey
from services import delivery
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


async def sweep(session: AsyncSession, settings: Settings, now: datetime) -> int:
    """Create the surveys that are due; returns how many were enqueued. Commits."""
    latest = now - timedelta(minutes=settings.engagement.survey_delay_min)
    cooldown_from = now - timedelta(days=settings.engagement.survey_cooldown_days)
    recent_survey = exists().where(Survey.client_id == Client.id, Survey.created_at > cooldown_from)
    rows = (
        await session.execute(
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
                ~exists().where(Survey.purchase_id == Purchase.id),
            )
            .order_by(Purchase.created_at.desc())
        )
    ).all()
    created = 0
    seen: set[int] = set()
    for purchase_id, client_id, tg_id in rows:
        if client_id in seen:  # one survey per client: about the latest purchase
            continue
        seen.add(client_id)
        survey = Survey(client_id=client_id, purchase_id=purchase_id, created_at=now)
        session.add(survey)
        await session.flush()
        await delivery.enqueue(
            session,
            key=f"survey:{purchase_id}",
            kind=SURVEY_KIND,
            chat_id=tg_id,
            client_id=client_id,
            payload={"survey_id": survey.id},
            due_at=now,
        )
        created += 1
    await session.commit()
    return created


async def _own_survey(session: AsyncSession, survey_id: int, tg_id: int) -> Survey:
    survey = await session.scalar(
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
    session: AsyncSession,
    settings: Settings,
    *,
    survey_id: int,
    tg_id: int,
    score: int,
    now: datetime,
) -> Answer:
    """Record the score once (a conditional update). Commits."""
    if not 0 <= score <= 10:
        raise SurveyNotFound(survey_id)
    survey = await _own_survey(session, survey_id, tg_id)
    result = await session.execute(
        update(Survey)
        .where(
            Survey.id == survey.id,
            Survey.score.is_(None),
            func.coalesce(Survey.sent_at, Survey.created_at) >= _open_since(settings, now),
        )
        .values(score=score, answered_at=now)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        await session.rollback()
        await session.refresh(survey)
        status = AnswerStatus.ALREADY if survey.score is not None else AnswerStatus.EXPIRED
        return Answer(status, survey.id, survey.score)
    if score <= DETRACTOR_MAX:
        for owner_id in settings.telegram.owner_ids:
            await delivery.enqueue(
                session,
                key=f"detractor:{survey.id}:{owner_id}",
                kind=DETRACTOR_KIND,
                chat_id=owner_id,
                payload={"survey_id": survey.id},
                due_at=now + DETRACTOR_COMMENT_GRACE,
            )
    await session.commit()
    return Answer(AnswerStatus.RECORDED, survey.id, score, ask_comment=score <= COMMENT_ASKED_MAX)


async def comment(
    session: AsyncSession,
    settings: Settings,
    *,
    survey_id: int,
    tg_id: int,
    text: str | None,
    now: datetime,
) -> bool:
    """Store the "what could we do better" text (None = skipped) and release the owners'
    alert. False when the survey takes no comment (already given, or not asked). Commits."""
    survey = await _own_survey(session, survey_id, tg_id)
    stored = True
    if text is not None:
        result = await session.execute(
            update(Survey)
            .where(
                Survey.id == survey.id,
                Survey.comment.is_(None),
                Survey.score.is_not(None),
                Survey.score <= COMMENT_ASKED_MAX,
            )
            .values(comment=text.strip()[:COMMENT_MAX_CHARS], comment_at=now)
        )
        stored = bool(result.rowcount)  # type: ignore[attr-defined]
    await session.execute(
        update(Delivery)
        .where(
            Delivery.key.like(f"detractor:{survey.id}:%"),
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.attempts == 0,
        )
        .values(due_at=now, next_attempt_at=None)
    )
    await session.commit()
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
    """A unit of work (`db.read(surveys.view, settings, survey_id, now)`)."""
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
