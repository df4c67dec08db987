"""Backups while the bot keeps running: SQLite's online backup, PostgreSQL's `pg_dump`.

`backup(settings, now)` — the backup job and `python -m bot jobs run backup` — backs up the
database of `DATABASE_URL` into `BACKUP_DIR`, checks the copy, and keeps the `BACKUP_KEEP`
newest backups of that kind, named by UTC time:

* **SQLite**: `loyalty-YYYYMMDD-HHMMSS.db`, copied with SQLite's online backup API (readers and
  the writer carry on; the copy is one consistent snapshot) and checked with
  `PRAGMA integrity_check`.
* **PostgreSQL**: `loyalty-YYYYMMDD-HHMMSS.dump`, written by `pg_dump -Fc` (one consistent
  snapshot; the tills carry on) and checked with `pg_restore --list`. The connection comes
  from the URL through libpq's environment (`PGHOST`, `PGUSER`, `PGPASSWORD`, …), so the
  password never appears on a command line, where other users of the machine could read it.

A backup that cannot be made or does not check out raises `BackupError` with a one-line reason
and leaves nothing behind. Restore: see the README ("Backups and restore").
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import URL, make_url

from services.errors import DomainError

if TYPE_CHECKING:  # services do not depend on the bot package at run time
    from config import Settings

PREFIX = "loyalty-"
SUFFIX = ".db"  # SQLite
PG_SUFFIX = ".dump"  # PostgreSQL (pg_dump's custom format)
_SUFFIXES = (SUFFIX, PG_SUFFIX)


class BackupError(DomainError):
    """The backup could not be made or did not pass its check (nothing kept)."""


def backup(settings: Settings, now: datetime) -> Path:
    """Back up the configured database into `BACKUP_DIR` (see the module docstring); returns
    the new backup's path. Blocking: run it in a thread."""
    return backup_database(settings.database.url, settings.backup.dir, settings.backup.keep, now)


def backup_database(database: str | Path, backup_dir: Path, keep: int, now: datetime) -> Path:
    """Back up `database` — a database URL (SQLite file or PostgreSQL), or a SQLite file's
    path — into `backup_dir`, check it, keep the `keep` newest of its kind; returns the new
    backup's path. Blocking: run it in a thread."""
    if isinstance(database, str) and make_url(database).get_backend_name() == "postgresql":
        return _make(backup_dir, keep, now, PG_SUFFIX, lambda partial: _pg_dump(database, partial))
    db_path = database_path(database) if isinstance(database, str) else database
    if not db_path.is_file():
        raise BackupError(f"database file {db_path} does not exist")
    return _make(backup_dir, keep, now, SUFFIX, lambda partial: _sqlite_copy(db_path, partial))


def database_path(url: str) -> Path:
    """The file of a SQLite URL (anything else is refused)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        raise BackupError(
            f"only a SQLite database file or PostgreSQL can be backed up, not {parsed!r}"
        )
    return Path(parsed.database)


def backups(backup_dir: Path) -> list[Path]:
    """Existing backups of either kind, newest first."""
    if not backup_dir.is_dir():
        return []
    found = [path for path in backup_dir.glob(f"{PREFIX}*") if path.suffix in _SUFFIXES]
    return sorted(found, reverse=True)


def _make(
    backup_dir: Path, keep: int, now: datetime, suffix: str, write: Callable[[Path], None]
) -> Path:
    """Name the backup, write it as `.partial` (`write(partial)` makes and checks it), then
    give it its name and prune older ones of the same kind."""
    backup_dir.mkdir(parents=True, exist_ok=True)
    stamp = now.astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    target = backup_dir / f"{PREFIX}{stamp}{suffix}"
    counter = 1
    while target.exists():  # two backups in the same second
        target = backup_dir / f"{PREFIX}{stamp}-{counter}{suffix}"
        counter += 1
    partial = target.with_suffix(".partial")
    try:
        write(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    for old in [path for path in backups(backup_dir) if path.suffix == suffix][keep:]:
        old.unlink(missing_ok=True)
    return target


def _sqlite_copy(db_path: Path, partial: Path) -> None:
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
        raise BackupError(f"integrity check of the backup failed: {status}")


# ------------------------------------------------------------------------------ PostgreSQL


def _pg_dump(url: str, partial: Path) -> None:
    env = libpq_environment(url)
    # --no-password: never wait for a password on a terminal (a job has none).
    _run("pg_dump", ["--format=custom", "--no-password", f"--file={partial}"], env)
    _run("pg_restore", ["--list", str(partial)], env, doing="reading the backup back")


def _run(program: str, arguments: list[str], env: dict[str, str], doing: str = "") -> None:
    found = shutil.which(program)
    if found is None:
        raise BackupError(
            f"{program} is not installed: backups of PostgreSQL need its client programs "
            "(e.g. the postgresql-client package of the server's major version)"
        )
    try:
        done = subprocess.run(
            [found, *arguments], env=env, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise BackupError(f"{program} could not run: {exc}") from exc
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {done.returncode}"
        raise BackupError(f"{program} failed{f' {doing}' if doing else ''}: {reason[:300]}")


# Query options of a SQLAlchemy/asyncpg URL and the libpq variable each one sets.
_QUERY_ENV = {
    "host": "PGHOST",
    "port": "PGPORT",
    "sslmode": "PGSSLMODE",
    "ssl": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
}


def libpq_environment(url: str | URL) -> dict[str, str]:
    """This process's environment plus the libpq variables (`PGHOST`, `PGPORT`, `PGUSER`,
    `PGPASSWORD`, `PGDATABASE`, SSL) of a PostgreSQL URL, for `pg_dump` and `pg_restore`."""
    parsed = make_url(url)
    env = dict(os.environ)
    values = {
        "PGHOST": parsed.host,
        "PGPORT": str(parsed.port) if parsed.port else None,
        "PGUSER": parsed.username,
        "PGPASSWORD": parsed.password,
        "PGDATABASE": parsed.database,
    }
    for option, variable in _QUERY_ENV.items():
        value = parsed.query.get(option)
        if isinstance(value, tuple):
            value = value[-1]
        if value:
            values[variable] = "require" if option == "ssl" and value == "true" else value
    env.update({name: value for name, value in values.items() if value})
    env["PGAPPNAME"] = "loyalty-backup"
    return env
