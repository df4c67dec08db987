"""`upgrade head` produces exactly the models' schema on the engine under test (SQLite, or
PostgreSQL with TEST_POSTGRES_URL), and the SQLite pragmas are in force."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from db.engine import create_engine
from db.migrate import MIGRATIONS_DIR, alembic_config, upgrade
from db.models import Base
from tests.conftest import on_postgres


async def test_upgrade_head_matches_models(db_url: str) -> None:
    await upgrade(db_url)  # the test database is migrated already: a restart migrates nothing
    engine = create_engine(db_url)

    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": True}
        )
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as connection:
        assert await connection.run_sync(diff) == []
        tables = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    await engine.dispose()
    assert set(Base.metadata.tables) <= tables


async def test_a_fresh_database_migrates_from_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    await upgrade(url)
    engine = create_engine(url)
    async with engine.connect() as connection:
        tables = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    await engine.dispose()
    assert set(Base.metadata.tables) <= tables


def test_revisions_are_sequential_and_linear() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    revisions = list(reversed(list(script.walk_revisions())))
    assert [r.revision for r in revisions] == [f"{i:04d}" for i in range(1, len(revisions) + 1)]
    assert len(script.get_heads()) == 1
    assert all(p.name[:4].isdigit() for p in (MIGRATIONS_DIR / "versions").glob("*.py"))


@pytest.mark.skipif(on_postgres(), reason="SQLite's pragmas")
async def test_sqlite_pragmas(db_url: str) -> None:
    engine = create_engine(db_url)
    async with engine.connect() as connection:
        values = [
            (await connection.execute(text(f"PRAGMA {name}"))).scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        ]
    await engine.dispose()
    assert values == ["wal", 1, 15000, 2]  # synchronous=FULL is 2
