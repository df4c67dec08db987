"""The owner's campaigns: an offer and a message to an audience, measured against a hold-out.

A campaign is written as a *draft* (`create`: what the wizard's preview and the CLI's
`--dry-run` show) and *sent* once (`send`). Sending is claimed by a conditional update
(draft → sent), so a second ✅ press, a forged repeat or two workers at once send nothing more.

Audiences (drawn at send time, from the clients an offer can reach and be used by:
`services.offers.contactable` — consented, reachable, not opted out, not erased, holding a
card the till accepts):

    all             every such client
    rfm:<segment>   clients with a card in that RFM segment now (`services.kpi`'s scores
                    and segment names: champions, loyal, potential, new, at_risk,
                    hibernating, lost)
    inactive:<N>    no non-voided purchase in the last N days, but at least one before
    birthday:<M>    birthday in month M (1–12)
    branch:<id>     clients whose usual branch is that one (a chain: where most of their
                    non-voided purchases were made, `services.offers.usual_branches`)

The hold-out is an *exact* random split: round(audience × holdout_pct / 100) members, drawn
without replacement (`random.sample`), so the preview's sizes are the sizes sent (unless the
audience changes between preview and send) and small campaigns still get their share.

Sending writes in bulk (Core inserts, executemany): one unit claims the campaign, draws the
audience and writes its `CampaignMember` rows; then units of `CHUNK` offered members each
write their offers, link them to the members and queue their messages (`Delivery` kind
`campaign`, marketing, key `campaign:<id>:<client>`, facts only: campaign and offer id). On
SQLite a sale at the till waits at most one such unit. Should the process stop in between,
the members without an offer are picked up by the next `send` of the campaign or by
`finish_interrupted` (the owner's `/campaigns`, `campaigns list`); the key keeps a message
from being queued twice. The messages come due at the sender's
global rate, a chunk at a time (`finish`): the delivery sender takes due rows oldest first,
so 100,000 rows due at once would hold every receipt and staff-group line queued after them
for as long as the campaign takes to go out (an hour at Telegram's 25 msg/s).

Results (`results`): a *return* is a non-voided purchase by any card of the member within
[sent_at, window_until] (window_until = sent_at + valid_days); return rates per group, the
redemption of the offers, the gross revenue of the window's purchases per group and per
member, and the lift with its 95 % confidence interval (`services.experiments`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import and_, bindparam, case, extract, func, insert, select, update
from sqlalchemy.orm import Session

from config import LANGUAGES
from db.database import Database
from db.models import (
    Campaign,
    CampaignMember,
    CampaignStatus,
    Card,
    Client,
    Offer,
    OfferKind,
    Purchase,
)
from services.delivery import OutboxMessage, queue_messages
from services.errors import DomainError
from services.experiments import Lift, lift_ci, rate
from services.kpi import RFM_SEGMENTS, as_int, card_scores
from services.offers import OfferView, contactable, usual_branches

CAMPAIGN_KIND = "campaign"  # the delivery kind of a campaign's message
AUDIENCES = ("all", "rfm", "inactive", "birthday", "branch")
DEFAULT_TEXT = "*"  # the key of the one text for every language in `Campaign.texts`
# Offered members a unit (their offers, links and messages): on SQLite a sale at the till
# waits at most one such unit (bench/campaigns.py: tens of milliseconds).
CHUNK = 500
MEMBER_CHUNK = 5000  # campaign_members rows a statement in the drawing unit
MAX_TEXT = 3000  # characters of the owner's text (the offer line and Telegram's 4096 follow)
MAX_DAYS = 365
MAX_INACTIVE_DAYS = 3650


class InvalidCampaign(DomainError):
    """A campaign's setting is malformed; `field` names which, `text` what was given."""

    _PROBLEMS: ClassVar[dict[str, str]] = {
        "name": "a campaign needs a name of 1 to 64 characters",
        "audience": "the audience must be all, rfm:<segment>, inactive:<days> or "
        "birthday:<month>, not {text!r}",
        "segment": "unknown RFM segment {text!r}: one of " + ", ".join(RFM_SEGMENTS),
        "inactive": "inactive days must be a whole number from 1 to 3650, not {text!r}",
        "month": "the birthday month must be 1 to 12, not {text!r}",
        "branch": "the branch must be a branch's id, not {text!r}",
        "bonus": "the bonus must be 1 to 99 %, not {text}",
        "days": "the offer must be valid 1 to 365 days, not {text}",
        "holdout": "the hold-out share must be 0 to 50 %, not {text}",
        "text": "the message text must be 1 to 3000 characters",
        "language": "unknown language {text!r}",
    }

    def __init__(self, field: str, text: object = "") -> None:
        super().__init__(self._PROBLEMS[field].format(text=text))
        self.field = field
        self.text = str(text)


class EmptyAudience(DomainError):
    def __init__(self) -> None:
        super().__init__("nobody in this audience can receive the campaign (nothing written)")


class CampaignNotFound(DomainError):
    def __init__(self, campaign_id: int) -> None:
        super().__init__(f"no campaign {campaign_id}")
        self.campaign_id = campaign_id


class CampaignNotDraft(DomainError):
    """Cancelling (or sending) a campaign that was already sent or cancelled."""

    def __init__(self, campaign_id: int, status: str) -> None:
        super().__init__(f"campaign {campaign_id} is {status} already")
        self.campaign_id = campaign_id
        self.status = status


@dataclass(frozen=True)
class Audience:
    kind: str  # all | rfm | inactive | birthday | branch
    arg: str | None = None

    def __str__(self) -> str:
        return self.kind if self.arg is None else f"{self.kind}:{self.arg}"


def parse_audience(text: str) -> Audience:
    """`all`, `rfm:<segment>`, `inactive:<days>`, `birthday:<month>` (validated)."""
    kind, _colon, arg = text.strip().lower().partition(":")
    return check_audience(kind, arg or None, text)


def check_audience(kind: str, arg: str | None, shown: str | None = None) -> Audience:
    if kind == "all" and arg is None:
        return Audience("all")
    if kind == "rfm" and arg is not None:
        if arg not in RFM_SEGMENTS:
            raise InvalidCampaign("segment", arg)
        return Audience("rfm", arg)
    if kind == "inactive" and arg is not None:
        if not arg.isdigit() or not 1 <= int(arg) <= MAX_INACTIVE_DAYS:
            raise InvalidCampaign("inactive", arg)
        return Audience("inactive", str(int(arg)))
    if kind == "birthday" and arg is not None:
        if not arg.isdigit() or not 1 <= int(arg) <= 12:
            raise InvalidCampaign("month", arg)
        return Audience("birthday", str(int(arg)))
    if kind == "branch" and arg is not None:
        if not arg.isdigit() or not 1 <= int(arg) < 2**31:
            raise InvalidCampaign("branch", arg)
        return Audience("branch", str(int(arg)))
    raise InvalidCampaign("audience", shown if shown is not None else f"{kind}:{arg}")


@dataclass(frozen=True)
class CampaignDraft:
    name: str
    audience: Audience
    bonus_pct: int
    valid_days: int
    holdout_pct: int
    texts: dict[str, str]  # DEFAULT_TEXT and/or language codes → text

    def check(self, languages: tuple[str, ...]) -> CampaignDraft:
        """This draft if every field is acceptable, else `InvalidCampaign` for the first."""
        name = self.name.strip()
        if not 1 <= len(name) <= 64:
            raise InvalidCampaign("name")
        check_audience(self.audience.kind, self.audience.arg)
        if not 1 <= self.bonus_pct <= 99:
            raise InvalidCampaign("bonus", self.bonus_pct)
        if not 1 <= self.valid_days <= MAX_DAYS:
            raise InvalidCampaign("days", self.valid_days)
        if not 0 <= self.holdout_pct <= 50:
            raise InvalidCampaign("holdout", self.holdout_pct)
        check_texts(self.texts, languages)
        return CampaignDraft(
            name, self.audience, self.bonus_pct, self.valid_days, self.holdout_pct, self.texts
        )


def check_text(text: str) -> str:
    text = text.strip()
    if not 1 <= len(text) <= MAX_TEXT:
        raise InvalidCampaign("text")
    return text


def check_texts(texts: dict[str, str], languages: tuple[str, ...]) -> None:
    if DEFAULT_TEXT not in texts:
        raise InvalidCampaign("text")
    for language, text in texts.items():
        if language != DEFAULT_TEXT and language not in languages:
            raise InvalidCampaign("language", language)
        check_text(text)


def text_for(texts: dict[str, str], language: str | None) -> str:
    """The client's language's text, else the one text for all."""
    if language and texts.get(language):
        return texts[language]
    return texts.get(DEFAULT_TEXT) or next(iter(texts.values()), "")


def holdout_size(audience: int, holdout_pct: int) -> int:
    """The exact hold-out of an audience: round(audience × pct / 100), half up."""
    return (audience * holdout_pct + 50) // 100


# ----------------------------------------------------------------------------- audience


def _members_query(audience: Audience, now: datetime) -> Any:
    """The ids of the clients in the audience now, eligible for an offer, by id."""
    query = select(Client.id).where(*contactable())
    if audience.kind == "rfm":
        scores = card_scores(now, now, now)
        in_segment = (
            select(Card.client_id)
            .join(scores, scores.c.card_id == Card.id)
            .where(Card.client_id.is_not(None), scores.c.rfm == audience.arg)
        )
        query = query.where(Client.id.in_(in_segment))
    elif audience.kind == "inactive":
        cutoff = now - timedelta(days=int(audience.arg or 0))
        lapsed = (
            select(Card.client_id)
            .where(Card.client_id.is_not(None))
            .group_by(Card.client_id)
            .having(func.max(Card.last_purchase_at) < cutoff)
        )
        query = query.where(Client.id.in_(lapsed))
    elif audience.kind == "birthday":
        query = query.where(
            Client.birthday.is_not(None),
            extract("month", Client.birthday) == int(audience.arg or 0),
        )
    elif audience.kind == "branch":
        usual = usual_branches().subquery()
        regulars = select(usual.c.client_id).where(usual.c.branch_id == int(audience.arg or 0))
        query = query.where(Client.id.in_(regulars))
    return query.order_by(Client.id)


def audience_size(session: Session, audience: Audience, now: datetime) -> int:
    """How many clients the audience holds now (a unit: `db.read`)."""
    members = _members_query(audience, now).order_by(None).subquery()
    return as_int(session.scalar(select(func.count()).select_from(members)))


# ------------------------------------------------------------------------------- drafts


@dataclass(frozen=True)
class CampaignView:
    id: int
    name: str
    audience: Audience
    bonus_pct: int
    valid_days: int
    holdout_pct: int
    texts: dict[str, str]
    status: str
    created_at: datetime
    sent_at: datetime | None
    window_until: datetime | None
    audience_size: int
    holdout_size: int

    @property
    def offered_size(self) -> int:
        return self.audience_size - self.holdout_size


def _view(campaign: Campaign) -> CampaignView:
    return CampaignView(
        id=campaign.id,
        name=campaign.name,
        audience=Audience(campaign.audience, campaign.audience_arg),
        bonus_pct=campaign.bonus_pct,
        valid_days=campaign.valid_days,
        holdout_pct=campaign.holdout_pct,
        texts=dict(campaign.texts or {}),
        status=campaign.status,
        created_at=campaign.created_at,
        sent_at=campaign.sent_at,
        window_until=campaign.window_until,
        audience_size=campaign.audience_size,
        holdout_size=campaign.holdout_size,
    )


def _create(
    session: Session, draft: CampaignDraft, created_by: int | None, now: datetime, write: bool
) -> CampaignView:
    size = audience_size(session, draft.audience, now)
    if size == 0:
        raise EmptyAudience
    campaign = Campaign(
        name=draft.name.strip(),
        audience=draft.audience.kind,
        audience_arg=draft.audience.arg,
        bonus_pct=draft.bonus_pct,
        valid_days=draft.valid_days,
        holdout_pct=draft.holdout_pct,
        texts={key: check_text(text) for key, text in draft.texts.items()},
        status=CampaignStatus.DRAFT,
        created_by=created_by,
        created_at=now,
        audience_size=size,
        holdout_size=holdout_size(size, draft.holdout_pct),
    )
    if not write:
        campaign.id = 0
        return _view(campaign)
    session.add(campaign)
    session.commit()
    return _view(campaign)


async def create(
    db: Database,
    draft: CampaignDraft,
    now: datetime,
    *,
    created_by: int | None = None,
    dry_run: bool = False,
) -> CampaignView:
    """Write a draft (its audience and hold-out sizes as of now: the preview). `dry_run`:
    the same view, nothing written (id 0). Refuses an invalid draft or an empty audience."""
    draft = draft.check(tuple(LANGUAGES))
    if dry_run:
        return await db.read(_create, draft, created_by, now, False)
    return await db.write(_create, draft, created_by, now, True)


def get(session: Session, campaign_id: int) -> CampaignView:
    """One campaign (a unit: `db.read`); `CampaignNotFound` when there is none."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignNotFound(campaign_id)
    return _view(campaign)


def _cancel(session: Session, campaign_id: int) -> CampaignView:
    changed = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.DRAFT)
        .values(status=CampaignStatus.CANCELLED)
    ).rowcount
    view = get(session, campaign_id)
    if not changed:
        raise CampaignNotDraft(campaign_id, view.status)
    session.commit()
    return view


async def cancel(db: Database, campaign_id: int) -> CampaignView:
    """Drop a draft; `CampaignNotDraft` when it was sent or cancelled already."""
    return await db.write(_cancel, campaign_id)


# ------------------------------------------------------------------------------ sending


@dataclass(frozen=True)
class SendResult:
    campaign: CampaignView
    sent_now: bool  # False: it had been sent before (a second press): nothing more was drawn
    queued: int = 0  # offers written and messages queued by this call


def _claim_and_draw(
    session: Session, campaign_id: int, now: datetime, rng: random.Random
) -> tuple[CampaignView, bool]:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignNotFound(campaign_id)
    window_until = now + timedelta(days=campaign.valid_days)
    claimed = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.DRAFT)
        .values(status=CampaignStatus.SENT, sent_at=now, window_until=window_until)
    ).rowcount
    if not claimed:  # sent (or cancelled) already, maybe by another worker just now
        session.rollback()
        view = get(session, campaign_id)
        if view.status != CampaignStatus.SENT:
            raise CampaignNotDraft(campaign_id, view.status)
        return view, False
    audience = Audience(campaign.audience, campaign.audience_arg)
    ids = list(session.scalars(_members_query(audience, now)))
    if not ids:
        raise EmptyAudience  # rolled back: the draft stays a draft
    control = set(rng.sample(ids, holdout_size(len(ids), campaign.holdout_pct)))
    table = CampaignMember.__table__
    for start in range(0, len(ids), MEMBER_CHUNK):
        session.execute(
            insert(table),
            [
                {
                    "campaign_id": campaign_id,
                    "client_id": client_id,
                    "control": client_id in control,
                    "offer_id": None,
                }
                for client_id in ids[start : start + MEMBER_CHUNK]
            ],
        )
    session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id)
        .values(audience_size=len(ids), holdout_size=len(control))
    )
    session.commit()
    return get(session, campaign_id), True


def _offer_chunk(
    session: Session, campaign_id: int, now: datetime, limit: int, due: datetime | None = None
) -> int:
    """Offers and messages (due at `due`, default now) for up to `limit` offered members who
    have none yet."""
    # The campaign's row lock makes two finishing at once (two workers, a second ✅ while
    # the first is still writing) take turns; each then selects what is still undone.
    campaign = session.get(Campaign, campaign_id, with_for_update=True)
    if campaign is None or campaign.sent_at is None or campaign.window_until is None:
        return 0
    cm = CampaignMember.__table__.c
    rows = session.execute(
        select(cm.client_id, Client.tg_id)
        .join(Client, Client.id == cm.client_id)
        .where(cm.campaign_id == campaign_id, cm.control.is_(False), cm.offer_id.is_(None))
        .order_by(cm.client_id)
        .limit(limit)
    ).all()
    if not rows:
        return 0
    offers = Offer.__table__
    offer_ids = session.scalars(
        insert(offers).returning(offers.c.id, sort_by_parameter_order=True),
        [
            {
                "client_id": client_id,
                "kind": OfferKind.CAMPAIGN.value,
                "bonus_pct": campaign.bonus_pct,
                "valid_from": campaign.sent_at,
                "valid_until": campaign.window_until,
                "created_at": now,
            }
            for client_id, _tg in rows
        ],
    ).all()
    session.execute(
        update(CampaignMember.__table__)
        .where(cm.campaign_id == campaign_id, cm.client_id == bindparam("b_client"))
        .values(offer_id=bindparam("b_offer")),
        [
            {"b_client": client_id, "b_offer": offer_id}
            for (client_id, _tg), offer_id in zip(rows, offer_ids, strict=True)
        ],
    )
    messages = [
        OutboxMessage(
            key=f"campaign:{campaign_id}:{client_id}",
            kind=CAMPAIGN_KIND,
            chat_id=tg_id,
            client_id=client_id,
            payload={"campaign_id": campaign_id, "offer_id": offer_id},
            marketing=True,
        )
        for (client_id, tg_id), offer_id in zip(rows, offer_ids, strict=True)
        if tg_id is not None  # erased since the draw: the offer stays unused
    ]
    queue_messages(session, messages, due or now)
    session.commit()
    return len(rows)


async def finish(
    db: Database,
    campaign_id: int,
    now: datetime,
    chunk: int = CHUNK,
    pace: float | None = None,
) -> int:
    """Write the offers and messages of a sent campaign's offered members that have none
    yet, one unit per `chunk` members; how many were written. `pace` (messages a second,
    the sender's global rate): each chunk's messages come due when the sender can reach
    them, not all at once, so that what is queued meanwhile (a customer's receipt, a
    staff-group line) never waits behind the whole campaign."""
    total = 0
    while True:
        due = now + timedelta(seconds=total / pace) if pace else now
        written = await db.write(_offer_chunk, campaign_id, now, chunk, due)
        if not written:
            return total
        total += written


# A send cut short is finished within this long of it (later, its offers would be worth little
# and the search would read every old campaign's members).
RESUME_WITHIN = timedelta(days=2)


def _interrupted(session: Session, now: datetime) -> list[int]:
    cm = CampaignMember.__table__.c
    unfinished = (
        select(cm.client_id)
        .where(cm.campaign_id == Campaign.id, cm.control.is_(False), cm.offer_id.is_(None))
        .exists()
    )
    return list(
        session.scalars(
            select(Campaign.id)
            .where(
                Campaign.status == CampaignStatus.SENT,
                Campaign.sent_at >= now - RESUME_WITHIN,
                unfinished,
            )
            .order_by(Campaign.id)
        )
    )


async def finish_interrupted(db: Database, now: datetime, pace: float | None = None) -> int:
    """Finish every campaign sent in the last `RESUME_WITHIN` whose sending was cut short (the
    process stopped between its units): the `campaigns` job (every 10 minutes and at start-up),
    `/campaigns` and `campaigns list` run it; how many offers were written."""
    ids = await db.read(_interrupted, now)
    return sum([await finish(db, cid, now, pace=pace) for cid in ids])


async def send(
    db: Database,
    campaign_id: int,
    now: datetime,
    rng: random.Random | None = None,
    chunk: int = CHUNK,
    pace: float | None = None,
) -> SendResult:
    """Send a draft: draw its audience and hold-out, write the offers, queue the messages
    (paced at `pace` messages a second: `finish`). A campaign sent before is not drawn again
    (`sent_now` False); what an interrupted send left undone is finished. `EmptyAudience`
    leaves the draft as it was."""
    view, sent_now = await db.write(_claim_and_draw, campaign_id, now, rng or random.Random())
    queued = await finish(db, campaign_id, now, chunk, pace)
    return SendResult(view, sent_now, queued)


def message_facts(
    session: Session, campaign_id: int, offer_id: int, now: datetime
) -> tuple[dict[str, str], OfferView] | None:
    """What a campaign's message says, for its renderer (a unit: `db.read`): the texts and
    the member's offer; None when either is gone or the offer can no longer be used."""
    # One Core statement (the sender renders tens of thousands of these in a row).
    campaign, offer = Campaign.__table__.c, Offer.__table__.c
    row = session.execute(
        select(
            select(campaign.texts).where(campaign.id == campaign_id).scalar_subquery(),
            offer.bonus_pct,
            offer.valid_until,
            offer.redeemed_at,
            offer.cancelled_at,
        ).where(offer.id == offer_id)
    ).first()
    if row is None or not row[0]:
        return None
    usable = row.redeemed_at is None and row.cancelled_at is None and row.valid_until > now
    if not usable:
        return None
    view = OfferView(offer_id, OfferKind.CAMPAIGN.value, row.bonus_pct, row.valid_until)
    return dict(row[0]), view


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class CampaignResult:
    campaign: CampaignView
    offered: int = 0
    control: int = 0
    returned_offered: int = 0
    returned_control: int = 0
    redeemed: int = 0
    revenue_offered: int = 0  # gross, minor units, of the window's purchases
    revenue_control: int = 0
    return_rate_offered: float | None = None
    return_rate_control: float | None = None
    redemption_rate: float | None = None
    revenue_per_offered: float | None = None  # minor units per member of the group
    revenue_per_control: float | None = None
    lift: Lift = field(default_factory=Lift)


def _result(session: Session, campaign: Campaign) -> CampaignResult:
    view = _view(campaign)
    if campaign.sent_at is None or campaign.window_until is None:
        return CampaignResult(view)
    cm = CampaignMember.__table__.c
    bought = (
        select(
            Card.client_id.label("client_id"),
            func.count().label("n"),
            func.sum(Purchase.amount).label("gross"),
        )
        .join(Purchase, Purchase.card_id == Card.id)
        .where(
            Card.client_id.in_(select(cm.client_id).where(cm.campaign_id == campaign.id)),
            Purchase.voided_at.is_(None),
            Purchase.created_at >= campaign.sent_at,
            Purchase.created_at <= campaign.window_until,
        )
        .group_by(Card.client_id)
        .subquery("bought")
    )
    redeemed = and_(Offer.id.is_not(None), Offer.redeemed_at.is_not(None))
    rows = session.execute(
        select(
            cm.control,
            func.count(),
            func.sum(case((bought.c.n > 0, 1), else_=0)),
            func.sum(func.coalesce(bought.c.gross, 0)),
            func.sum(case((redeemed, 1), else_=0)),
        )
        .select_from(CampaignMember.__table__)
        .outerjoin(bought, bought.c.client_id == cm.client_id)
        .outerjoin(Offer, Offer.id == cm.offer_id)
        .where(cm.campaign_id == campaign.id)
        .group_by(cm.control)
    ).all()
    figures: dict[bool, tuple[int, int, int, int]] = {
        bool(control): (as_int(n), as_int(ret), as_int(gross), as_int(red))
        for control, n, ret, gross, red in rows
    }
    offered, returned_offered, revenue_offered, redeemed_n = figures.get(False, (0, 0, 0, 0))
    control, returned_control, revenue_control, _red = figures.get(True, (0, 0, 0, 0))
    return CampaignResult(
        campaign=view,
        offered=offered,
        control=control,
        returned_offered=returned_offered,
        returned_control=returned_control,
        redeemed=redeemed_n,
        revenue_offered=revenue_offered,
        revenue_control=revenue_control,
        return_rate_offered=rate(returned_offered, offered),
        return_rate_control=rate(returned_control, control),
        redemption_rate=rate(redeemed_n, offered),
        revenue_per_offered=rate(revenue_offered, offered),
        revenue_per_control=rate(revenue_control, control),
        lift=lift_ci(returned_offered, offered, returned_control, control),
    )


def result(session: Session, campaign_id: int) -> CampaignResult:
    """One campaign's figures (a long read: `db.report`)."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignNotFound(campaign_id)
    return _result(session, campaign)


def results(
    session: Session,
    *,
    limit: int | None = None,
    sent_only: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[CampaignResult]:
    """Campaigns with their figures, newest first (a long read: `db.report`). `since`/
    `until`: sent campaigns whose window [sent_at, window_until] overlaps [since, until)."""
    query = select(Campaign).order_by(Campaign.id.desc())
    if sent_only or since is not None or until is not None:
        query = query.where(Campaign.status == CampaignStatus.SENT)
    if since is not None:
        query = query.where(Campaign.window_until >= since)
    if until is not None:
        query = query.where(Campaign.sent_at < until)
    if limit is not None:
        query = query.limit(limit)
    return [_result(session, campaign) for campaign in session.scalars(query).all()]


def member_campaigns(session: Session, client_id: int) -> list[dict[str, Any]]:
    """The campaigns a client was in (for /mydata): id, name, sent, hold-out or offer."""
    rows = session.execute(
        select(Campaign.id, Campaign.name, Campaign.sent_at, CampaignMember.control)
        .join(CampaignMember, CampaignMember.campaign_id == Campaign.id)
        .where(CampaignMember.client_id == client_id)
        .order_by(Campaign.id)
    ).all()
    return [
        {
            "id": cid,
            "name": name,
            "sent_at": sent_at.isoformat() if sent_at else None,
            "group": "hold-out" if control else "offered",
        }
        for cid, name, sent_at, control in rows
    ]
