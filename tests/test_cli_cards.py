"""`python -m bot cards add|import`: happy paths and every refusal writes nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from config import PROJECT_ROOT
from db.database import Database
from db.models import Card
from services import inventory
from services.errors import InventoryError
from services.inventory import InventorySummary
from tests.cli_helpers import Cli


@pytest.fixture
def cli(db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(db_path, monkeypatch, capsys)


def test_help_lists_commands_and_each_explains_itself() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bot", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
    ).stdout
    for command in ("run", "migrate", "cards", "purchases"):
        assert command in out
    sub = subprocess.run(
        [sys.executable, "-m", "bot", "cards", "add", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
    ).stdout
    assert "--from" in sub and "--segment" in sub and "nothing is written" in sub


def test_owner_registers_the_printed_ranges(cli: Cli) -> None:
    assert cli("cards", "add", "--from", "100001", "--to", "106000", "--pct", "5").code == 0
    assert cli("cards", "add", "--from", "106001", "--to", "109000", "--pct", "7").code == 0
    result = cli(
        "cards", "add", "--from", "109001", "--to", "110000", "--pct", "10", "--segment", "b2b"
    )
    assert result.code == 0
    assert "added 1000 cards 109001-110000 at 10% (b2b)" in result.out
    assert cli.query("SELECT base_pct, segment, status, count(*) FROM cards GROUP BY 1, 2, 3") == [
        (5, "b2c", "in_stock", 6000),
        (7, "b2c", "in_stock", 3000),
        (10, "b2b", "in_stock", 1000),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "100500", "--to", "100600", "--pct", "7"], "already exist"),
        (["--from", "200000", "--to", "199000", "--pct", "7"], "is before --from"),
        (["--from", "300000", "--to", "300010", "--pct", "0"], "pct must be between 1 and 99"),
        (["--from", "300000", "--to", "300010", "--pct", "100"], "pct must be between 1 and 99"),
        (["--from", "abc", "--to", "300010", "--pct", "5"], "invalid int value: 'abc'"),
        (
            ["--from", "300000", "--to", "300010", "--pct", "5", "--segment", "vip"],
            "invalid choice: 'vip'",
        ),
        (["--from", "1", "--to", "2000000", "--pct", "5"], "at most 1,000,000 cards"),
    ],
)
def test_bad_ranges_are_refused_with_one_line(cli: Cli, args: list[str], message: str) -> None:
    assert cli("cards", "add", "--from", "100001", "--to", "101000", "--pct", "5").code == 0
    before = cli.dump()
    result = cli("cards", "add", *args)
    assert result.code != 0
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert cli.dump() == before


def test_import_cards_csv_with_pins_and_segments(cli: Cli, write_file) -> None:  # type: ignore[no-untyped-def]
    path = write_file(
        "cards.csv",
        "\ufeffnumber;pct;segment;pin\n500 001;5;b2c;1234\n500-002;7;B2B;\n500003;10;;9876\n",
    )
    result = cli("cards", "import", str(path))
    assert result.code == 0, result.err
    assert "imported 3 cards (1 at 5%, 1 at 7%, 1 at 10%)" in result.out
    assert cli.query("SELECT number, base_pct, segment, pin FROM cards ORDER BY number") == [
        ("500001", 5, "b2c", "1234"),
        ("500002", 7, "b2b", None),
        ("500003", 10, "b2c", "9876"),
    ]


def test_import_cards_reports_every_bad_line_and_writes_nothing(cli: Cli, write_file) -> None:  # type: ignore[no-untyped-def]
    assert cli("cards", "add", "--from", "700000", "--to", "700010", "--pct", "5").code == 0
    before = cli.dump()
    path = write_file(
        "cards.csv",
        "number,pct\n600001,5\n60000X,5\n600002,150\n600001,7\n700005,5\n600003,five\n",
    )
    result = cli("cards", "import", str(path))
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert lines[:-1] == [
        "cards.csv:3: card number must be digits, not '60000X'",
        "cards.csv:4: pct must be between 1 and 99, not 150",
        "cards.csv:5: card 600001 repeats line 2",
        "cards.csv:7: pct must be a whole number, not 'five'",
        "cards.csv:6: card 700005 already exists",
    ]
    assert lines[-1] == "error: 5 invalid line(s); nothing was imported"
    assert cli.dump() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"number,percent\n1000,5\n", "wrong header 'number,percent'; expected number,pct"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file, not a CSV"),
        ("number,pct\n1000,5\n".encode("cp1251") + "Привет".encode("cp1251"), "not UTF-8"),
    ],
)
def test_broken_card_files(cli: Cli, write_file, content: bytes, message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("cards", "import", str(write_file("cards.csv", content)))
    assert result.code == 1
    assert message in result.err
    assert cli.scalar("SELECT count(*) FROM cards") == 0


def test_missing_file(cli: Cli) -> None:
    result = cli("cards", "import", "/nonexistent/cards.csv")
    assert result.code == 1 and "no such file" in result.err


async def test_overlapping_ranges_added_at_once_write_one_and_refuse_the_rest(
    engine: AsyncEngine,
) -> None:
    """Six overlapping ranges registered at the same moment (six terminals, or six workers on
    PostgreSQL): one is written whole, the others are refused with the line the command
    prints, and no card exists twice."""
    db = Database.of(engine)
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    outcomes = await asyncio.gather(
        *(inventory.add_range(db, 500000 + 10 * i, 500100 + 10 * i, 5, now=now) for i in range(6)),
        return_exceptions=True,
    )
    written = [o for o in outcomes if isinstance(o, InventorySummary)]
    refused = [o for o in outcomes if isinstance(o, InventoryError)]
    assert len(written) == 1 and written[0].added == 101
    assert len(refused) == 5, outcomes
    async with engine.connect() as connection:
        numbers = (await connection.execute(select(Card.number))).scalars().all()
    assert len(numbers) == len(set(numbers)) == 101
