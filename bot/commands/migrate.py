"""`python -m bot migrate` — bring the database schema up to date (also done on every start)."""

from __future__ import annotations

import argparse
import asyncio

from config import load_settings
from db.migrate import upgrade
from services.history_import import recover_interrupted_imports


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("migrate", help="apply database migrations and exit")
    parser.set_defaults(func=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    asyncio.run(upgrade(settings.database.url))
    recover_interrupted_imports(settings.database.url)
    print("database is up to date")
    return 0
