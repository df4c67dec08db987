"""The services handlers receive by name (e.g. `wallet: WalletService`), built per update.

Each entry is `name → factory(session, settings, clock)`. Construction is cheap (no I/O);
the work happens when a handler calls a method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from db.database import Database
from services.clock import Clock
from services.reports import ReportService
from services.sales import SalesService
from services.wallet import WalletService

ServiceFactory = Callable[[AsyncSession, Settings, Clock], Any]

SERVICE_FACTORIES: dict[str, ServiceFactory] = {
    "sales": lambda session, settings, clock: SalesService(
        Database.of(session.bind),
        settings,
        clock,  # type: ignore[arg-type]
    ),
    "wallet": lambda session, settings, clock: WalletService(session, settings, clock),
    "reports": lambda session, settings, clock: ReportService(
        Database.of(session.bind),  # type: ignore[arg-type]
        settings,
    ),
}


def build_services(session: AsyncSession, settings: Settings, clock: Clock) -> dict[str, Any]:
    return {name: factory(session, settings, clock) for name, factory in SERVICE_FACTORIES.items()}
