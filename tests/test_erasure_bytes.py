"""Erasure at the byte level: after /deletemydata (or the retention job) no byte of the person's
names, username, phone, birthday or comments is left in the database file, its write-ahead
log, or a backup taken afterwards."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import scrub_wal
from db.lane import Lane
from services import backup, privacy
from tests.conftest import App, on_postgres
from tests.test_privacy import (
    BIRTHDAY,
    COMMENT,
    FIRST,
    LAST,
    PAST,
    PHONE,
    TG_ID,
    USERNAME,
    seed_member,
)

# PostgreSQL keeps deleted rows until VACUUM and in its WAL segments: byte-level erasure there is
# the server's (autovacuum, WAL recycling), not something this test can grep for.
pytestmark = pytest.mark.skipif(on_postgres(), reason="bytes in SQLite's own file and log")

SECRETS = [FIRST, LAST, USERNAME, PHONE, BIRTHDAY.isoformat(), COMMENT]


def leftovers(path: Path) -> dict[str, list[str]]:
    """Which personal values appear in which of the database's files (db, -wal)."""
    found: dict[str, list[str]] = {}
    for file in (path, path.with_name(path.name + "-wal")):
        if not file.exists():
            continue
        data = file.read_bytes()
        hits = [value for value in SECRETS if value.encode() in data]
        if hits:
            found[file.name] = hits
    return found


async def seed_on_disk(app: App, engine: AsyncEngine, db_path: Path) -> None:
    """A member whose data has long been in the database file itself (checkpointed out of the
    log, as SQLite does on its own every thousand pages), as in a store's real database."""
    await seed_member(app.sessionmaker)
    await app.db.write(scrub_wal)
    assert set(leftovers(db_path).get(db_path.name, [])) == set(SECRETS)


async def test_deletemydata_leaves_no_byte_of_the_person_in_the_file_the_log_or_a_backup(
    app: App, engine: AsyncEngine, db_path: Path, tmp_path: Path
) -> None:
    await seed_on_disk(app, engine, db_path)

    user = app.tg.user(TG_ID, language_code="en")
    await user.send("/deletemydata")
    ask = await user.wait_message("Erase all your data?")
    await user.press(ask, "🗑")
    await user.wait_message("Your data was erased")

    assert leftovers(db_path) == {}
    copy = backup.backup_database(db_path, tmp_path / "backups", keep=3, now=app.clock())
    assert not [value for value in SECRETS if value.encode() in copy.read_bytes()]


async def test_the_retention_job_leaves_no_byte_behind_either(
    app: App, engine: AsyncEngine, db_path: Path
) -> None:
    await seed_on_disk(app, engine, db_path)
    erased = await privacy.anonymise_inactive(app.db, PAST + timedelta(days=800), 12)
    assert erased == 1
    assert leftovers(db_path) == {}


@pytest.mark.skipif(on_postgres(), reason="secure_delete is SQLite's")
async def test_every_connection_zeroes_deleted_content(engine: AsyncEngine) -> None:
    """Not every SQLite build has secure_delete on by default (this machine's has): the engine
    and the blocking lane set it on every connection they open."""
    async with engine.connect() as connection:
        assert (await connection.exec_driver_sql("PRAGMA secure_delete")).scalar() == 1

    def lane_setting(session: object) -> int:
        return session.execute(text("PRAGMA secure_delete")).scalar()  # type: ignore[attr-defined]

    assert await Lane.of(engine).run(lane_setting) == 1
