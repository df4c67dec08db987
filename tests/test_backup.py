"""Backups: a consistent online copy that passes integrity_check, restores to the same data,
and only the newest BACKUP_KEEP are kept."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services import backup
from services.backup import BackupError
from tests.conftest import FrozenClock
from tests.engagement_helpers import buy, make_client


def _dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


async def test_backup_restores_to_an_identical_database(
    session: AsyncSession, db_path: Path, tmp_path: Path, clock: FrozenClock
) -> None:
    client = await make_client(session, 8001)
    await buy(session, client, clock())
    # The bot keeps its connection open (WAL mode, data partly in the -wal file).
    path = backup.backup_database(db_path, tmp_path / "backups", 7, clock())
    assert path.name == "loyalty-20261116-090000.db"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # Restore: copy the backup over the database file (the bot is stopped), then compare.
    restored = tmp_path / "restored.db"
    shutil.copy(path, restored)
    assert _dump(restored) == _dump(db_path)
    assert any("purchases" in line for line in _dump(restored))


def test_only_the_newest_are_kept(db_path: Path, tmp_path: Path) -> None:
    start = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    made = [
        backup.backup_database(db_path, tmp_path / "b", 3, start + timedelta(days=i))
        for i in range(5)
    ]
    assert backup.backups(tmp_path / "b") == list(reversed(made[2:]))
    # Two in the same second do not overwrite each other.
    again = backup.backup_database(db_path, tmp_path / "b", 3, start + timedelta(days=4))
    assert again != made[-1] and again.exists() and made[-1].exists()


def test_a_missing_or_non_sqlite_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackupError):
        backup.backup_database(tmp_path / "nope.db", tmp_path / "b", 3, datetime.now(UTC))
    with pytest.raises(BackupError):
        backup.database_path("postgresql+asyncpg://localhost/loyalty")
    assert backup.database_path("sqlite+aiosqlite:///data/x.db") == Path("data/x.db")
