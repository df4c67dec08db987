"""Card numbers and lookups shared by every feature (wallet, till, owner tools)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session

from db.models import Card, CardMonth, CardStatus, Purchase, UTCDateTime
from db.prepared import Prepared
from db.sql import year_month
from services import audit
from services.errors import CardBlocked, CardNotFound, InvalidCardNumber

MIN_DIGITS = 4
MAX_DIGITS = 19
_SEPARATORS = re.compile(r"[\s\-\u00a0\u2010-\u2015]")
_DIGITS = re.compile(r"\d+")


def normalize_number(text: str) -> str:
    """`"1000 45"`, `"100-045"` → `"100045"`; anything but digits and separators is refused."""
    if not isinstance(text, str) or len(text) > 64:
        raise InvalidCardNumber(str(text)[:64])
    digits = _SEPARATORS.sub("", text.strip())
    if not _DIGITS.fullmatch(digits) or not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
        raise InvalidCardNumber(text)
    if not digits.isascii():  # \d matches Arabic-Indic and other digits too
        raise InvalidCardNumber(text)
    return digits


def lookup_number(text: str) -> str:
    """A number typed to look a card up (`/sale`, `/issue`): like `normalize_number`, except
    that a short run of digits (`999`) is a number no card has — `CardNotFound`, not a
    malformed input."""
    try:
        return normalize_number(text)
    except InvalidCardNumber:
        digits = _SEPARATORS.sub("", text.strip()) if isinstance(text, str) else ""
        if digits.isascii() and digits.isdigit() and len(digits) < MIN_DIGITS:
            raise CardNotFound(digits) from None
        raise


def group_number(number: str, size: int = 3) -> str:
    """`"100045"` → `"100 045"`: printed and shown in groups so people can read it aloud."""
    head = len(number) % size
    parts = [number[:head]] if head else []
    parts += [number[i : i + size] for i in range(head, len(number), size)]
    return " ".join(parts)


def numbers_between(low: int, high: int) -> ColumnElement[bool]:
    """Cards whose numbers lie in [low, high] as numbers, without casting the column: a
    19-digit card number does not fit a database integer. For each length, a string range of
    that many digits (digit strings of one length order like the numbers they write)."""
    ranges = []
    for digits in range(len(str(low)), len(str(high)) + 1):
        first, last = max(low, 10 ** (digits - 1)), min(high, 10**digits - 1)
        ranges.append(
            and_(func.length(Card.number) == digits, Card.number.between(str(first), str(last)))
        )
    return or_(*ranges)


# Card numbers in numeric order, highest first (longer is larger; then digit by digit).
HIGHEST_NUMBER_FIRST = (func.length(Card.number).desc(), Card.number.desc())


def by_number(number: str) -> Select[tuple[Card]]:
    return select(Card).where(Card.number == number)


def find_by_number(session: Session, number: str, *, for_update: bool = False) -> Card | None:
    """The card with this (normalised) number; `for_update` locks its row until the unit
    ends (PostgreSQL: a concurrent change of the same card waits; SQLite has one writer)."""
    statement = by_number(number)
    if for_update:
        statement = statement.with_for_update()
    return session.scalar(statement)


def get_registered(session: Session, text: str, *, for_update: bool = False) -> Card:
    """The card a person typed: a valid number of a registered card, whatever its status."""
    number = normalize_number(text)
    card = find_by_number(session, number, for_update=for_update)
    if card is None:
        raise CardNotFound(number)
    return card


def get_usable(session: Session, text: str) -> Card:
    """The card typed or scanned at the till: must exist and not be blocked."""
    number = normalize_number(text)
    return usable(find_by_number(session, number), number)


def usable(card: Card | None, number: str) -> Card:
    """The card a lookup found, if the till may use it: CardNotFound / CardBlocked."""
    if card is None:
        raise CardNotFound(number)
    if card.status == CardStatus.BLOCKED:
        raise CardBlocked(card.number)
    return card


def mark_issued(
    session: Session, card: Card, *, now: datetime, actor_id: int | None, how: str
) -> bool:
    """Issue an in-stock card (handed out, first bound or first used — whichever comes first)."""
    if card.status != CardStatus.IN_STOCK:
        return False
    card.status = CardStatus.ISSUED
    card.issued_at = now
    audit.record(session, "card.issued", at=now, actor_id=actor_id, card_id=card.id, how=how)
    return True


# ------------------------------------------------------------------- lifetime totals


def _totals_values() -> dict[str, Any]:
    """Card.purchase_count / purchase_total / last_purchase_at recomputed from the ledger, as
    scalar subqueries correlated with the updated card (index range scans of one card)."""
    mine = (Purchase.card_id == Card.id, Purchase.voided_at.is_(None))

    def of(aggregate: Any) -> Any:
        return select(aggregate).where(*mine).scalar_subquery()

    return {
        "purchase_count": of(func.count()),
        "purchase_total": of(func.coalesce(func.sum(Purchase.amount), 0)),
        "last_purchase_at": of(func.max(Purchase.created_at)),
    }


def month_of(at: datetime) -> datetime:
    """The first instant (UTC) of the calendar month, in UTC, that `at` falls in."""
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def next_month(month: datetime) -> datetime:
    """The first instant of the month after `month` (a `month_of`)."""
    return datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)


def month_key(month: datetime) -> int:
    """`CardMonth.month` of a `month_of`: YYYYMM."""
    return month.year * 100 + month.month


_MONTH_COLUMNS = ("card_id", "month", "purchases", "revenue", "discount")


def _month_figures(month: Any) -> Select[Any]:
    """The rows of `card_months` counted from the ledger, `month` being each row's month."""
    return select(
        Purchase.card_id,
        month,
        func.count(),
        func.sum(Purchase.amount),
        func.sum(Purchase.discount_amount),
    ).where(Purchase.voided_at.is_(None))


@cache
def _refresh_one() -> tuple[Prepared, Prepared, Prepared]:
    """The hot path's statements: a card's lifetime figures, and one of its months recounted
    (the month's row removed, then written anew unless the month has no purchases left)."""
    table, months = Card.__table__, CardMonth.__table__
    month = bindparam("p_month", type_=Integer())
    recount = (
        _month_figures(month)
        .where(
            Purchase.card_id == bindparam("p_card"),
            Purchase.created_at >= bindparam("p_from", type_=UTCDateTime()),
            Purchase.created_at < bindparam("p_to", type_=UTCDateTime()),
        )
        .group_by(Purchase.card_id)
    )
    return (
        Prepared(update(table).where(table.c.id == bindparam("p_card")).values(_totals_values())),
        Prepared(
            delete(months).where(months.c.card_id == bindparam("p_card"), months.c.month == month)
        ),
        Prepared(insert(months).from_select(_MONTH_COLUMNS, recount)),
    )


def refresh_card_totals(session: Session, card_id: int, at: datetime) -> None:
    """`refresh_totals` of one card after a write to the ledger at `at` (a sale made then, or
    the void of a purchase made then): the lifetime figures and the month of `at`, nothing
    else changed. The till's hot path: prepared statements, in a unit of work on the lane."""
    totals, forget, recount = _refresh_one()
    totals.execute(session, {"p_card": card_id})
    month = month_of(at)
    key = month_key(month)
    forget.execute(session, {"p_card": card_id, "p_month": key})
    recount.execute(
        session, {"p_card": card_id, "p_month": key, "p_from": month, "p_to": next_month(month)}
    )


# Which cards to recount: one (an id), some (ids, or a `select(card ids)`), every card (None).
Cards = int | Sequence[int] | Select[Any] | None


def refresh_totals(session: Session, which: Cards) -> None:
    """Recompute the lifetime purchase figures and the monthly figures (`CardMonth`) of a card
    (an id), of some cards (ids, or a `select(card ids)`), or of every card (None) from the
    purchases ledger, in the caller's unit of work.

    Every write to `purchases` (a sale, a void, a history import) calls this in the same
    transaction, so the figures are exact whenever the ledger is: a recount, not an increment,
    so calling it twice or after a lost race changes nothing.
    """
    statement = update(Card).where(_among(Card.id, which)).values(_totals_values())
    session.execute(statement.execution_options(synchronize_session=False))
    refresh_months(session, which)


def refresh_months(session: Session, which: Cards) -> None:
    """Every month (`CardMonth`) of these cards (an id, ids, a `select(card ids)`, None: all
    cards) counted anew from the ledger."""
    forget = delete(CardMonth).where(_among(CardMonth.card_id, which))
    session.execute(forget.execution_options(synchronize_session=False))
    month = year_month(Purchase.created_at)
    figures = (
        _month_figures(month)
        .where(_among(Purchase.card_id, which))
        .group_by(Purchase.card_id, month)
    )
    session.execute(insert(CardMonth).from_select(_MONTH_COLUMNS, figures))


def _among(card_id: Any, which: Cards) -> ColumnElement[bool]:
    """`card_id` is one of `which` (see `refresh_totals`); always true for None."""
    if which is None:
        return true()
    return card_id == which if isinstance(which, int) else card_id.in_(which)


@cache
def _issue_at_till() -> Prepared:
    table = Card.__table__
    return Prepared(
        update(table)
        .where(table.c.id == bindparam("p_card"), table.c.status == CardStatus.IN_STOCK.value)
        .values(status=CardStatus.ISSUED.value, issued_at=bindparam("p_now", type_=UTCDateTime()))
    )


def issue_at_till(session: Session, card_id: int, now: datetime) -> None:
    """An in-stock card becomes issued at `now`, in a unit of work on the blocking lane (the
    caller records the audit event)."""
    _issue_at_till().execute(session, {"p_card": card_id, "p_now": now})
