"""Audit trail: one row per state change that matters (who, what, when)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditEvent


def record(
    session: AsyncSession,
    action: str,
    *,
    at: datetime,
    actor_id: int | None = None,
    card_id: int | None = None,
    client_id: int | None = None,
    purchase_id: int | None = None,
    **details: Any,
) -> AuditEvent:
    """Add an audit event to the caller's unit of work (the caller commits)."""
    event = AuditEvent(
        at=at,
        actor_id=actor_id,
        action=action,
        card_id=card_id,
        client_id=client_id,
        purchase_id=purchase_id,
        details=details,
    )
    session.add(event)
    return event
