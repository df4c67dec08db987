"""Proactive messages: one outbox table, one sender.

Everything the bot says outside the conversation at hand (surveys, offers, digests, alerts, a
sale's receipt and its staff-chat line, notes to a card's holder) is a `Delivery` row first
(`queue_messages` inside the caller's unit of work, or `Outbox.post`; idempotent by `key`).
A row holds **facts, not text**: its kind and the ids and numbers its message needs (a
purchase id and its amounts, a card number, a survey id). The bot layer's `Renderer`
(`handlers/outbox.py`) turns them into the message when it is sent, in the recipient's
language as it is then, so no translation or formatting runs inside the transaction that
queues it. `DeliverySender.deliver_due` sends what is due:

* quiet hours (store time): nothing goes out, due rows are moved to the end of the window;
* marketing rows to opted-out, unreachable or erased clients are `skipped`;
* rate limits are token buckets: `delivery_rate_global` msg/s overall, `delivery_rate_chat`
  msg/s per chat, `delivery_rate_group_per_min` per group chat (negative id); waiting is
  `asyncio.sleep`, never a busy loop. Messages the bot sends outside this sender (the till
  answering in the staff group, on any worker) are charged to the same buckets
  (`Outbox.note_sent`), so proactive messages to that chat wait and the till's replies keep
  their room;
* several due rows of a combined kind (`COMBINED_KINDS`: the staff group's sale lines) for one
  chat go out as one message, their lines joined oldest first, as many as fit in
  `MESSAGE_LIMIT` — one message every 3 s carries a whole rush, where one line per message
  at the group's 20 a minute fell behind;
* the `Transport` says how a send went: `RetryAfter` (429) → every send pauses for its
  seconds and the same message is retried; `TemporaryFailure` (5xx, network errors, answers
  that are not the Bot API's JSON: a proxy's HTML error page, a truncated body) → exponential
  backoff, `failed` after `delivery_max_attempts`; `Unreachable` (403) → `unreachable` and
  `client.reachable = False`; `Rejected` (other 4xx) → `failed`.

Exactly-once, as far as Telegram allows. A batch of due rows is *claimed* by one conditional
update (status pending and due → `attempts + 1`, `next_attempt_at = now + lease`, `RETURNING`
the rows actually taken) in its own short transaction, so two senders (the bot's worker and
`jobs run deliveries`) never both send a row. Right after each API call its outcome (`sent_at`,
`message_id`) is committed in another short transaction of its own; the rows of a combined
message are claimed together and recorded together, with that message's id. A crash leaves
claimed, unsent rows: when their lease runs out they are sent then — nothing is lost. The one
window we cannot close is a crash after Telegram accepted a message and before our commit (a
few milliseconds): there we err on the side of **at-least-once** and that message is sent
again after the restart; at most the messages in flight at that instant (`concurrency`, 8) can
repeat. A crash at any other moment neither loses nor repeats anything. (At-most-once would
instead silently lose surveys and owners' alerts; a repeated offer text is harmless because
the offer is one database row that the till applies once.)

A message sent but not recorded because the recording failed (the database locked for longer
than `busy_timeout`, any error in that unit) is never sent again by this process: its rows are
kept aside (`_unrecorded`, left out of every claim) and the record is retried with backoff for
as long as the process lives, logged once. A graceful stop (`DeliveryWorker.stop`) lets the
messages in flight be recorded and then flushes those pending records, so an ordinary restart
repeats nothing; rows it had claimed but not begun to send are given back, due at once for the
next process instead of after their lease. A one-off pass (`jobs run deliveries`) does the same
before it returns.

Up to `concurrency` sends are in flight at once (Telegram's latency would otherwise cap a
sequential sender far below 25 msg/s); the buckets still pace them.

No aiogram here (`tests/test_layers.py` fails on any import of it under `services/`): the bot
layer injects how rows read (`Renderer`, `handlers/outbox.py`) and how messages go out
(`Transport`, `bot/telegram_transport.py`); messages are plain data (`Rendered`, `Button`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.orm import Session

from db.database import Database
from db.models import Client, Delivery, DeliveryStatus, Survey, UTCDateTime, utcnow
from db.notify import Listener, notify, publish
from db.prepared import Prepared
from db.sql import insert_ignoring
from services.clock import Clock, utc_now

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings

log = logging.getLogger(__name__)

# Replies to something a person is doing right now (a purchase's or a void's receipt at the
# till, its line in the staff chat; `services.sales`): quiet hours are for unprompted
# messages, so these still go out.
TRANSACTIONAL_KINDS = frozenset({"receipt", "staff_log"})

# Kinds whose due rows for one chat are sent as one message, one line each, oldest first: the
# staff group gets 20 messages a minute (shared with the till), a busy till sells faster.
# Their renderers return plain text (no buttons, no photo).
COMBINED_KINDS = frozenset({"staff_log"})
# Telegram's longest text message. Counted in UTF-16 code units on the HTML source, which is
# never shorter than the text Telegram counts (tags and entities are not counted there).
MESSAGE_LIMIT = 4096
_COMBINE_ROWS = 200  # rows looked at for one combined message (a line is 40-100 characters)
# A combined row is claimed before it is rendered: its line is reckoned this long (a sale's
# line is rarely shorter), and the lines that do not fit once rendered are given back.
LINE_ESTIMATE = 48

# How long a claimed row stays invisible to other senders; after a crash it is retried then.
DEFAULT_LEASE = timedelta(minutes=2)
BACKOFF_CAP = timedelta(hours=1)
_BATCH = 500

# Retrying the record of a message that was sent: first after 0.1 s, doubling up to 30 s.
RECORD_RETRY_FIRST = 0.1
RECORD_RETRY_CAP = 30.0
# How long a graceful stop (or the end of a one-off pass) keeps trying to record such sends.
FLUSH_TIMEOUT = 30.0


# ----------------------------------------------------------------------------- enqueue
# Every process's worker listens here (PostgreSQL): a message queued by one process wakes the
# senders of all of them when its transaction commits (`db.notify`).
CHANNEL = "loyalty_outbox"
# And here, for the messages other processes sent straight to a chat (the till answering in
# the staff group on a worker that is not the leader): the payload is the chat's id, charged
# to the sender's buckets (`Outbox.note_sent`).
SENT_CHANNEL = "loyalty_sent"


@cache
def _enqueue(dialect: str) -> Prepared:
    """Queue a delivery unless one with its key exists (idempotent by key)."""
    return Prepared(insert_ignoring(Delivery.__table__, "key", dialect=dialect))


def _delivery_row(message: OutboxMessage, due_at: datetime) -> dict[str, Any]:
    return {
        "created_at": utcnow(),
        "key": message.key,
        "kind": message.kind,
        "chat_id": message.chat_id,
        "client_id": message.client_id,
        "marketing": message.marketing,
        "payload": message.payload,
        "status": DeliveryStatus.PENDING.value,
        "due_at": due_at,
        "attempts": 0,
    }


def queue_messages(
    session: Session, messages: Sequence[OutboxMessage], due_at: datetime
) -> list[bool]:
    """Queue messages inside the caller's unit of work (the caller commits): for each
    message, False if one with its key was already queued. On PostgreSQL the delivery workers
    of every process are woken when the caller commits."""
    statement = _enqueue(session.get_bind().dialect.name)
    added = [bool(statement.execute(session, _delivery_row(m, due_at)).rowcount) for m in messages]
    if any(added):
        notify(session, CHANNEL)
    return added


# ------------------------------------------------------------------------- quiet hours


def quiet_until(now: datetime, window: tuple[dtime, dtime] | None, tz: ZoneInfo) -> datetime | None:
    """The end of the quiet window (UTC) if `now` falls inside it, else None."""
    if window is None:
        return None
    start, end = window
    if start == end:
        return None
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside:
        return None
    day = local.date()
    if start > end and t >= start:  # evening part of a window that wraps midnight
        day = day + timedelta(days=1)
    return datetime.combine(day, end, tz).astimezone(UTC)


# ------------------------------------------------------------------------ rate limits


class TokenBucket:
    """`rate` tokens per second, at most `capacity` saved up. Time comes from the caller."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def delay(self, now: float) -> float:
        """Seconds until one token is available (0 if now)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0

    def charge(self, now: float, floor: float) -> None:
        """A token spent by someone else: taken even if there is none, down to `floor`."""
        self._refill(now)
        self.tokens = max(floor, self.tokens - 1.0)

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.capacity


class RateLimiter:
    """Global, per-chat and per-group buckets, plus the global pause after a 429."""

    def __init__(
        self,
        global_rate: float,
        chat_rate: float,
        group_per_min: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.monotonic = monotonic
        now = monotonic()
        # A small burst for the global bucket (a tenth of a second's worth) keeps the pace
        # close to the cap; chats and groups get no burst at all.
        self.global_bucket = TokenBucket(global_rate, max(1.0, global_rate / 10), now)
        self.chat_rate = chat_rate
        self.group_rate = group_per_min / 60.0
        self.chats: dict[int, TokenBucket] = {}
        self.paused_until = 0.0

    def _chat(self, chat_id: int) -> TokenBucket:
        bucket = self.chats.get(chat_id)
        if bucket is None:
            if len(self.chats) > 10_000:  # forget idle chats (their buckets are full anyway)
                now = self.monotonic()
                self.chats = {k: b for k, b in self.chats.items() if not b.full(now)}
            rate = self.group_rate if chat_id < 0 else self.chat_rate
            bucket = self.chats[chat_id] = TokenBucket(rate, 1.0, self.monotonic())
        return bucket

    def chat_delay(self, chat_id: int) -> float:
        return self._chat(chat_id).delay(self.monotonic())

    def global_delay(self) -> float:
        now = self.monotonic()
        return max(self.paused_until - now, self.global_bucket.delay(now))

    def take(self, chat_id: int) -> None:
        now = self.monotonic()
        self.global_bucket.take(now)
        self._chat(chat_id).take(now)

    def note_sent(self, chat_id: int) -> None:
        """A message went to this chat outside the sender (the till answering a cashier):
        charge the chat's bucket (a group's 20 a minute) and the global one, so the sender's
        next message there waits and the till's own replies come first. The debt is capped
        at a minute's worth for a chat (Telegram counts a group's messages per minute) and a
        second's worth overall, so a burst cannot hold proactive messages back for longer."""
        now = self.monotonic()
        bucket = self._chat(chat_id)
        bucket.charge(now, floor=-bucket.rate * 60.0)
        self.global_bucket.charge(now, floor=-self.global_bucket.rate)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, self.monotonic() + seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls(
            settings.delivery.rate_global,
            settings.delivery.rate_chat,
            settings.delivery.rate_group_per_min,
        )


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Button:
    """A button under a message: its label and the callback data it sends back."""

    text: str
    data: str


@dataclass(frozen=True)
class Rendered:
    """What to send: HTML text (a caption when there is a photo), rows of buttons, an optional
    photo."""

    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()
    photo: bytes | None = None
    photo_name: str = "image.png"


@dataclass(frozen=True)
class Outgoing:
    """A claimed delivery handed to the renderer (plain values, no live ORM state)."""

    id: int
    key: str
    kind: str
    chat_id: int
    payload: dict[str, Any]
    client_id: int | None
    language: str | None = None  # the recipient's stored language, if they are a client
    attempts: int = 1


# (database, delivery, settings, now) → what to send, or None when it is no longer wanted.
# A renderer that reads does so in units of work (`await db.read(unit, …)`).
Renderer = Callable[[Database, Outgoing, "Settings", datetime], Awaitable[Rendered | None]]


# --------------------------------------------------------------------------- transport


class SendFailed(Exception):
    """A message did not go out (or may not have); the subclass says what the sender does."""


class RetryAfter(SendFailed):
    """Flood control (Telegram's 429): every send pauses `seconds`, then the same message goes
    again; not a failed attempt."""

    def __init__(self, seconds: float, detail: str = "") -> None:
        super().__init__(detail or f"retry after {seconds} s")
        self.seconds = seconds


class Unreachable(SendFailed):
    """The chat refuses the bot (403: blocked, kicked): the row is `unreachable`, and so is
    its client."""


class TemporaryFailure(SendFailed):
    """It may not have gone out (5xx, a network error, an answer that is not the API's):
    tried again with backoff."""


class Rejected(SendFailed):
    """Refused for good (a 4xx other than 403 and 429): `failed`, not tried again."""


class Transport(Protocol):
    """How a rendered message reaches a chat: `bot/telegram_transport.py` (the Bot API)."""

    async def send(self, chat_id: int, message: Rendered) -> int:
        """Send it; return the message's id, or raise one of the `SendFailed` outcomes."""
        ...


# ---------------------------------------------------------------------------- sending


@dataclass
class DeliveryStats:
    sent: int = 0  # deliveries (rows) sent; a combined message counts each of its lines
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    retried: int = 0  # 5xx / network errors / broken answers rescheduled with backoff
    rate_limited: int = 0  # 429s received
    quiet_deferred: int = 0
    errors: list[str] = field(default_factory=list)

    def merge(self, other: DeliveryStats) -> None:
        for name in (
            "sent",
            "failed",
            "unreachable",
            "skipped",
            "retried",
            "rate_limited",
            "quiet_deferred",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _due_at() -> Any:
    """When a pending row is due: its retry time, else its first due time."""
    return func.coalesce(Delivery.__table__.c.next_attempt_at, Delivery.__table__.c.due_at)


def _due(now: Any) -> Any:
    return _due_at() <= now


# The sender's own statements are plain Core over the table: no ORM bookkeeping per message.
_rows = Delivery.__table__.c


@cache
def _due_rows_statement() -> Prepared:
    """The oldest due pending row of each chat, with how many that chat has due, oldest first.
    One row per chat because a batch sends one message per chat anyway; and so a chat's
    backlog (a staff group held to 20 messages a minute behind a busy till) can neither fill
    the batch nor keep other chats' messages, such as customers' receipts, out of it."""
    clients = Client.__table__.c
    target = func.coalesce(_rows.chat_id, clients.tg_id)
    chat = (target, case((target.is_(None), _rows.id)))  # no recipient: a group of its own
    due = (
        select(
            _rows.id,
            _rows.chat_id,
            _rows.kind,
            clients.tg_id,
            _due_at().label("due"),
            func.row_number().over(partition_by=chat, order_by=(_due_at(), _rows.id)).label("nth"),
            func.count().over(partition_by=chat).label("queued"),
        )
        .select_from(Delivery.__table__)
        .outerjoin(Client.__table__, clients.id == _rows.client_id)
        .where(
            _rows.status == DeliveryStatus.PENDING.value,
            _due(bindparam("p_now", type_=UTCDateTime())),
        )
        .subquery()
    )
    return Prepared(
        select(due.c.id, due.c.chat_id, due.c.tg_id, due.c.queued, due.c.kind)
        .where(due.c.nth == 1)
        .order_by(due.c.due, due.c.id)
        .limit(_BATCH)
    )


def _due_rows(session: Session, now: datetime) -> list[Any]:
    """(id, chat_id, client's tg_id, due rows of that chat, kind) of each chat's oldest due
    row."""
    return _due_rows_statement().execute(session, {"p_now": now}).all()


@cache
def _combinable_statement() -> Prepared:
    """A chat's due pending rows of one kind, oldest first: the lines of one combined
    message, with each row's retry time before the claim (to give back lines that do not
    fit)."""
    return Prepared(
        select(_rows.id, _rows.payload, _rows.next_attempt_at)
        .where(
            _rows.chat_id == bindparam("p_chat"),
            _rows.kind == bindparam("p_kind"),
            _rows.status == DeliveryStatus.PENDING.value,
            _due(bindparam("p_now", type_=UTCDateTime())),
        )
        .order_by(_due_at(), _rows.id)
        .limit(_COMBINE_ROWS)
    )


def _text_size(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _line_size(payload: Any) -> int:
    """A combined row's line length as reckoned before rendering (checked after it): a row
    queued as finished text by an older version counts its text, a row of facts
    `LINE_ESTIMATE`."""
    text = payload.get("text") if isinstance(payload, dict) else None
    return _text_size(text) if isinstance(text, str) else LINE_ESTIMATE


@cache
def _release_statement() -> Any:
    """A claimed row not sent, given back as it was (not an attempt)."""
    return (
        update(Delivery.__table__)
        .where(_rows.id == bindparam("p_id"), _rows.status == DeliveryStatus.PENDING.value)
        .values(
            attempts=_rows.attempts - 1,
            next_attempt_at=bindparam("p_previous", type_=UTCDateTime()),
        )
    )


@cache
def _sent_statement() -> Prepared:
    return Prepared(
        update(Delivery.__table__)
        .where(_rows.id == bindparam("p_id"))
        .values(
            status=DeliveryStatus.SENT.value,
            sent_at=bindparam("p_now", type_=UTCDateTime()),
            message_id=bindparam("p_message"),
            next_attempt_at=None,
            last_error=None,
        )
    )


@dataclass(frozen=True)
class SentMessage:
    """What makes a send count: its rows (several for a combined message), the message id
    and when. Recording it again is harmless (same values), which the retries rely on."""

    ids: tuple[int, ...]
    message_id: int
    at: datetime
    surveys: tuple[int, ...] = ()  # surveys asked by this message: their `sent_at`


def _record_sent(session: Session, sent: SentMessage) -> None:
    statement = _sent_statement()
    for delivery_id in sent.ids:
        statement.execute(
            session, {"p_id": delivery_id, "p_now": sent.at, "p_message": sent.message_id}
        )
    if sent.surveys:
        session.execute(
            update(Survey)
            .where(Survey.id.in_(sent.surveys), Survey.sent_at.is_(None))
            .values(sent_at=sent.at)
        )
    session.commit()


class _Head(NamedTuple):
    """A chat's oldest due row, picked for this batch; `combine` when more rows of its kind
    may go in the same message."""

    id: int
    chat_id: int | None
    kind: str
    combine: bool


@dataclass
class _Job:
    """One message's worth of claimed rows: one row, or the lines of a combined message."""

    items: list[Outgoing]
    # Each combined row's retry time before the claim: a line that does not fit is given
    # back as it was (`_release`).
    previous: dict[int, datetime | None] = field(default_factory=dict)


class DeliverySender:
    """Sends due deliveries; one instance keeps its rate buckets across passes."""

    def __init__(
        self,
        transport: Transport,
        db: Database,
        settings: Settings,
        render: Renderer,
        *,
        clock: Clock = utc_now,
        limiter: RateLimiter | None = None,
        lease: timedelta = DEFAULT_LEASE,
        backoff_base: float = 1.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        concurrency: int = 8,
        batch_size: int | None = None,
    ) -> None:
        self.transport = transport
        # The sender's own units of work, and the renderers': nobody waits for them, so on
        # SQLite they give way to every unit someone waits for (`Database.background`).
        self.db = db.background
        self.settings = settings
        self.render = render
        self.clock = clock
        self.limiter = limiter or RateLimiter.from_settings(settings)
        self.lease = lease
        self.backoff_base = backoff_base
        self.sleep = sleep
        self.concurrency = concurrency
        self.batch_size = batch_size or max(10, min(200, int(self.limiter.global_bucket.rate)))
        self.stopping = False  # set by a graceful stop: finish the messages in flight, return
        self.wake: asyncio.Event | None = None  # the worker's: something new was queued
        # A worker's sender records failed records in the background and flushes them when
        # it stops; a one-off pass flushes them before it returns.
        self.background_records = False
        # Rows sent whose record failed, by row id: never claimed again by this sender while
        # `_recorder` retries recording them.
        self._unrecorded: dict[int, SentMessage] = {}
        self._recorder: asyncio.Task[None] | None = None

    async def deliver_due(self, stats: DeliveryStats | None = None) -> DeliveryStats:
        """Send everything due now (waiting for rate limits as needed); return what happened
        (counted into `stats` as it happens, if given)."""
        stats = stats if stats is not None else DeliveryStats()
        try:
            await self._deliver(stats)
        finally:
            if not self.background_records:
                await self.flush()
        return stats

    async def _deliver(self, stats: DeliveryStats) -> None:
        slots = asyncio.Semaphore(self.concurrency)  # at most `concurrency` messages in flight
        while True:
            now = self.clock()
            if (
                until := quiet_until(
                    now, self.settings.delivery.quiet_window, self.settings.store.tz
                )
            ) is not None:
                # Everything but transactional messages waits for the morning; those go on.
                stats.quiet_deferred += await self._defer_quiet(now, until)
            rows = await self.db.write(_due_rows, now)
            if not rows:
                return
            waits: list[float] = []
            ready: list[_Head] = []
            more = False  # a chat with more messages due than the one sent now
            cut = False  # the batch was full before every row was looked at
            for delivery_id, chat_id, tg_id, queued, kind in rows:
                if delivery_id in self._unrecorded:
                    continue  # sent; its record is being retried — never sent again
                target = chat_id if chat_id is not None else tg_id
                if target is not None:
                    # A throttled chat waits; the others go first.
                    wait = self.limiter.chat_delay(target)
                    if wait > 0:
                        waits.append(wait)
                        continue
                    more = more or queued > 1
                combine = kind in COMBINED_KINDS and chat_id is not None and queued > 1
                ready.append(_Head(delivery_id, chat_id, kind, combine))
                if len(ready) >= self.batch_size:
                    cut = True
                    break
            if self.stopping:
                return
            if not ready:
                if not waits:  # only sends whose record is being retried are left
                    return
                await self._pause(min(waits))
                continue
            jobs, skipped = await self.db.write(
                self._claim, ready, now, frozenset(self._unrecorded)
            )
            stats.skipped += skipped
            await asyncio.gather(*(self._slot(job, stats, slots) for job in jobs))
            if not waits and not cut and len(rows) < _BATCH and not more:
                # Everything that was due has been handled; what was queued since woke the
                # worker (`notify`), and what comes due later is found by its next pass.
                return

    async def _pause(self, seconds: float) -> None:
        """Wait for a throttled chat. In the worker, a message queued meanwhile (`notify`)
        ends the wait: a customer's receipt does not wait for the staff group's next slot."""
        if self.wake is None:
            await self.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)
        self.wake.clear()

    async def _slot(self, job: _Job, stats: DeliveryStats, slots: asyncio.Semaphore) -> None:
        async with slots:
            if self.stopping:
                # Claimed but not begun when a graceful stop came: given back as they were,
                # so the next process sends them at once rather than after the lease.
                with contextlib.suppress(Exception):  # else they wait out their lease
                    await self._release(job.items, job.previous)
                return
            try:
                await self._one(job, stats)
            except Exception:  # the database failed us: the rows wait out their lease
                log.exception("delivering %s failed", [item.id for item in job.items])

    async def _defer_quiet(self, now: datetime, until: datetime) -> int:
        def defer(session: Session) -> int:
            result = session.execute(
                update(Delivery)
                .where(
                    Delivery.status == DeliveryStatus.PENDING,
                    _due(now),
                    Delivery.kind.not_in(TRANSACTIONAL_KINDS),
                )
                .values(next_attempt_at=until)
            )
            session.commit()
            return int(result.rowcount)  # type: ignore[attr-defined]

        return await self.db.write(defer)

    def _claim(
        self, session: Session, heads: list[_Head], now: datetime, unrecorded: frozenset[int]
    ) -> tuple[list[_Job], int]:
        """Take rows for this sender with one conditional update: the ones still pending and
        due get `attempts + 1` and a lease; others are left alone. A head that combines takes
        its chat's next due rows of its kind along, as many as the message holds. Then the
        claimed rows with their clients; unwanted ones are marked skipped here. One short
        transaction; returns what to send, one job per message, and how many were skipped."""
        members: dict[int, list[int]] = {head.id: [head.id] for head in heads}
        previous: dict[int, datetime | None] = {}
        for head in heads:
            if not head.combine:
                continue
            lines = _combinable_statement().execute(
                session, {"p_chat": head.chat_id, "p_kind": head.kind, "p_now": now}
            )
            size = 0
            for row_id, payload, next_attempt_at in lines.all():
                if row_id in unrecorded:
                    continue
                size += _line_size(payload) + (1 if size else 0)
                if row_id != head.id:
                    if size > MESSAGE_LIMIT:
                        break
                    members[head.id].append(row_id)
                previous[row_id] = next_attempt_at
        ids = [row_id for group in members.values() for row_id in group]
        claimed = set(
            session.execute(
                update(Delivery.__table__)
                .where(
                    _rows.id.in_(ids),
                    _rows.status == DeliveryStatus.PENDING.value,
                    _due(now),
                )
                .values(attempts=_rows.attempts + 1, next_attempt_at=now + self.lease)
                .returning(_rows.id)
            )
            .scalars()
            .all()
        )
        if not claimed:
            session.rollback()
            return [], 0
        pairs = session.execute(
            select(Delivery, Client)
            .outerjoin(Client, Client.id == Delivery.client_id)
            .where(Delivery.id.in_(claimed))
        ).all()
        chat_only = [row.chat_id for row, client in pairs if client is None and row.chat_id]
        languages: dict[int, str | None] = {}
        if chat_only:  # a chat without a client row may still be a client's private chat
            languages = dict(
                session.execute(
                    select(Client.tg_id, Client.language).where(Client.tg_id.in_(chat_only))
                ).all()
            )
        items: dict[int, Outgoing] = {}
        skipped = 0
        for row, client in pairs:
            reason = self._unwanted(row, client)
            if reason is not None:
                skipped += 1
                row.status = DeliveryStatus.SKIPPED
                row.last_error = reason
                row.next_attempt_at = None
                continue
            chat_id = row.chat_id if row.chat_id is not None else client.tg_id
            language = client.language if client is not None else languages.get(chat_id)
            items[row.id] = Outgoing(
                row.id,
                row.key,
                row.kind,
                chat_id,
                dict(row.payload or {}),
                row.client_id,
                language,
                row.attempts,
            )
        session.commit()
        jobs = []
        for group in members.values():
            job = _Job([items[row_id] for row_id in group if row_id in items])
            if job.items:
                job.previous = {i.id: previous[i.id] for i in job.items if i.id in previous}
                jobs.append(job)
        return jobs, skipped

    async def _finish(self, ids: Sequence[int], **values: Any) -> None:
        def finish(session: Session) -> None:
            session.execute(update(Delivery.__table__).where(_rows.id.in_(ids)).values(**values))
            session.commit()

        await self.db.write(finish)

    async def _one(self, job: _Job, stats: DeliveryStats) -> None:
        rendered: list[tuple[Outgoing, Rendered]] = []
        failed: list[tuple[Outgoing, Exception]] = []
        unwanted: list[Outgoing] = []
        for item in job.items:
            try:
                message = await self.render(self.db, item, self.settings, self.clock())
            except Exception as exc:  # a renderer bug must not stop the other deliveries
                log.exception("rendering delivery %s (%s) failed", item.id, item.kind)
                failed.append((item, exc))
                continue
            if message is None:
                unwanted.append(item)
            else:
                rendered.append((item, message))
        for item, exc in failed:
            stats.failed += 1
            await self._finish(
                [item.id],
                status=DeliveryStatus.FAILED,
                last_error=f"render: {exc!r}"[:255],
                next_attempt_at=None,
            )
        if unwanted:
            stats.skipped += len(unwanted)
            await self._finish(
                [item.id for item in unwanted],
                status=DeliveryStatus.SKIPPED,
                last_error="no longer relevant",
                next_attempt_at=None,
            )
        if not rendered:
            return
        if len(rendered) == 1:
            item, message = rendered[0]
            await self._send([item], message, stats)
            return
        # A combined message: the lines that fit, oldest first; the others are given back.
        size = -1
        taken: list[Outgoing] = []
        lines: list[str] = []
        for item, message in rendered:
            size += 1 + _text_size(message.text)
            if taken and size > MESSAGE_LIMIT:
                break
            taken.append(item)
            lines.append(message.text)
        rest = [item for item, _message in rendered[len(taken) :]]
        if rest:
            await self._release(rest, job.previous)
        await self._send(taken, Rendered("\n".join(lines)), stats)

    async def _release(self, items: Sequence[Outgoing], previous: dict[int, Any]) -> None:
        """Give back claimed rows not sent (lines that did not fit in a combined message,
        messages a graceful stop came before), as they were: the attempt not counted, due
        again (at their retry time before the claim, where one was kept)."""

        def release(session: Session) -> None:
            session.execute(
                _release_statement(),
                [{"p_id": item.id, "p_previous": previous.get(item.id)} for item in items],
            )
            session.commit()

        await self.db.write(release)

    @staticmethod
    def _unwanted(row: Delivery, client: Client | None) -> str | None:
        if row.client_id is None:
            return None if row.chat_id is not None else "no recipient"
        if client is None or client.tg_id is None or client.erased_at is not None:
            return "erased"
        if not client.reachable:
            return "unreachable"
        if row.marketing and client.marketing_opt_out:
            return "opted out"
        if row.marketing and client.consent_at is None:
            return "no consent"
        return None

    async def _send(
        self, items: Sequence[Outgoing], rendered: Rendered, stats: DeliveryStats
    ) -> None:
        """Send one message for `items` (one row, or the lines of a combined message) and
        record the outcome for all of them."""
        chat_id = items[0].chat_id
        ids = tuple(item.id for item in items)
        while True:
            while (wait := self.limiter.global_delay()) > 0:
                await self.sleep(wait)
            self.limiter.take(chat_id)
            try:
                message_id = await self.transport.send(chat_id, rendered)
            except RetryAfter as exc:
                stats.rate_limited += 1
                self.limiter.pause(exc.seconds)
                continue  # the same message again, after the pause
            except Unreachable as exc:
                stats.unreachable += len(items)
                await self._unreachable(items, str(exc))
                return
            except TemporaryFailure as exc:
                await self._retry_later(items, str(exc), stats)
                return
            except Rejected as exc:  # sending again would not help
                stats.failed += len(items)
                await self._finish(
                    ids,
                    status=DeliveryStatus.FAILED,
                    last_error=str(exc)[:255],
                    next_attempt_at=None,
                )
                return
            except Exception as exc:  # unforeseen (a library bug): retried, bounded by attempts
                log.exception("sending delivery %s failed", list(ids))
                await self._retry_later(items, repr(exc), stats)
                return
            break
        surveys = tuple(
            int(item.payload["survey_id"])
            for item in items
            if item.kind == "survey" and isinstance(item.payload.get("survey_id"), int)
        )
        # The commit that makes the send count, as soon as possible after the API call.
        await self._record(SentMessage(ids, message_id, self.clock(), surveys))
        stats.sent += len(items)

    async def _record(self, sent: SentMessage) -> None:
        """Record a send; if that fails, keep it aside and retry in the background. Never
        raises: a sent message must not be sent again because its record failed. Kept aside
        before the first try, so a cancellation mid-way leaves it for `flush`."""
        for delivery_id in sent.ids:
            self._unrecorded[delivery_id] = sent
        try:
            await self.db.write(_record_sent, sent)
        except Exception:
            log.warning(
                "deliveries %s were sent (message %s) but recording that failed; retrying "
                "the record until it succeeds (they will not be sent again)",
                list(sent.ids),
                sent.message_id,
                exc_info=True,
            )
            if self._recorder is None or self._recorder.done():
                self._recorder = asyncio.create_task(self._record_later(), name="delivery-records")
            return
        self._forget(sent)

    def _forget(self, sent: SentMessage) -> None:
        for delivery_id in sent.ids:
            if self._unrecorded.get(delivery_id) is sent:
                del self._unrecorded[delivery_id]

    async def _record_pending(self) -> None:
        """One try at every record kept aside; the ones that fail again stay (logged once,
        by `_record`)."""
        for sent in {id(s): s for s in self._unrecorded.values()}.values():
            try:
                await self.db.write(_record_sent, sent)
            except Exception:  # logged when it first failed; retried later
                continue
            self._forget(sent)

    async def _record_later(self) -> None:
        delay = RECORD_RETRY_FIRST
        while self._unrecorded:
            await asyncio.sleep(delay)
            await self._record_pending()
            delay = min(delay * 2, RECORD_RETRY_CAP)

    async def flush(self, within: float = FLUSH_TIMEOUT) -> bool:
        """Record the sends whose record failed so far, retrying for up to `within` seconds
        (a graceful stop, the end of a one-off pass). False if some are still unrecorded:
        those would be sent again once their lease ends (logged)."""
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        delay = RECORD_RETRY_FIRST
        while self._unrecorded:
            await self._record_pending()
            if not self._unrecorded:
                break
            if loop.time() + delay > deadline:
                log.error(
                    "deliveries %s were sent but could not be recorded; they will be sent "
                    "again when their lease ends",
                    sorted(self._unrecorded),
                )
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECORD_RETRY_CAP)
        return True

    async def _unreachable(self, items: Sequence[Outgoing], error: str) -> None:
        def unreachable(session: Session) -> None:
            session.execute(
                update(Delivery.__table__)
                .where(_rows.id.in_([item.id for item in items]))
                .values(
                    status=DeliveryStatus.UNREACHABLE, last_error=error[:255], next_attempt_at=None
                )
            )
            clients = {item.client_id for item in items if item.client_id is not None}
            if clients:
                session.execute(
                    update(Client).where(Client.id.in_(clients)).values(reachable=False)
                )
            session.commit()

        await self.db.write(unreachable)

    async def _retry_later(
        self, items: Sequence[Outgoing], error: str, stats: DeliveryStats
    ) -> None:
        """Back off (each row by its own attempts), or `failed` after the last attempt."""
        now = self.clock()
        outcomes: list[tuple[int, dict[str, Any]]] = []
        for item in items:
            if item.attempts >= self.settings.delivery.max_attempts:
                stats.failed += 1
                values = {"status": DeliveryStatus.FAILED.value, "next_attempt_at": None}
            else:
                stats.retried += 1
                delay = min(
                    timedelta(seconds=self.backoff_base * 2 ** (item.attempts - 1)), BACKOFF_CAP
                )
                values = {"next_attempt_at": now + delay}
            outcomes.append((item.id, {**values, "last_error": error[:255]}))

        def retry(session: Session) -> None:
            for delivery_id, values in outcomes:
                session.execute(
                    update(Delivery.__table__).where(_rows.id == delivery_id).values(**values)
                )
            session.commit()

        await self.db.write(retry)


class DeliveryWorker:
    """The bot process's sending loop: a pass, then a short sleep (or an early `notify()`).

    Woken early by this process (`notify()`, after it queued something) and, on PostgreSQL, by
    every other process: the worker listens on `CHANNEL`, which `queue_messages` notifies in
    the queuing transaction (`db.notify`). Polling every `interval` stays as the fallback.
    On `SENT_CHANNEL` it hears what the other processes sent straight to a chat, so the
    buckets are the bot's, not this process's."""

    def __init__(self, sender: DeliverySender, *, interval: float = 2.0) -> None:
        self.sender = sender
        self.interval = interval
        self._wake = asyncio.Event()
        sender.wake = self._wake
        sender.background_records = True
        self._task: asyncio.Task[None] | None = None
        self.listener = Listener.of(  # None on SQLite
            sender.db,
            {CHANNEL: lambda _payload: self.notify(), SENT_CHANNEL: self._sent_elsewhere},
            on_listen=self.notify,
        )
        self.idle = asyncio.Event()  # set between passes while nothing has woken it
        self.stats = DeliveryStats()

    def notify(self) -> None:
        self.idle.clear()
        self._wake.set()

    def _sent_elsewhere(self, payload: str) -> None:
        with contextlib.suppress(ValueError):  # only this module publishes there
            self.sender.limiter.note_sent(int(payload))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="delivery-worker")
            if self.listener is not None:
                self.listener.start()

    async def stop(self, grace: float = 10.0) -> None:
        """Let the messages in flight be recorded (cancelling between the API call and the
        commit would send them again after a restart), end the loop, then flush the records
        that failed so far (`DeliverySender.flush`)."""
        task, self._task = self._task, None
        if task is None:
            return
        if self.listener is not None:
            await self.listener.stop()
        self.sender.stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            self.sender.stopping = False
        await self.sender.flush()

    async def _run(self) -> None:
        while not self.sender.stopping:
            try:
                await self.sender.deliver_due(self.stats)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database was busy, a bug: log, wait, go on
                log.exception("delivery pass failed")
            if self.sender.stopping:
                return
            if not self._wake.is_set():
                self.idle.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self.idle.clear()
            self._wake.clear()


@dataclass(frozen=True)
class OutboxMessage:
    """One proactive message for `Outbox.post_many` (the arguments of `Outbox.post`)."""

    key: str
    kind: str
    chat_id: int | None
    payload: dict[str, Any]
    client_id: int | None = None
    marketing: bool = False


class Outbox:
    """How handlers send a proactive message: record it (idempotent by key, own short
    transaction), then wake this process's delivery worker. The worker starts and stops with
    the dispatcher; every message thus gets the rate limits, retries, 403 handling and
    quiet hours of the one delivery service."""

    def __init__(self, db: Database, *, clock: Clock = utc_now) -> None:
        self.db = db
        self.clock = clock
        self.worker: DeliveryWorker | None = None
        self._relays: set[asyncio.Task[None]] = set()

    def notify(self) -> None:
        """Messages were queued by someone else's transaction (`queue_messages`): send now."""
        if self.worker is not None:
            self.worker.notify()

    def note_sent(self, chat_id: int) -> None:
        """A message was just sent to this chat outside the delivery sender (the till
        answering a cashier): the sender's bucket for that chat (a group's 20 a minute) is
        charged for it, so proactive messages there wait and the till's replies come first.
        When the sender runs in another process (this worker is not the leader, PostgreSQL),
        it is told on `SENT_CHANNEL`, in the background: the reply never waits for it, and a
        note lost on the way (the database unreachable, a change of leader) costs one
        message's worth of budget, never a message."""
        if self.worker is not None:
            self.worker.sender.limiter.note_sent(chat_id)
        elif self.db.dialect == "postgresql":
            task = asyncio.create_task(self._relay(chat_id))
            self._relays.add(task)
            task.add_done_callback(self._relays.discard)

    async def _relay(self, chat_id: int) -> None:
        try:
            await publish(self.db, SENT_CHANNEL, str(chat_id))
        except Exception:  # best effort (see note_sent)
            log.debug("could not tell the sender about a message to %s", chat_id, exc_info=True)

    async def relayed(self) -> None:
        """Until the notes `note_sent` is passing on have gone (before the engine closes)."""
        if self._relays:
            await asyncio.wait(set(self._relays), timeout=5.0)

    async def post(
        self,
        *,
        key: str,
        kind: str,
        chat_id: int | None,
        payload: dict[str, Any],
        client_id: int | None = None,
        marketing: bool = False,
    ) -> bool:
        """Queue one message now; False if a message with this key was already queued."""
        message = OutboxMessage(key, kind, chat_id, payload, client_id, marketing)
        return (await self.post_many([message]))[0]

    async def post_many(self, messages: Sequence[OutboxMessage]) -> list[bool]:
        """Queue several messages in one short transaction (one commit, one wake-up); for
        each, False if a message with its key was already queued."""
        if not messages:
            return []

        def post(session: Session) -> list[bool]:
            added = queue_messages(session, messages, self.clock())
            session.commit()
            return added

        added = await self.db.write(post)
        if any(added):
            self.notify()
        return added

    def start(self, sender: DeliverySender) -> DeliveryWorker:
        if self.worker is None:
            self.worker = DeliveryWorker(sender)
            self.worker.start()
        return self.worker

    async def stop(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            await worker.stop()
