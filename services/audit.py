"""Audit trail: one row per state change that matters (who, what, when)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from db.models import AuditEvent
from db.prepared import Prepared


def record(session: Session, action: str, **fields: Any) -> AuditEvent:
    """Add an audit event (the fields of `values`) to the caller's unit of work (the caller
    commits)."""
    event = AuditEvent(**values(action, **fields))
    session.add(event)
    return event


def values(
    action: str,
    *,
    at: datetime,
    actor_id: int | None = None,
    card_id: int | None = None,
    client_id: int | None = None,
    purchase_id: int | None = None,
    **details: Any,
) -> dict[str, Any]:
    """An audit event's row: who (`actor_id`) did `action` at `at`, to what, with `details`.
    `insert_many` writes such rows; `record` adds one through the ORM."""
    return {
        "at": at,
        "actor_id": actor_id,
        "action": action,
        "card_id": card_id,
        "client_id": client_id,
        "purchase_id": purchase_id,
        "details": details,
    }


@cache
def _insert_statement() -> Prepared:
    return Prepared(insert(AuditEvent.__table__))


def insert_many(session: Session, events: Sequence[dict[str, Any]]) -> None:
    """Write audit rows (`values(...)`) with one prepared statement in the caller's
    transaction (a unit of work on the blocking lane): the hot paths skip the ORM."""
    _insert_statement().execute_many(session, events)
