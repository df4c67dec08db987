"""Backups on both engines: a consistent copy made while the bot runs (SQLite's online backup,
PostgreSQL's `pg_dump -Fc`) that restores, as the README says, to the database as it was; only
the newest BACKUP_KEEP are kept; `pg_dump` gets the password through its environment, and a
missing or failing `pg_dump` is one line that leaves nothing behind."""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from services import backup
from services.backup import BackupError
from tests.conftest import FrozenClock, make_settings
from tests.import_helpers import Db, DbCli

PG_URL = "postgresql+asyncpg://loyalty:s3cret%40x@db.example:5433/loyalty?ssl=require"


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    with Db(db_url) as db:
        yield db


def sell(db: Db, number: str, amount: int) -> None:
    """A card (new when `number` is) and a purchase on it, as the till records them."""
    if not db.query("SELECT id FROM cards WHERE number = :n", n=number):
        db.execute(
            "INSERT INTO cards (number, base_pct, segment, kind, status, created_at, "
            "bind_failures, purchase_count, purchase_total) VALUES (:n, 5, 'b2c', 'printed', "
            "'issued', '2026-11-01 09:00:00.000000', 0, 0, 0)",
            n=number,
        )
    db.execute(
        "INSERT INTO purchases (card_id, amount, discount_pct, discount_amount, paid_amount, "
        "source, created_at) SELECT id, :amount, 5, 0, :amount, 'bot', "
        "'2026-11-16 09:00:00.000000' FROM cards WHERE number = :n",
        n=number,
        amount=amount,
    )


def restore(db: Db, path: Path) -> None:
    """The README's restore (the bot stopped: no connection is open)."""
    if db.sqlite:
        database = Path(make_url(db.url).database or "")
        shutil.copy(path, database)
        for log in ("-wal", "-shm"):
            Path(f"{database}{log}").unlink(missing_ok=True)
        return
    database = db.url.rsplit("/", 1)[-1]
    options = ["--clean", "--if-exists", "--no-owner", "--single-transaction"]
    subprocess.run(
        ["pg_restore", *options, f"--dbname={database}", str(path)],
        env=backup.libpq_environment(db.url),
        check=True,
        capture_output=True,
    )


def test_a_backup_restores_the_database_as_it_was(
    db_url: str, db: Db, tmp_path: Path, clock: FrozenClock
) -> None:
    sell(db, "100045", 2500)
    before = db.dump()
    settings = make_settings(db_url, backup_dir=str(tmp_path / "backups"))
    path = backup.backup(settings, clock())
    assert path.name == "loyalty-20261116-090000" + (".db" if db.sqlite else ".dump")
    assert list(path.parent.iterdir()) == [path]  # no partial file left
    if db.sqlite:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    sell(db, "100046", 900)  # after the backup: lost by the restore
    assert db.dump() != before

    restore(db, path)

    assert db.dump() == before
    assert db.query("SELECT amount FROM purchases") == [(2500,)]


def test_only_the_newest_are_kept(db_url: str, db: Db, tmp_path: Path) -> None:
    start = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    made = [
        backup.backup_database(db_url, tmp_path / "b", 3, start + timedelta(days=i))
        for i in range(5)
    ]
    assert backup.backups(tmp_path / "b") == list(reversed(made[2:]))
    # Two in the same second do not overwrite each other.
    again = backup.backup_database(db_url, tmp_path / "b", 3, start + timedelta(days=4))
    assert again != made[-1] and again.exists() and made[-1].exists()


def test_a_missing_or_unknown_database_is_refused(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with pytest.raises(BackupError, match="does not exist"):
        backup.backup_database(tmp_path / "nope.db", tmp_path / "b", 3, now)
    with pytest.raises(BackupError, match="does not exist"):
        backup.backup_database(f"sqlite+aiosqlite:///{tmp_path}/nope.db", tmp_path / "b", 3, now)
    with pytest.raises(BackupError) as refused:
        backup.backup_database("mysql://root:s3cret@localhost/loyalty", tmp_path / "b", 3, now)
    assert "s3cret" not in str(refused.value)
    assert backup.database_path("sqlite+aiosqlite:///data/x.db") == Path("data/x.db")
    assert not (tmp_path / "b").exists()


def test_cli_jobs_run_backup(
    db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = DbCli(db, tmp_path, monkeypatch, capsys)
    monkeypatch.setenv("BACKUP_DIR", str(tmp_path / "backups"))
    result = cli("jobs", "run", "backup", "--at", "2026-11-23T03:00")
    assert result.code == 0, result.err
    kind = ".db" if db.sqlite else ".dump"
    written = tmp_path / "backups" / f"loyalty-20261123-000000{kind}"  # store time is UTC+3
    assert f"backup written to {written}" in result.out
    assert written.is_file()


# ---------------------------------------------------------------- pg_dump, as the job runs it

FAKE = """#!{python}
import json, os, sys
with open({log!r}, "a", encoding="utf-8") as log:
    env = {{k: v for k, v in os.environ.items() if k.startswith("PG")}}
    log.write(json.dumps({{"argv": sys.argv, "env": env}}) + "\\n")
{body}
"""
WRITES_THE_FILE = """
for argument in sys.argv:
    if argument.startswith("--file="):
        open(argument.removeprefix("--file="), "wb").write(b"PGDMP")
"""
FAILS = """
sys.stderr.write("pg_dump: warning: something\\npg_dump: error: connection to server at "
                 '"db.example" failed: FATAL:  password authentication failed for user '
                 '"loyalty"\\n')
sys.exit(1)
"""


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory that is the whole PATH: put fake pg_dump/pg_restore programs in it."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    return path


def fake(directory: Path, name: str, body: str) -> Path:
    log = directory / "calls.jsonl"
    program = directory / name
    program.write_text(FAKE.format(python=sys.executable, log=str(log), body=body))
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return log


def calls(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_pg_dump_gets_the_connection_through_its_environment(
    fake_bin: Path, tmp_path: Path
) -> None:
    log = fake(fake_bin, "pg_dump", WRITES_THE_FILE)
    fake(fake_bin, "pg_restore", "")
    now = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    path = backup.backup_database(PG_URL, tmp_path / "b", 3, now)
    assert path == tmp_path / "b" / "loyalty-20261123-000000.dump"
    assert path.read_bytes() == b"PGDMP"
    dump, listing = calls(log)
    assert dump["argv"][1:] == [  # type: ignore[index]
        "--format=custom",
        "--no-password",
        f"--file={path.with_suffix('.partial')}",
    ]
    assert listing["argv"][1:] == ["--list", str(path.with_suffix(".partial"))]  # type: ignore[index]
    for call in (dump, listing):
        assert not any("s3cret" in argument for argument in call["argv"])  # type: ignore[attr-defined]
        assert call["env"] == {
            "PGHOST": "db.example",
            "PGPORT": "5433",
            "PGUSER": "loyalty",
            "PGPASSWORD": "s3cret@x",
            "PGDATABASE": "loyalty",
            "PGSSLMODE": "require",
            "PGAPPNAME": "loyalty-backup",
        }


def test_a_missing_pg_dump_is_one_line(fake_bin: Path, tmp_path: Path) -> None:
    with pytest.raises(BackupError) as refused:
        backup.backup_database(PG_URL, tmp_path / "b", 3, datetime.now(UTC))
    message = str(refused.value)
    assert message.startswith("pg_dump is not installed: ") and "\n" not in message
    assert list((tmp_path / "b").iterdir()) == []


def test_a_failing_pg_dump_is_one_line_and_keeps_nothing(fake_bin: Path, tmp_path: Path) -> None:
    fake(fake_bin, "pg_dump", WRITES_THE_FILE + FAILS)
    fake(fake_bin, "pg_restore", "")
    with pytest.raises(BackupError) as failed:
        backup.backup_database(PG_URL, tmp_path / "b", 3, datetime.now(UTC))
    assert str(failed.value) == (
        'pg_dump failed: pg_dump: error: connection to server at "db.example" failed: FATAL:  '
        'password authentication failed for user "loyalty"'
    )
    assert list((tmp_path / "b").iterdir()) == []


def test_a_dump_that_does_not_read_back_is_not_kept(fake_bin: Path, tmp_path: Path) -> None:
    fake(fake_bin, "pg_dump", WRITES_THE_FILE)
    start = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    fake(fake_bin, "pg_restore", "")
    kept = [
        backup.backup_database(PG_URL, tmp_path / "b", 2, start + timedelta(days=i))
        for i in range(2)
    ]
    fake(
        fake_bin,
        "pg_restore",
        "sys.stderr.write('pg_restore: error: could not read input file: end of file\\n')\n"
        "sys.exit(1)",
    )
    with pytest.raises(BackupError) as failed:
        backup.backup_database(PG_URL, tmp_path / "b", 2, start + timedelta(days=2))
    assert str(failed.value) == (
        "pg_restore failed reading the backup back: pg_restore: error: could not read input "
        "file: end of file"
    )
    assert backup.backups(tmp_path / "b") == list(reversed(kept))  # the older ones stay
    assert sorted((tmp_path / "b").iterdir()) == kept
