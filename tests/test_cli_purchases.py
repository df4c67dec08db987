"""`python -m bot purchases import`: the DESIGN.md contract, line by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import Cli


@pytest.fixture
def cli(db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    cli = Cli(db_path, monkeypatch, capsys)
    assert cli("cards", "add", "--from", "100001", "--to", "100010", "--pct", "7").code == 0
    return cli


def test_imports_history_and_issues_cards_at_first_purchase(cli: Cli, write_file) -> None:  # type: ignore[no-untyped-def]
    path = write_file(
        "pos.csv",
        "card_number,date,amount,discount_pct\n"
        "100001,2026-03-01,1234.50,\n"
        "100001,2026-02-01T18:30:00,100,10\n"
        "555 555,2026-04-02,99.99,\n",
    )
    result = cli("purchases", "import", str(path), "--pct", "10")
    assert result.code == 0, result.err
    assert "imported 3 purchases, 2026-02-01 to 2026-04-02; 1 new cards" in result.out
    rows = cli.query(
        "SELECT c.number, p.amount, p.discount_pct, p.discount_amount, p.paid_amount, p.source, "
        "p.created_at FROM purchases p JOIN cards c ON c.id = p.card_id ORDER BY p.id"
    )
    assert rows == [
        # Store time is Europe/Moscow (UTC+3): local midnight is 21:00 UTC the day before.
        ("100001", 123450, 7, 8642, 114808, "import", "2026-02-28 21:00:00.000000"),
        ("100001", 10000, 10, 1000, 9000, "import", "2026-02-01 15:30:00.000000"),
        ("555555", 9999, 10, 1000, 8999, "import", "2026-04-01 21:00:00.000000"),
    ]
    assert cli.query(
        "SELECT number, base_pct, kind, status, issued_at FROM cards "
        "WHERE issued_at IS NOT NULL ORDER BY number"
    ) == [
        ("100001", 7, "printed", "issued", "2026-02-01 15:30:00.000000"),
        ("555555", 10, "printed", "issued", "2026-04-01 21:00:00.000000"),
    ]
    assert cli.scalar("SELECT count(*) FROM cards WHERE status = 'in_stock'") == 9


def test_russian_excel_export_is_accepted(cli: Cli, write_file) -> None:  # type: ignore[no-untyped-def]
    content = "\ufeffCard_Number;Date;Amount\r\n100002;2026-05-05;1 234,50\r\n\r\n"
    result = cli("purchases", "import", str(write_file("excel.csv", content)))
    assert result.code == 0, result.err
    assert cli.query("SELECT amount FROM purchases") == [(123450,)]


BAD_FILE = (
    "card_number,date,amount\n"
    "100001,2026-01-01,100\n"  # 2: fine
    "100001,2026-01-02,0\n"  # 3: zero
    "100001,2026-01-03,-5\n"  # 4: negative
    "100001,01/02/2026,5\n"  # 5: unparsable date
    "100001,2026-01-04\n"  # 6: missing column
    "ABC,2026-01-04,5\n"  # 7: not a card number
    "100001,2026-01-05,ten\n"  # 8: not a number
    "100001,2099-01-05,10\n"  # 9: future
    "100001,2026-01-05,10,extra\n"  # 10: too many cells
    "100001,2026-01-06,10.5555\n"  # 11: too many decimals
    "100003,2026-01-07,250\n"  # 12: fine
)


def test_atomic_import_reports_every_bad_line_and_writes_nothing(cli: Cli, write_file) -> None:  # type: ignore[no-untyped-def]
    before = cli.dump()
    result = cli("purchases", "import", str(write_file("bad.csv", BAD_FILE)))
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "bad.csv:3: amount must be greater than zero",
        "bad.csv:4: amount must be greater than zero",
        "bad.csv:5: date '01/02/2026' is not YYYY-MM-DD or an ISO date-time",
        "bad.csv:6: amount is missing",
        "bad.csv:7: card_number 'ABC' is not a card number",
        "bad.csv:8: amount is not a number",
        "bad.csv:9: date 2099-01-05 is in the future",
        "bad.csv:10: more cells than header columns",
        "bad.csv:11: amount has too many decimal places",
        "error: 9 invalid line(s); nothing was imported",
    ]
    assert cli.dump() == before


def test_skip_invalid_imports_the_rest_and_the_same_file_is_refused(cli: Cli, write_file) -> None:  # type: ignore[no-untyped-def]
    path = write_file("bad.csv", BAD_FILE)
    result = cli("purchases", "import", str(path), "--skip-invalid")
    assert result.code == 0
    assert "imported 2 purchases" in result.out and "9 invalid lines skipped" in result.out
    assert len(result.err.strip().splitlines()) == 9
    assert cli.query("SELECT amount FROM purchases ORDER BY id") == [(10000,), (25000,)]
    before = cli.dump()
    again = cli("purchases", "import", str(path), "--skip-invalid")
    assert again.code == 1
    assert "this file was already imported (import #1" in again.err
    assert cli.dump() == before


def test_failed_import_can_be_retried_after_fixing(cli: Cli, write_file) -> None:  # type: ignore[no-untyped-def]
    path = write_file("pos.csv", "card_number,date,amount\n100001,2026-01-01,abc\n")
    assert cli("purchases", "import", str(path)).code == 1
    path.write_text("card_number,date,amount\n100001,2026-01-01,12\n", encoding="utf-8")
    assert cli("purchases", "import", str(path)).code == 0
    assert cli.scalar("SELECT count(*) FROM imports") == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"\xef\xbb\xbf\r\n", "the file is empty"),
        (b"card,date,amount\n1,2026-01-01,5\n", "wrong header 'card,date,amount'"),
        (b"card_number,date\n100001,2026-01-01\n", "wrong header"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "binary file, not a CSV"),
        (
            b"card_number,date,amount\n100001,2026-01-01,5\n" + b"x" * 70000 + b"\xff\xfe\n",
            "not UTF-8",
        ),
    ],
)
def test_broken_files_are_refused(cli: Cli, write_file, content: bytes, message: str) -> None:  # type: ignore[no-untyped-def]
    before = cli.dump()
    result = cli("purchases", "import", str(write_file("broken.csv", content)))
    assert result.code == 1
    assert message in result.err
    assert cli.dump() == before


def test_bad_pct_option(cli: Cli, write_file) -> None:  # type: ignore[no-untyped-def]
    path = write_file("pos.csv", "card_number,date,amount\n999999,2026-01-01,12\n")
    result = cli("purchases", "import", str(path), "--pct", "0")
    assert result.code == 1 and "--pct must be between 1 and 99" in result.err
