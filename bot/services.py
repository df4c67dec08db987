"""The services handlers receive by name (e.g. `wallet: WalletService`), built per update.

Each entry is `name → factory(db, settings, clock)`. Construction is cheap (no I/O); the work
happens when a handler calls a method, as units of work on the `Database`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from config import Settings
from db.database import Database
from services.clock import Clock
from services.reports import ReportService
from services.sales import SalesService
from services.wallet import WalletService

ServiceFactory = Callable[[Database, Settings, Clock], Any]

SERVICE_FACTORIES: dict[str, ServiceFactory] = {
    "sales": SalesService,
    "wallet": WalletService,
    "reports": lambda db, settings, clock: ReportService(db, settings),
}


def build_services(db: Database, settings: Settings, clock: Clock) -> dict[str, Any]:
    return {name: factory(db, settings, clock) for name, factory in SERVICE_FACTORIES.items()}
