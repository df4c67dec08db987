"""Referrals: a member (the ambassador) invites friends with a link of their own; a friend's
first purchase rewards both.

Usage (each method one unit of work, `db.database`)::

    referrals = ReferralService(db, settings, clock)
    code = await referrals.code(client_id)            # the member's invite code, made once
    mine = await referrals.invitations(tg_id)         # InviteSummary: code, joined, rewarded
    opened = await referrals.opened(tg_id, code)      # OpenedInvite: whose link, member already?
    outcome = await referrals.join(tg_id, code, opened_at)   # JoinOutcome: referred or why not

The link is `https://t.me/<bot>?start=r<code>`; the code is random (`secrets`), not the card's
payload, so it says nothing about the card and cannot be guessed from another one.

**Who counts as referred.** A friend is recorded (`referrals` row) when they join — consent,
then a card linked or a digital one issued — and only when new to the program: their client
row was born after they opened the link (someone who had agreed before is a member already),
none of their cards has a purchase (a printed card used at the till before does not make a new
customer), the link is not their own, and they were never referred before (`friend_id` is
unique). Anything else joins normally and is not recorded (`JoinOutcome.refused` says why).

**Rewards.** At the friend's first confirmed purchase (`reward_first_purchase`, inside the
sale's own transaction: one indexed lookup by the friend's client id, and only for a card with
a holder) both get an offer of kind `referral`: `REFERRAL_BONUS_PCT` for
`REFERRAL_VALID_DAYS`, applied by the till at their next purchase. Once per friend. An
ambassador is rewarded at most `REFERRAL_MAX_PER_MONTH` times per calendar month (UTC): past
that the referral is recorded `capped`, the friend still gets their offer and the ambassador
gets a note instead of one. The messages are queued as facts (`REWARD_KIND`): rendered when
sent, in each recipient's language, the ambassador's naming the friend by first name only.

**Voids.** Voiding that first purchase (`revoke_first_purchase`, inside the void's
transaction) cancels both offers unless already used, and marks the referral revoked. A
revoked referral stays revoked: the friend's next purchase rewards nobody.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.database import Database
from db.models import Card, Client, InviteCode, Offer, OfferKind, Referral
from db.prepared import Prepared
from services import audit
from services.clock import Clock
from services.delivery import OutboxMessage, queue_messages

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings

INVITE_PREFIX = "r"  # `/start r<code>`: card payloads start with `c` or `l<digit>`
REWARD_KIND = "referral_reward"  # the delivery kind of both sides' messages
CODE_BYTES = 6  # 8 characters of [A-Za-z0-9_-]: 48 random bits
_CODE = re.compile(r"[A-Za-z0-9_-]{4,16}")
CODE_TRIES = 5  # a new random code is drawn after a (vanishingly rare) collision

# Why a friend was not recorded as referred (`JoinOutcome.refused`).
UNKNOWN = "unknown"  # no such code (forged, mistyped, or its owner's data was erased)
OWN_LINK = "own_link"  # the ambassador opened their own link
MEMBER = "member"  # agreed to the program before opening the link
HAS_PURCHASES = "has_purchases"  # a card of theirs was used at the till already
ALREADY_REFERRED = "already_referred"  # referred before (by anyone)

# Which side a reward message goes to (`REWARD_KIND` payload `side`).
FRIEND = "friend"
AMBASSADOR = "ambassador"
CAPPED = "capped"  # the ambassador, past the month's cap: a note without an offer


def invite_code_of(start_args: str | None) -> str | None:
    """The invite code in `/start` arguments (`r<code>`), or None when they are not an invite."""
    if not start_args or not start_args.startswith(INVITE_PREFIX):
        return None
    code = start_args[len(INVITE_PREFIX) :]
    return code if _CODE.fullmatch(code) else None


def invite_link(bot_username: str, code: str) -> str:
    return f"https://t.me/{bot_username}?start={INVITE_PREFIX}{code}"


# ------------------------------------------------------------------------ results


@dataclass(frozen=True)
class InviteSummary:
    """The member's own invitations, for /invite."""

    code: str
    joined: int  # friends who joined through the link
    rewarded: int  # of them, the ones whose first purchase rewarded the member


@dataclass(frozen=True)
class OpenedInvite:
    """Someone opened an invite link. `ambassador_name`: the link owner's first name (all a
    friend ever learns about them); `own_link`/`member`: why it will not count."""

    valid: bool
    ambassador_name: str | None = None
    own_link: bool = False
    member: bool = False


@dataclass(frozen=True)
class JoinOutcome:
    referral_id: int | None  # None: not recorded (`refused` says why)
    refused: str | None = None
    ambassador_name: str | None = None


@dataclass(frozen=True)
class RewardNote:
    """What a reward message says (`REWARD_KIND`), read when it is sent."""

    side: str
    friend_name: str | None  # for the ambassador's message
    bonus_pct: int | None
    valid_until: datetime | None
    usable: bool  # the offer is still there to be used (not taken back, not used up)
    cap: int


@dataclass(frozen=True)
class Ambassador:
    """A line of the digest's top ambassadors (first name only)."""

    first_name: str | None
    joined: int
    rewarded: int


# ------------------------------------------------------------------------ service


class ReferralService:
    """The referral units of work a member's chat needs; each public method runs one."""

    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock

    async def code(self, client_id: int) -> str:
        """The member's invite code; made on first use."""
        found = await self.db.read(_code_of, client_id)
        if found is not None:
            return found
        return await self.db.write(_make_code, client_id, self.clock())

    async def invitations(self, client_id: int) -> InviteSummary:
        """The member's code (made on first use) and how their friends are doing."""
        code = await self.code(client_id)
        joined, rewarded = await self.db.read(_invited_counts, client_id)
        return InviteSummary(code, joined, rewarded)

    async def opened(self, tg_id: int, code: str) -> OpenedInvite:
        """Whose link this is (first name only), and whether the person opening it is its
        owner or a member already (a client row: they agreed before). Reads only."""
        return await self.db.read(_opened, tg_id, code)

    async def join(self, tg_id: int, code: str, opened_at: datetime) -> JoinOutcome:
        """The friend `tg_id` has just joined (consented and got a card) after opening the
        link with `code` at `opened_at`: record the referral if they are new to the program."""
        return await self.db.write(_join, tg_id, code, opened_at, self.clock())


# ------------------------------------------------------------------------ units


def _code_of(session: Session, client_id: int) -> str | None:
    return session.scalar(select(InviteCode.code).where(InviteCode.client_id == client_id))


def _make_code(session: Session, client_id: int, now: datetime) -> str:
    module = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    for _try in range(CODE_TRIES):
        # Two taps at once: the second insert is ignored and both read the first one's code.
        session.execute(
            module.insert(InviteCode.__table__)
            .values(client_id=client_id, code=secrets.token_urlsafe(CODE_BYTES), created_at=now)
            .on_conflict_do_nothing()
        )
        code = _code_of(session, client_id)
        if code is not None:
            session.commit()
            return code
    raise RuntimeError("no free invite code")  # pragma: no cover - 48 random bits


def _invited_counts(session: Session, client_id: int) -> tuple[int, int]:
    joined, rewarded = session.execute(
        select(
            func.count(Referral.id), func.coalesce(func.sum(case((_rewarded(), 1), else_=0)), 0)
        ).where(Referral.ambassador_id == client_id)
    ).one()
    return int(joined), int(rewarded)


def _rewarded() -> Any:
    """The ambassador got the reward for this referral and it was not taken back."""
    return and_(
        Referral.rewarded_at.is_not(None),
        Referral.capped.is_(False),
        Referral.revoked_at.is_(None),
    )


def _ambassador(session: Session, code: str) -> Any:
    return session.execute(
        select(Client.id, Client.first_name)
        .join(InviteCode, InviteCode.client_id == Client.id)
        .where(InviteCode.code == code, Client.erased_at.is_(None))
    ).first()


def _opened(session: Session, tg_id: int, code: str) -> OpenedInvite:
    ambassador = _ambassador(session, code)
    if ambassador is None:
        return OpenedInvite(valid=False)
    me = session.scalar(select(Client.id).where(Client.tg_id == tg_id))
    return OpenedInvite(
        valid=True,
        ambassador_name=ambassador.first_name,
        own_link=me is not None and me == ambassador.id,
        member=me is not None,
    )


def _join(
    session: Session, tg_id: int, code: str, opened_at: datetime, now: datetime
) -> JoinOutcome:
    # The friend's row first: their joins take turns (PostgreSQL; SQLite has one writer).
    friend = session.execute(
        select(Client.id, Client.created_at).where(Client.tg_id == tg_id).with_for_update()
    ).first()
    ambassador = _ambassador(session, code)
    if ambassador is None or friend is None:
        return JoinOutcome(None, UNKNOWN)
    name = ambassador.first_name
    if ambassador.id == friend.id:
        return JoinOutcome(None, OWN_LINK, name)
    if friend.created_at < opened_at:
        return JoinOutcome(None, MEMBER, name)
    if session.scalar(select(Referral.id).where(Referral.friend_id == friend.id)) is not None:
        return JoinOutcome(None, ALREADY_REFERRED, name)
    bought = session.scalar(
        select(Card.id).where(Card.client_id == friend.id, Card.purchase_count > 0).limit(1)
    )
    if bought is not None:
        return JoinOutcome(None, HAS_PURCHASES, name)
    module = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    referral_id = session.scalar(
        module.insert(Referral.__table__)
        .values(ambassador_id=ambassador.id, friend_id=friend.id, joined_at=now, capped=False)
        .on_conflict_do_nothing(index_elements=["friend_id"])
        .returning(Referral.__table__.c.id)
    )
    if referral_id is None:  # referred by another link at this very moment
        session.rollback()
        return JoinOutcome(None, ALREADY_REFERRED, name)
    audit.record(
        session,
        "referral.joined",
        at=now,
        client_id=friend.id,
        referral_id=referral_id,
        ambassador_id=ambassador.id,
    )
    session.commit()
    return JoinOutcome(referral_id, None, name)


# --------------------------------------------------------------- inside a sale or a void


@cache
def _pending_statement() -> Prepared:
    """The friend's referral still waiting for its first purchase (by the unique friend_id)."""
    referrals = Referral.__table__.c
    return Prepared(
        select(referrals.id, referrals.ambassador_id).where(
            referrals.friend_id == bindparam("p_friend"), referrals.first_purchase_id.is_(None)
        )
    )


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) of `now`, [start, end): the span of the ambassador's cap."""
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def reward_first_purchase(
    session: Session, settings: Settings, friend_id: int, purchase_id: int, now: datetime
) -> bool:
    """In the sale's unit of work: when `friend_id` was referred and this is their first
    purchase since, reward both sides (the ambassador within their monthly cap) and queue the
    messages. False (after one indexed read) for everyone else."""
    pending = _pending_statement().execute(session, {"p_friend": friend_id}).first()
    if pending is None:
        return False
    referral_id, ambassador_id = pending
    claimed = session.execute(
        update(Referral.__table__)
        .where(Referral.id == referral_id, Referral.first_purchase_id.is_(None))
        .values(first_purchase_id=purchase_id, first_purchase_at=now, rewarded_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return False
    # The ambassador's row: their friends' first purchases take turns here, so each count of
    # the month's rewards sees the others (READ COMMITTED; SQLite has one writer anyway).
    ambassador = session.execute(
        select(Client.tg_id, Client.reachable).where(Client.id == ambassador_id).with_for_update()
    ).one()
    growth = settings.growth
    start, end = month_bounds(now)
    this_month = session.scalar(
        select(func.count(Referral.id)).where(
            Referral.ambassador_id == ambassador_id,
            Referral.rewarded_at >= start,
            Referral.rewarded_at < end,
            Referral.id != referral_id,
            _rewarded(),
        )
    )
    capped = int(this_month or 0) >= growth.referral_max_per_month
    until = now + timedelta(days=growth.referral_valid_days)

    def offer(client_id: int) -> int:
        return int(
            session.scalar(
                insert(Offer.__table__)
                .values(
                    client_id=client_id,
                    kind=OfferKind.REFERRAL.value,
                    bonus_pct=growth.referral_bonus_pct,
                    valid_from=now,
                    valid_until=until,
                    created_at=now,
                )
                .returning(Offer.__table__.c.id)
            )
        )

    friend_offer = offer(friend_id)
    ambassador_offer = None
    if not capped and ambassador.tg_id is not None:  # not for an erased ambassador
        ambassador_offer = offer(ambassador_id)
    session.execute(
        update(Referral.__table__)
        .where(Referral.id == referral_id)
        .values(capped=capped, friend_offer_id=friend_offer, ambassador_offer_id=ambassador_offer)
    )
    audit.insert_many(
        session,
        [
            audit.values(
                "referral.rewarded",
                at=now,
                client_id=friend_id,
                purchase_id=purchase_id,
                referral_id=referral_id,
                ambassador_id=ambassador_id,
                capped=capped,
            )
        ],
    )
    friend = session.execute(
        select(Client.tg_id, Client.reachable).where(Client.id == friend_id)
    ).one()
    messages = []
    if friend.tg_id is not None and friend.reachable:
        messages.append(_reward_message(referral_id, FRIEND, friend.tg_id, friend_id))
    if ambassador.tg_id is not None and ambassador.reachable:
        side = AMBASSADOR if ambassador_offer is not None else CAPPED
        messages.append(_reward_message(referral_id, side, ambassador.tg_id, ambassador_id))
    queue_messages(session, messages, now)
    return True


def _reward_message(referral_id: int, side: str, chat_id: int, client_id: int) -> OutboxMessage:
    # Ids only: the names and numbers are read when the message is sent.
    return OutboxMessage(
        f"referral:{referral_id}:{side}",
        REWARD_KIND,
        chat_id,
        {"referral_id": referral_id, "side": side},
        client_id,
    )


def revoke_first_purchase(
    session: Session, friend_id: int | None, purchase_id: int, now: datetime
) -> bool:
    """In the void's unit of work: when the voided purchase was a referred friend's first,
    take back both rewards not used yet and mark the referral revoked (for good)."""
    if friend_id is None:
        return False
    referrals = Referral.__table__.c
    row = session.execute(
        update(Referral.__table__)
        .where(
            referrals.friend_id == friend_id,
            referrals.first_purchase_id == purchase_id,
            referrals.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .returning(referrals.id, referrals.friend_offer_id, referrals.ambassador_offer_id)
    ).first()
    if row is None:
        return False
    referral_id, *offer_ids = row
    taken = [offer_id for offer_id in offer_ids if offer_id is not None]
    if taken:
        session.execute(
            update(Offer.__table__)
            .where(
                Offer.id.in_(taken),
                Offer.redeemed_purchase_id.is_(None),
                Offer.cancelled_at.is_(None),
            )
            .values(cancelled_at=now)
        )
    audit.insert_many(
        session,
        [
            audit.values(
                "referral.revoked",
                at=now,
                client_id=friend_id,
                purchase_id=purchase_id,
                referral_id=referral_id,
            )
        ],
    )
    return True


# ------------------------------------------------------------------------ reading


def reward_note(
    session: Session, settings: Settings, referral_id: int, side: str, now: datetime
) -> RewardNote | None:
    """A unit that reads what a reward message says (`await db.read(reward_note, …)`); None
    when the referral is gone or was revoked before the message went out."""
    referral = session.get(Referral, referral_id)
    if referral is None or referral.revoked_at is not None:
        return None
    friend_name = session.scalar(select(Client.first_name).where(Client.id == referral.friend_id))
    offer_id = referral.friend_offer_id if side == FRIEND else referral.ambassador_offer_id
    offer = session.get(Offer, offer_id) if offer_id is not None else None
    usable = offer is not None and offer.cancelled_at is None and offer.redeemed_at is None
    return RewardNote(
        side=side,
        friend_name=friend_name,
        bonus_pct=None if offer is None else offer.bonus_pct,
        valid_until=None if offer is None else offer.valid_until,
        usable=usable and offer is not None and offer.valid_until > now,
        cap=settings.growth.referral_max_per_month,
    )


def top_ambassadors(
    session: Session, start: datetime, end: datetime, limit: int = 5
) -> list[Ambassador]:
    """The members whose friends joined or were rewarded in [start, end), most friends joined
    first (a unit for `db.report`; the referrals table is small)."""
    in_period = and_(Referral.joined_at >= start, Referral.joined_at < end)
    rewarded = and_(_rewarded(), Referral.rewarded_at >= start, Referral.rewarded_at < end)
    joined_n = func.sum(case((in_period, 1), else_=0))
    rewarded_n = func.sum(case((rewarded, 1), else_=0))
    rows = session.execute(
        select(Client.first_name, joined_n, rewarded_n)
        .join(Client, Client.id == Referral.ambassador_id)
        .where(or_(in_period, and_(Referral.rewarded_at >= start, Referral.rewarded_at < end)))
        .group_by(Referral.ambassador_id, Client.first_name)
        .order_by(joined_n.desc(), rewarded_n.desc(), Referral.ambassador_id)
        .limit(limit)
    ).all()
    return [
        Ambassador(name, int(joined), int(rewarded_count)) for name, joined, rewarded_count in rows
    ]


def member_data(session: Session, client_id: int) -> dict[str, Any]:
    """The member's referral data for /mydata: their code, who invited them (first name
    only) and how many friends they invited."""
    invited_by = session.execute(
        select(Client.first_name)
        .join(Referral, Referral.ambassador_id == Client.id)
        .where(Referral.friend_id == client_id)
    ).first()
    invited = session.scalar(
        select(func.count(Referral.id)).where(Referral.ambassador_id == client_id)
    )
    return {
        "invite_code": _code_of(session, client_id),
        "invited_by": None if invited_by is None else {"first_name": invited_by[0]},
        "friends_invited": int(invited or 0),
    }


def erase(session: Session, client_id: int) -> None:
    """Erasure (services.privacy): the invite code goes (its link stops working); referral
    rows hold only ids and stay, so past periods' referral figures still add up."""
    session.execute(delete(InviteCode).where(InviteCode.client_id == client_id))


__all__ = [
    "AMBASSADOR",
    "CAPPED",
    "FRIEND",
    "REWARD_KIND",
    "Ambassador",
    "InviteSummary",
    "JoinOutcome",
    "OpenedInvite",
    "ReferralService",
    "RewardNote",
    "invite_code_of",
    "invite_link",
    "member_data",
    "month_bounds",
    "revoke_first_purchase",
    "reward_first_purchase",
    "reward_note",
    "top_ambassadors",
]
