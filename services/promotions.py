"""Happy hours: +N % at the till on some weekdays between two store times, until a last day.

    promos = PromotionService(db, settings, clock)
    await promos.add("Morning", bonus_pct=3, weekdays=parse_days("mon,tue"),
                     starts=parse_time("10:00"), ends=parse_time("12:00"), until=None,
                     branch_id=None)  # None: every branch of a chain; an id: that one only
    await promos.listed()                # the running ones (and ended ones with ended=True)
    await promos.end("Morning")

The till asks `active(session, now, tz, branch_id)` inside its quote's unit of work: of the
promotions for every branch or for the quote's branch, the one whose window holds `now` in
store time (the highest bonus when two overlap). Its bonus is added to the card's level and a
personal offer, under the store's cap, and shown as its own line; the purchase keeps which
promotion it had (`purchases.promo_id`, `promo_pct`), so the KPIs count the purchases and the
discount under promotions (a branch's KPIs its own purchases).

A chain of shops: a promotion is for every branch (`branch_id` None) or for one open branch; a
name is unique in the whole chain; ending one works the same for both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config import Settings
from db.database import Database
from db.models import Promotion
from db.prepared import Prepared
from services import audit, branches
from services.clock import Clock
from services.errors import DomainError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"([01]?\d|2[0-4]):([0-5]\d)")


_PROBLEMS = {
    "name": "a promotion needs a name of 1 to 64 characters, not {text!r}",
    "bonus": "the bonus must be 1 to 99 %, not {text}",
    "days": "expected days such as mon,tue or mon-fri or all, not {text!r}",
    "time": "expected a store time HH:MM, not {text!r}",
    "window": "the hours must start before they end, within one day: not {text}",
    "until": "the last day {text} is already past",
    "branch": "no branch {text} (python -m bot branches list shows them)",
    "closed": "the branch {text!r} is closed: nothing is sold there any more",
}


class InvalidPromotion(DomainError):
    """A promotion's settings are malformed; `field` names which, `text` what was given."""

    def __init__(self, field: str, text: str) -> None:
        super().__init__(_PROBLEMS[field].format(text=text))
        self.field = field
        self.text = text


class PromotionExists(DomainError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a promotion named {name!r} exists already: pick another name")
        self.name = name


class PromotionNotFound(DomainError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no running promotion named {name!r}")
        self.name = name


@dataclass(frozen=True)
class PromotionView:
    id: int
    name: str
    bonus_pct: int
    weekdays: int
    starts: int  # minutes after midnight, store time
    ends: int
    until: date | None
    ended_at: datetime | None
    branch_id: int | None = None  # one branch's; None: every branch

    @property
    def days(self) -> tuple[str, ...]:
        return tuple(day for i, day in enumerate(DAYS) if self.weekdays & (1 << i))


@dataclass(frozen=True)
class ActivePromotion:
    id: int
    name: str
    bonus_pct: int


def parse_days(text: str) -> int:
    """`mon,tue`, `mon-fri`, `sat,sun` or `all` (English three-letter names) → a weekday mask
    (bit 0 Monday … bit 6 Sunday)."""
    mask = 0
    for part in (text or "").lower().replace(" ", "").split(","):
        if part in ("all", "daily"):
            mask |= 0b1111111
            continue
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise InvalidPromotion("days", text)
        start, stop = DAYS.index(first), DAYS.index(last or first)
        if stop < start:
            raise InvalidPromotion("days", text)
        for day in range(start, stop + 1):
            mask |= 1 << day
    if not mask:
        raise InvalidPromotion("days", text)
    return mask


def parse_time(text: str) -> int:
    """`10:00`, `9:30`, `24:00` → minutes after midnight."""
    match = _TIME.fullmatch((text or "").strip())
    if match is None:
        raise InvalidPromotion("time", text)
    minutes = int(match[1]) * 60 + int(match[2])
    if minutes > 24 * 60:
        raise InvalidPromotion("time", text)
    return minutes


def format_time(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def check(name: str, bonus_pct: int, starts: int, ends: int) -> str:
    """The promotion's name, trimmed; its bonus and window checked."""
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise InvalidPromotion("name", name)
    if not 1 <= bonus_pct <= 99:
        raise InvalidPromotion("bonus", str(bonus_pct))
    if not 0 <= starts < ends <= 24 * 60:
        raise InvalidPromotion("window", f"{format_time(starts)}-{format_time(ends)}")
    return name


def active(session: Session, now: datetime, tz: ZoneInfo, branch_id: int) -> ActivePromotion | None:
    """The promotion running at `now` (store time) for a sale in `branch_id` — one for every
    branch or for that one —, the highest bonus first (a unit's step)."""
    local = now.astimezone(tz)
    row = (
        _active_statement()
        .execute(
            session,
            {
                "p_day": 1 << local.weekday(),
                "p_minute": local.hour * 60 + local.minute,
                "p_today": local.date(),
                "p_branch": branch_id,
            },
        )
        .first()
    )
    return None if row is None else ActivePromotion(row.id, row.name, row.bonus_pct)


@cache
def _active_statement() -> Prepared:
    p = Promotion.__table__.c
    return Prepared(
        select(p.id, p.name, p.bonus_pct)
        .where(
            p.ended_at.is_(None),
            p.weekdays.op("&")(bindparam("p_day")) != 0,
            p.starts_min <= bindparam("p_minute"),
            p.ends_min > bindparam("p_minute"),
            (p.until.is_(None)) | (p.until >= bindparam("p_today", type_=Promotion.until.type)),
            (p.branch_id.is_(None)) | (p.branch_id == bindparam("p_branch")),
        )
        .order_by(p.bonus_pct.desc(), p.id)
        .limit(1)
    )


class PromotionService:
    """The owner's promotions: each method is one unit of work (`db.database`)."""

    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock

    async def add(
        self,
        name: str,
        *,
        bonus_pct: int,
        weekdays: int,
        starts: int,
        ends: int,
        until: date | None,
        branch_id: int | None = None,
        actor_id: int | None = None,
    ) -> PromotionView:
        """A new promotion, for every branch (`branch_id` None) or for that open branch."""
        name = check(name, bonus_pct, starts, ends)
        now = self.clock()
        if until is not None and until < now.astimezone(self.settings.store.tz).date():
            raise InvalidPromotion("until", until.isoformat())
        return await self.db.write(
            self._add, name, bonus_pct, weekdays, starts, ends, until, branch_id, actor_id, now
        )

    def _add(
        self,
        session: Session,
        name: str,
        bonus_pct: int,
        weekdays: int,
        starts: int,
        ends: int,
        until: date | None,
        branch_id: int | None,
        actor_id: int | None,
        now: datetime,
    ) -> PromotionView:
        if session.scalar(select(Promotion.id).where(Promotion.name == name)) is not None:
            raise PromotionExists(name)
        branch_name = None
        if branch_id is not None:
            branch = next(
                (b for b in branches.load(session, self.settings) if b.id == branch_id), None
            )
            if branch is None:
                raise InvalidPromotion("branch", f"#{branch_id}")
            if not branch.is_open:
                raise InvalidPromotion("closed", branch.name)
            branch_name = branch.name
        promotion = Promotion(
            name=name,
            bonus_pct=bonus_pct,
            weekdays=weekdays,
            starts_min=starts,
            ends_min=ends,
            until=until,
            branch_id=branch_id,
            created_at=now,
        )
        session.add(promotion)
        try:
            session.flush()
        except IntegrityError:  # the same name added at the same moment elsewhere
            session.rollback()
            raise PromotionExists(name) from None
        extra = {} if branch_name is None else {"branch": branch_name}
        audit.record(
            session, "promo.added", at=now, actor_id=actor_id, promo=name, pct=bonus_pct, **extra
        )
        view = _view(promotion)
        session.commit()
        return view

    async def listed(self, *, ended: bool = False) -> list[PromotionView]:
        """The running promotions (and the ended ones too with `ended=True`), by name."""
        return await self.db.read(self._listed, ended)

    def _listed(self, session: Session, ended: bool) -> list[PromotionView]:
        query = select(Promotion).order_by(Promotion.ended_at.is_not(None), Promotion.name)
        if not ended:
            query = query.where(Promotion.ended_at.is_(None))
        return [_view(p) for p in session.scalars(query)]

    async def end(self, which: str | int, actor_id: int | None = None) -> PromotionView:
        """End a running promotion, named (the CLI) or by id (the owner's ⏹ button)."""
        key = which.strip() if isinstance(which, str) else which
        return await self.db.write(self._end, key, actor_id, self.clock())

    def _end(
        self, session: Session, which: str | int, actor_id: int | None, now: datetime
    ) -> PromotionView:
        match = Promotion.name == which if isinstance(which, str) else Promotion.id == which
        promotion = session.scalar(select(Promotion).where(match, Promotion.ended_at.is_(None)))
        if promotion is None:
            raise PromotionNotFound(str(which))
        promotion.ended_at = now
        audit.record(session, "promo.ended", at=now, actor_id=actor_id, promo=promotion.name)
        view = _view(promotion)
        session.commit()
        return view


def _view(p: Any) -> PromotionView:
    return PromotionView(
        id=p.id,
        name=p.name,
        bonus_pct=p.bonus_pct,
        weekdays=p.weekdays,
        starts=p.starts_min,
        ends=p.ends_min,
        until=p.until,
        ended_at=p.ended_at,
        branch_id=p.branch_id,
    )
