"""The chain's branches: each shop with its address, hours, staff group and managers.

    branches = BranchService(db, settings, clock)
    await branches.add(BranchDraft(name="Tartu", staff_chat_id=-100222, address="Rüütli 1"))
    await branches.edit("Tartu", BranchChanges(hours="9–21", managers=(555,)))
    await branches.close("Tartu")
    await branches.listed()             # every branch, closed ones too, first one first
    await branches.by_chat(-100222)     # the open branch whose staff group this is
    await branches.managed_by(555)      # the open branches this user manages

Branch 1 is the shop the settings describe: its name, address, hours, phone, location and staff
group are STORE_* and STAFF_CHAT_ID, read at every start, so a one-shop install upgrades into a
chain of one with nothing to do, and its owner keeps editing `.env` as before. Its row holds
only what the settings do not say (managers, closed_at); `edit` refuses to change the rest.

The chain is small and read on every till update (which branch is this group?), so `listed`
is kept in memory for `ttl` seconds: a branch added, edited or closed from the CLI (another
process) reaches every worker within that time; a change made through this object is seen at
once. A chain "is a chain" (`is_chain`) once it has a second branch, closed ones included:
until then no user sees the word "branch".

Staff: a cashier writing in a branch's group is recorded (`seen`), so that in a private chat the
bot asks Telegram about the groups they work in, not every group of a chain of a hundred; a
cashier of several branches chooses the one they sell for (`choose`, `/branch`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from config import Settings
from db.database import Database
from db.models import MAIN_BRANCH_ID, Branch, BranchManager, StaffBranch
from db.sql import insert_ignoring
from services import audit
from services.clock import Clock
from services.errors import DomainError

__all__ = [
    "MAIN_BRANCH_ID",
    "BranchChanges",
    "BranchDraft",
    "BranchError",
    "BranchInfo",
    "BranchService",
    "distance_km",
    "find",
    "load",
    "name_key",
]

NAME_MAX = 64
CACHE_SEC = 60.0

_PROBLEMS = {
    "name": "a branch needs a name of 1 to {max} characters, not {text!r}",
    "name_taken": "a branch named {text!r} exists already: pick another name",
    "chat": "expected the staff group's numeric id, e.g. -1001234567890, not {text!r}",
    "chat_taken": "the group {text} is already the staff group of the branch {other!r}",
    "location": "expected both --lat and --lon, as numbers (-90…90, -180…180), not {text}",
    "unknown": "no branch named {text!r} (python -m bot branches list shows them)",
    "closed": "the branch {text!r} is closed already",
    "last": "the branch {text!r} is the last open one: a chain needs at least one shop",
    "settings": (
        "the first shop's {text} comes from the settings (.env): change {setting} there and restart"
    ),
    "manager": "expected Telegram user ids such as 123456789, not {text!r}",
    "field": "{text} is too long (at most {max} characters)",
}

# What branch 1 takes from the settings, and which setting says it.
_FROM_SETTINGS = {
    "name": "STORE_NAME",
    "address": "STORE_ADDRESS",
    "hours": "STORE_HOURS",
    "phone": "STORE_PHONE",
    "latitude": "STORE_LATITUDE",
    "longitude": "STORE_LONGITUDE",
    "staff_chat_id": "STAFF_CHAT_ID",
}
_LIMITS = {"address": 256, "hours": 128, "phone": 32}


class BranchError(DomainError):
    """A branch command was refused; `reason` is a key of `_PROBLEMS`. Nothing was written."""

    def __init__(self, reason: str, text: str = "", **extra: Any) -> None:
        super().__init__(_PROBLEMS[reason].format(text=text, max=NAME_MAX, **extra))
        self.reason = reason
        self.text = text


@dataclass(frozen=True)
class BranchInfo:
    """A branch as users see it (branch 1 with the settings' details)."""

    id: int
    name: str
    address: str = ""
    hours: str = ""
    phone: str = ""
    latitude: float | None = None
    longitude: float | None = None
    staff_chat_id: int | None = None
    managers: tuple[int, ...] = ()
    closed_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    @property
    def is_main(self) -> bool:
        return self.id == MAIN_BRANCH_ID

    @property
    def located(self) -> bool:
        return self.latitude is not None and self.longitude is not None


@dataclass(frozen=True)
class BranchDraft:
    """A new branch, as the owner typed it (checked by `BranchService.add`)."""

    name: str
    staff_chat_id: int | str
    address: str = ""
    hours: str = ""
    phone: str = ""
    latitude: float | str | None = None
    longitude: float | str | None = None
    managers: Sequence[int | str] = ()


@dataclass(frozen=True)
class BranchChanges:
    """What `edit` changes; None leaves a field as it is (`clear_location` removes the pin)."""

    name: str | None = None
    staff_chat_id: int | str | None = None
    address: str | None = None
    hours: str | None = None
    phone: str | None = None
    latitude: float | str | None = None
    longitude: float | str | None = None
    clear_location: bool = False
    managers: Sequence[int | str] | None = None


def main_branch(settings: Settings, row: Any = None, managers: tuple[int, ...] = ()) -> BranchInfo:
    """Branch 1 as the settings describe it."""
    store = settings.store
    return BranchInfo(
        id=MAIN_BRANCH_ID,
        name=store.name,
        address=store.address,
        hours=store.hours,
        phone=store.phone,
        latitude=store.latitude,
        longitude=store.longitude,
        staff_chat_id=settings.telegram.staff_chat_id,
        managers=managers,
        closed_at=None if row is None else row.closed_at,
    )


def load(session: Session, settings: Settings) -> list[BranchInfo]:
    """Every branch, branch 1 first, then by id (a unit's step: reports name branches)."""
    managers: dict[int, list[int]] = {}
    for branch_id, tg_id in session.execute(
        select(BranchManager.branch_id, BranchManager.tg_id).order_by(BranchManager.tg_id)
    ):
        managers.setdefault(branch_id, []).append(tg_id)
    found = []
    for row in session.scalars(select(Branch).order_by(Branch.id)):
        own = tuple(managers.get(row.id, ()))
        if row.id == MAIN_BRANCH_ID:
            found.append(main_branch(settings, row, own))
            continue
        found.append(
            BranchInfo(
                id=row.id,
                name=row.name,
                address=row.address,
                hours=row.hours,
                phone=row.phone,
                latitude=row.latitude,
                longitude=row.longitude,
                staff_chat_id=row.staff_chat_id,
                managers=own,
                closed_at=row.closed_at,
            )
        )
    if not found or found[0].id != MAIN_BRANCH_ID:  # a database from before the branches
        found.insert(0, main_branch(settings))
    return found


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The great-circle distance (haversine, Earth radius 6371 km)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(a)))


def parse_chat_id(value: int | str) -> int:
    """A group's id: a negative integer (supergroups are -100…)."""
    text = str(value).strip()
    try:
        chat_id = int(text)
    except ValueError:
        raise BranchError("chat", text) from None
    if chat_id >= 0 or len(text) > 20:
        raise BranchError("chat", text)
    return chat_id


def parse_managers(values: Iterable[int | str]) -> tuple[int, ...]:
    found: list[int] = []
    for value in values:
        text = str(value).strip()
        if not text:
            continue
        if not text.isdigit() or len(text) > 15 or int(text) == 0:
            raise BranchError("manager", text)
        if int(text) not in found:
            found.append(int(text))
    return tuple(found)


def parse_location(
    lat: float | str | None, lon: float | str | None
) -> tuple[float | None, float | None]:
    if lat is None and lon is None:
        return None, None
    shown = f"{lat!r} {lon!r}"
    if lat is None or lon is None:
        raise BranchError("location", shown)
    try:
        la, lo = float(lat), float(lon)
    except ValueError:
        raise BranchError("location", shown) from None
    if not (-90 <= la <= 90 and -180 <= lo <= 180) or math.isnan(la) or math.isnan(lo):
        raise BranchError("location", shown)
    return la, lo


def _name(text: str) -> str:
    name = " ".join((text or "").split())
    if not name or len(name) > NAME_MAX:
        raise BranchError("name", text or "")
    return name


def _text(name: str, value: str) -> str:
    value = " ".join((value or "").split())
    if len(value) > _LIMITS[name]:
        raise BranchError("field", name, max=_LIMITS[name])
    return value


class BranchService:
    """The chain's branches; each method is one unit of work (`db.database`)."""

    def __init__(
        self, db: Database, settings: Settings, clock: Clock, ttl: float = CACHE_SEC
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.ttl = ttl
        self._cached: tuple[list[BranchInfo], float] | None = None

    # ---------------------------------------------------------------- reading (cached)
    async def listed(self) -> list[BranchInfo]:
        """Every branch, closed ones too, branch 1 first."""
        now = time.monotonic()
        if self._cached is not None and self._cached[1] > now:
            return self._cached[0]
        found = await self.db.read(load, self.settings)
        self._cached = (found, now + self.ttl)
        return found

    def forget(self) -> None:
        self._cached = None

    async def open(self) -> list[BranchInfo]:
        return [b for b in await self.listed() if b.is_open]

    async def get(self, branch_id: int) -> BranchInfo | None:
        return next((b for b in await self.listed() if b.id == branch_id), None)

    async def named(self, name: str) -> BranchInfo:
        """The branch called `name` (any letter case, spaces squeezed), closed ones too;
        `BranchError("unknown")` if there is none."""
        return find(await self.listed(), name)

    async def by_chat(self, chat_id: int) -> BranchInfo | None:
        """The open branch whose staff group `chat_id` is."""
        return next(
            (b for b in await self.listed() if b.is_open and b.staff_chat_id == chat_id), None
        )

    async def managed_by(self, tg_id: int) -> list[BranchInfo]:
        return [b for b in await self.listed() if b.is_open and tg_id in b.managers]

    async def is_chain(self) -> bool:
        """More than one branch, closed ones included: the only time users see branches."""
        return len(await self.listed()) > 1

    async def names(self) -> dict[int, str]:
        return {b.id: b.name for b in await self.listed()}

    # ---------------------------------------------------------------- the owner's changes
    async def add(self, draft: BranchDraft, actor_id: int | None = None) -> BranchInfo:
        name = _name(draft.name)
        chat_id = parse_chat_id(draft.staff_chat_id)
        lat, lon = parse_location(draft.latitude, draft.longitude)
        managers = parse_managers(draft.managers)
        values = {
            "name": name,
            "staff_chat_id": chat_id,
            "address": _text("address", draft.address),
            "hours": _text("hours", draft.hours),
            "phone": _text("phone", draft.phone),
            "latitude": lat,
            "longitude": lon,
        }
        found = await self.db.write(self._add, values, managers, actor_id, self.clock())
        self.forget()
        return found

    def _add(
        self,
        session: Session,
        values: dict[str, Any],
        managers: tuple[int, ...],
        actor_id: int | None,
        now: datetime,
    ) -> BranchInfo:
        existing = load(session, self.settings)
        self._check_unique(existing, None, values["name"], values["staff_chat_id"])
        branch_id = session.scalar(
            insert(Branch).values(**values, created_at=now).returning(Branch.id)
        )
        assert branch_id is not None
        self._set_managers(session, branch_id, managers, now)
        audit.record(
            session, "branch_added", at=now, actor_id=actor_id, branch=values["name"], id=branch_id
        )
        found = next(b for b in load(session, self.settings) if b.id == branch_id)
        session.commit()
        return found

    async def edit(
        self, name: str, changes: BranchChanges, actor_id: int | None = None
    ) -> BranchInfo:
        values: dict[str, Any] = {}
        if changes.name is not None:
            values["name"] = _name(changes.name)
        if changes.staff_chat_id is not None:
            values["staff_chat_id"] = parse_chat_id(changes.staff_chat_id)
        for key in ("address", "hours", "phone"):
            given = getattr(changes, key)
            if given is not None:
                values[key] = _text(key, given)
        if changes.clear_location:
            values["latitude"] = values["longitude"] = None
        elif changes.latitude is not None or changes.longitude is not None:
            values["latitude"], values["longitude"] = parse_location(
                changes.latitude, changes.longitude
            )
        managers = None if changes.managers is None else parse_managers(changes.managers)
        found = await self.db.write(self._edit, name, values, managers, actor_id, self.clock())
        self.forget()
        return found

    def _edit(
        self,
        session: Session,
        name: str,
        values: dict[str, Any],
        managers: tuple[int, ...] | None,
        actor_id: int | None,
        now: datetime,
    ) -> BranchInfo:
        existing = load(session, self.settings)
        branch = find(existing, name)
        if branch.is_main:
            for key in values:
                raise BranchError("settings", key.replace("_", " "), setting=_FROM_SETTINGS[key])
        self._check_unique(existing, branch.id, values.get("name"), values.get("staff_chat_id"))
        if values:
            session.execute(update(Branch).where(Branch.id == branch.id).values(**values))
        if managers is not None:
            session.execute(delete(BranchManager).where(BranchManager.branch_id == branch.id))
            self._set_managers(session, branch.id, managers, now)
        changed = sorted(values) + (["managers"] if managers is not None else [])
        audit.record(
            session, "branch_edited", at=now, actor_id=actor_id, branch=branch.name, changed=changed
        )
        found = next(b for b in load(session, self.settings) if b.id == branch.id)
        session.commit()
        return found

    async def close(self, name: str, actor_id: int | None = None) -> BranchInfo:
        found = await self.db.write(self._close, name, actor_id, self.clock())
        self.forget()
        return found

    def _close(
        self, session: Session, name: str, actor_id: int | None, now: datetime
    ) -> BranchInfo:
        existing = load(session, self.settings)
        branch = find(existing, name)
        if not branch.is_open:
            raise BranchError("closed", branch.name)
        if sum(1 for b in existing if b.is_open) <= 1:
            raise BranchError("last", branch.name)
        session.execute(update(Branch).where(Branch.id == branch.id).values(closed_at=now))
        audit.record(session, "branch_closed", at=now, actor_id=actor_id, branch=branch.name)
        session.commit()
        return replace(branch, closed_at=now)

    def _check_unique(
        self,
        existing: list[BranchInfo],
        own_id: int | None,
        name: str | None,
        chat_id: int | None,
    ) -> None:
        for other in existing:
            if other.id == own_id:
                continue
            if name is not None and name_key(other.name) == name_key(name):
                raise BranchError("name_taken", name)
            if chat_id is not None and other.staff_chat_id == chat_id:
                raise BranchError("chat_taken", str(chat_id), other=other.name)

    @staticmethod
    def _set_managers(
        session: Session, branch_id: int, managers: tuple[int, ...], now: datetime
    ) -> None:
        if managers:
            session.execute(
                insert(BranchManager),
                [{"branch_id": branch_id, "tg_id": m, "created_at": now} for m in managers],
            )

    # ---------------------------------------------------------------- staff
    async def seen(self, tg_id: int, branch_id: int) -> None:
        """Record that `tg_id` wrote in the branch's group (once; later calls change nothing)."""
        await self.db.write(_seen, tg_id, branch_id, self.clock())

    async def staff_branches(self, tg_id: int) -> list[int]:
        """The branches `tg_id` was seen in, the one they chose first."""
        return await self.db.read(_staff_branches, tg_id)

    async def chosen(self, tg_id: int) -> int | None:
        """The branch `tg_id` last chose with `choose`, if any."""
        return await self.db.read(_chosen, tg_id)

    async def choose(self, tg_id: int, branch_id: int) -> None:
        """`tg_id` sells for `branch_id` in a private chat from now on."""
        await self.db.write(_choose, tg_id, branch_id, self.clock())


def name_key(name: str) -> str:
    """A branch name as branches are told apart and looked up: spaces squeezed, any case."""
    return " ".join((name or "").split()).casefold()


def find(existing: list[BranchInfo], name: str) -> BranchInfo:
    """The branch of `existing` called `name` (`name_key`); `BranchError("unknown")`."""
    key = name_key(name)
    for branch in existing:
        if name_key(branch.name) == key:
            return branch
    raise BranchError("unknown", name or "")


def _seen(session: Session, tg_id: int, branch_id: int, now: datetime) -> None:
    _note_seen(session, tg_id, branch_id, now)
    session.commit()


def _note_seen(session: Session, tg_id: int, branch_id: int, now: datetime) -> None:
    statement = insert_ignoring(
        StaffBranch.__table__, "tg_id", "branch_id", dialect=session.get_bind().dialect.name
    )
    session.execute(statement.values(tg_id=tg_id, branch_id=branch_id, seen_at=now))


def _staff_branches(session: Session, tg_id: int) -> list[int]:
    rows = session.execute(
        select(StaffBranch.branch_id)
        .where(StaffBranch.tg_id == tg_id)
        .order_by(StaffBranch.chosen_at.desc().nulls_last(), StaffBranch.branch_id)
    )
    return [row.branch_id for row in rows]


def _chosen(session: Session, tg_id: int) -> int | None:
    return session.scalar(
        select(StaffBranch.branch_id)
        .where(StaffBranch.tg_id == tg_id, StaffBranch.chosen_at.is_not(None))
        .order_by(StaffBranch.chosen_at.desc())
        .limit(1)
    )


def _choose(session: Session, tg_id: int, branch_id: int, now: datetime) -> None:
    _note_seen(session, tg_id, branch_id, now)
    session.execute(
        update(StaffBranch)
        .where(StaffBranch.tg_id == tg_id, StaffBranch.branch_id == branch_id)
        .values(chosen_at=now)
    )
    session.commit()
