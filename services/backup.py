"""Online SQLite backups: a consistent copy while the bot keeps running.

`backup_database` copies the live database with SQLite's online backup API (readers and the
writer carry on; the copy is one consistent snapshot), checks the copy with
`PRAGMA integrity_check`, and keeps the `keep` newest files `loyalty-YYYYMMDD-HHMMSS.db` (UTC).
Restore: see the README (stop the bot, copy the file over the database, drop -wal/-shm).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from services.errors import DomainError

PREFIX = "loyalty-"
SUFFIX = ".db"


class BackupError(DomainError):
    """The backup could not be made or did not pass the integrity check (nothing kept)."""


def database_path(url: str) -> Path:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        raise BackupError(f"only a file-based SQLite database can be backed up, not {url!r}")
    return Path(parsed.database)


def backups(backup_dir: Path) -> list[Path]:
    """Existing backups, newest first."""
    if not backup_dir.is_dir():
        return []
    return sorted(backup_dir.glob(f"{PREFIX}*{SUFFIX}"), reverse=True)


def backup_database(db_path: Path, backup_dir: Path, keep: int, now: datetime) -> Path:
    """Copy, verify, prune; returns the new backup's path. Blocking: run it in a thread."""
    if not db_path.is_file():
        raise BackupError(f"database file {db_path} does not exist")
    backup_dir.mkdir(parents=True, exist_ok=True)
    stamp = now.astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    target = backup_dir / f"{PREFIX}{stamp}{SUFFIX}"
    counter = 1
    while target.exists():  # two backups in the same second
        target = backup_dir / f"{PREFIX}{stamp}-{counter}{SUFFIX}"
        counter += 1
    partial = target.with_suffix(".partial")
    source = sqlite3.connect(db_path)
    try:
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # a self-contained single file
            status = copy.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            copy.close()
    finally:
        source.close()
    if status != "ok":
        partial.unlink(missing_ok=True)
        raise BackupError(f"integrity check of the backup failed: {status}")
    partial.replace(target)
    for old in backups(backup_dir)[keep:]:
        old.unlink(missing_ok=True)
    return target
