"""Why members take part: one question, once per member ever, after their third purchase.

Who is asked: a member (consented, reachable, not erased, offers and surveys not turned off)
with a purchase made in the bot (`source = bot`, not voided) `SURVEY_DELAY_MIN` ago (and at
most a day more, as the NPS survey) that was at least their third non-voided purchase (all
their cards, imported history included), who has no `motivations` row yet. So a voided third
purchase does not count, and a member who could not be asked after their third purchase
(offers off then, the bot down for over a day) is asked after a later one; members who already
had three purchases when this arrived are asked after their next one.

One question at a time: the `surveys` job runs this sweep first and the NPS sweep after it, in
one unit of work (`ask_due`). A member asked why they take part gets no NPS survey for that
purchase (`services.surveys` leaves out members asked in the last day), and a member who got
an NPS survey in the last day is not asked why until the day has passed. So the two never go
out in one delivery window (a night of quiet hours is shorter than a day).

The question goes through the outbox as facts (its kind and the client), rendered when sent in
the member's language (`handlers/outbox.py`). It is a marketing row, as a member who turned
offers and surveys off asked us to write less: skipped when sent to someone who opted out
meanwhile, and cancelled by the opt-out itself (`services.privacy.set_marketing`).

Answers: a reason is recorded once by one conditional `UPDATE` (a second press, or an old
button, changes nothing); "something else" then takes one free-text comment, capped like the
NPS comment. Only the member the question was put to can answer it: the button carries no id,
the pressing user's own row is looked up.

`figures` is the digest's unit: answers of a week and of all time by reason, and the week's
latest "something else" comments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import case, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from db.database import Database
from db.models import Card, Client, Motivation, Purchase, PurchaseSource, Survey
from db.sql import insert_ignoring
from services import surveys
from services.delivery import OutboxMessage, queue_messages
from services.errors import DomainError
from services.surveys import AnswerStatus  # the one meaning of a recorded or repeated answer

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings

MOTIVATION_KIND = "motivation"
ASK_AT_PURCHASE = 3  # asked after the member's third non-voided purchase
COMMENT_MAX_CHARS = surveys.COMMENT_MAX_CHARS
# Neither question within a day of the other (the NPS sweep checks the same span).
QUESTION_GAP = surveys.LOOKBACK


class Reason(StrEnum):
    DISCOUNT = "discount"
    STORE = "store"
    CONVENIENCE = "convenience"
    OTHER = "other"


class MotivationNotAsked(DomainError):
    """The pressing user was never asked (a forged or foreign button)."""

    def __init__(self, tg_id: int) -> None:
        super().__init__(f"no motivation question for user {tg_id}")
        self.tg_id = tg_id


@dataclass(frozen=True)
class Answer:
    status: AnswerStatus
    reason: Reason | None  # the reason that stands

    @property
    def ask_comment(self) -> bool:
        """Whether to ask for the free text now ("something else", just recorded)."""
        return self.status is AnswerStatus.RECORDED and self.reason is Reason.OTHER


@dataclass(frozen=True)
class Asked:
    """What the `surveys` job's pass queued."""

    motivation: int
    surveys: int

    @property
    def total(self) -> int:
        return self.motivation + self.surveys


# ---------------------------------------------------------------------------------- sweep


async def ask_due(db: Database, settings: Settings, now: datetime) -> Asked:
    """The `surveys` job's pass: the motivation questions that are due, then the NPS surveys
    (`services.surveys`), in one unit of work so that nobody is asked both."""
    return await db.write(_ask_due, settings, now)


def _ask_due(session: Session, settings: Settings, now: datetime) -> Asked:
    motivation = queue_due(session, settings, now)
    nps = surveys.queue_due(session, settings, now)
    session.commit()
    return Asked(motivation, nps)


def queue_due(session: Session, settings: Settings, now: datetime) -> int:
    """Create and queue the motivation questions that are due, inside the caller's unit of
    work (the caller commits); returns how many were queued. Two sweeps at once create each
    member's row once (`INSERT … ON CONFLICT DO NOTHING` on the client)."""
    latest = now - timedelta(minutes=settings.engagement.survey_delay_min)
    their_card, earlier = aliased(Card), aliased(Purchase)
    # The member's non-voided purchases up to this one: is it (at least) their third?
    purchases_so_far = (
        select(func.count())
        .select_from(earlier)
        .join(their_card, their_card.id == earlier.card_id)
        .where(
            their_card.client_id == Client.id,
            earlier.voided_at.is_(None),
            earlier.created_at <= Purchase.created_at,
        )
        .correlate(Client, Purchase)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Client.id, Client.tg_id)
        .join(Card, Card.client_id == Client.id)
        .join(Purchase, Purchase.card_id == Card.id)
        .where(
            Purchase.source == PurchaseSource.BOT,
            Purchase.voided_at.is_(None),
            Purchase.created_at <= latest,
            Purchase.created_at > latest - surveys.LOOKBACK,
            Client.tg_id.is_not(None),
            Client.erased_at.is_(None),
            Client.consent_at.is_not(None),
            Client.reachable.is_(True),
            Client.marketing_opt_out.is_(False),
            ~exists().where(Motivation.client_id == Client.id),
            ~exists().where(Survey.client_id == Client.id, Survey.created_at > now - QUESTION_GAP),
            purchases_so_far >= ASK_AT_PURCHASE,
        )
        .distinct()
        .order_by(Client.id)
    ).all()
    create = insert_ignoring(
        Motivation.__table__, "client_id", dialect=session.get_bind().dialect.name
    ).returning(Motivation.__table__.c.client_id)
    queued = 0
    for client_id, tg_id in rows:
        if session.scalar(create.values(client_id=client_id, asked_at=now)) is None:
            continue  # another sweep asked them just now
        message = OutboxMessage(
            key=f"motivation:{client_id}",
            kind=MOTIVATION_KIND,
            chat_id=tg_id,
            client_id=client_id,
            payload={},
            marketing=True,
        )
        queued += sum(queue_messages(session, [message], now))
    return queued


# -------------------------------------------------------------------------------- answers


def _asked(session: Session, tg_id: int) -> int:
    """The client id of the member with this Telegram id who was asked; else refused."""
    client_id = session.scalar(
        select(Motivation.client_id)
        .join(Client, Client.id == Motivation.client_id)
        .where(Client.tg_id == tg_id)
    )
    if client_id is None:
        raise MotivationNotAsked(tg_id)
    return client_id


async def answer(db: Database, *, tg_id: int, reason: Reason, now: datetime) -> Answer:
    """Record the member's reason once (a conditional update)."""
    return await db.write(_answer, tg_id, reason, now)


def _answer(session: Session, tg_id: int, reason: Reason, now: datetime) -> Answer:
    client_id = _asked(session, tg_id)
    result = session.execute(
        update(Motivation)
        .where(Motivation.client_id == client_id, Motivation.answered_at.is_(None))
        .values(reason=reason.value, answered_at=now)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        session.rollback()
        standing = session.scalar(
            select(Motivation.reason).where(Motivation.client_id == client_id)
        )
        return Answer(AnswerStatus.ALREADY, Reason(standing) if standing else None)
    session.commit()
    return Answer(AnswerStatus.RECORDED, reason)


async def comment(db: Database, *, tg_id: int, text: str, now: datetime) -> bool:
    """Store the "something else" text (the first one only, capped). False when the answer
    takes no text (another reason, or a text already given)."""
    return await db.write(_comment, tg_id, text, now)


def _comment(session: Session, tg_id: int, text: str, now: datetime) -> bool:
    client_id = _asked(session, tg_id)
    text = text.strip()[:COMMENT_MAX_CHARS]
    if not text:
        session.rollback()
        return False
    result = session.execute(
        update(Motivation)
        .where(
            Motivation.client_id == client_id,
            Motivation.reason == Reason.OTHER.value,
            Motivation.comment.is_(None),
        )
        .values(comment=text)
        .execution_options(synchronize_session=False)
    )
    stored = bool(result.rowcount)  # type: ignore[attr-defined]
    session.commit()
    return stored


async def awaits_comment(db: Database, *, tg_id: int) -> bool:
    """Whether the member's answer is "something else" still without its text (refused for
    someone who was never asked)."""
    return await db.read(_awaits_comment, tg_id)


def _awaits_comment(session: Session, tg_id: int) -> bool:
    client_id = _asked(session, tg_id)
    return (
        session.scalar(
            select(Motivation.client_id).where(
                Motivation.client_id == client_id,
                Motivation.reason == Reason.OTHER.value,
                Motivation.comment.is_(None),
            )
        )
        is not None
    )


@dataclass(frozen=True)
class MotivationView:
    """What the renderer needs: whether the member's question still wants an answer."""

    client_id: int
    answered: bool


def view(session: Session, client_id: int) -> MotivationView | None:
    """A unit that reads one member's question (`await db.read(motivation.view, id)`)."""
    answered_at = session.execute(
        select(Motivation.answered_at).where(Motivation.client_id == client_id)
    ).first()
    if answered_at is None:
        return None
    return MotivationView(client_id, answered_at[0] is not None)


# --------------------------------------------------------------------------------- digest


@dataclass(frozen=True)
class MotivationFigures:
    """Answers by reason in the week and of all time up to the week's end, and the week's
    latest "something else" comments (newest first)."""

    week: dict[Reason, int]
    total: dict[Reason, int]
    comments: list[str] = field(default_factory=list)

    @property
    def week_answers(self) -> int:
        return sum(self.week.values())

    @property
    def total_answers(self) -> int:
        return sum(self.total.values())


def _store_midnight(day: date, settings: Settings) -> datetime:
    return datetime.combine(day, time(0), settings.store.tz)


def figures(
    session: Session, settings: Settings, first: date, last: date, comments: int = 3
) -> MotivationFigures:
    """A unit: the answers of the store days `first`…`last` and of all time up to `last`, by
    reason, and the latest `comments` "something else" texts answered in those days."""
    start = _store_midnight(first, settings)
    end = _store_midnight(last + timedelta(days=1), settings)
    in_week = Motivation.answered_at >= start
    rows = session.execute(
        select(
            Motivation.reason,
            func.count(),
            func.sum(case((in_week, 1), else_=0)),
        )
        .where(Motivation.answered_at.is_not(None), Motivation.answered_at < end)
        .group_by(Motivation.reason)
    ).all()
    total = dict.fromkeys(Reason, 0)
    week = dict.fromkeys(Reason, 0)
    known = {reason.value: reason for reason in Reason}
    for value, all_time, this_week in rows:
        if value in known:  # a reason this version does not know is left out
            total[known[value]] = int(all_time)
            week[known[value]] = int(this_week or 0)
    texts = session.scalars(
        select(Motivation.comment)
        .where(
            Motivation.reason == Reason.OTHER.value,
            Motivation.comment.is_not(None),
            in_week,
            Motivation.answered_at < end,
        )
        .order_by(Motivation.answered_at.desc(), Motivation.client_id.desc())
        .limit(comments)
    ).all()
    return MotivationFigures(week, total, [text for text in texts if text])
