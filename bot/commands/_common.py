"""Shared plumbing for CLI commands: settings, a migrated database, its `Database`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from typing import TypeVar

from config import Settings
from db.database import Database
from db.engine import create_engine
from db.migrate import upgrade

T = TypeVar("T")


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Database]:
    """A migrated database; the engine is disposed afterwards."""
    await upgrade(settings.database.url)
    engine = create_engine(settings.database.url)
    try:
        yield Database.of(engine)
    finally:
        await engine.dispose()


async def with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async with database(settings) as db:
        return await work(db)


class LineReporter:
    """Prints each bad input line to stderr as it is found (nothing is kept in memory)."""

    def __init__(self, file_name: str) -> None:
        self.file_name = file_name
        self.count = 0

    def __call__(self, line: int, reason: str) -> None:
        self.count += 1
        print(f"{self.file_name}:{line}: {reason}", file=sys.stderr)


def iso_date(text: str) -> date:
    """An argparse type: a date written YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, not {text!r}") from exc
