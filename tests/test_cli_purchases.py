"""`python -m bot purchases import`: the docs/design.md contract, line by line, on both engines."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.import_helpers import Db, DbCli


@pytest.fixture
def cli(
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[DbCli]:
    with Db(db_url) as db:
        cli = DbCli(db, tmp_path, monkeypatch, capsys)
        assert cli("cards", "add", "--from", "100001", "--to", "100010", "--pct", "7").code == 0
        yield cli


def test_imports_history_and_issues_cards_at_first_purchase(cli: DbCli, write_file) -> None:  # type: ignore[no-untyped-def]
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
        # Rows go in by card, then time (each write then touches neighbouring index pages).
        ("100001", 10000, 10, 1000, 9000, "import", "2026-02-01 15:30:00.000000"),
        ("100001", 123450, 7, 8642, 114808, "import", "2026-02-28 21:00:00.000000"),
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


def test_russian_excel_export_is_accepted(cli: DbCli, write_file) -> None:  # type: ignore[no-untyped-def]
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


def test_atomic_import_reports_every_bad_line_and_writes_nothing(cli: DbCli, write_file) -> None:  # type: ignore[no-untyped-def]
    before = cli.dump()
    result = cli("purchases", "import", str(write_file("bad.csv", BAD_FILE)))
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "bad.csv:3: amount must be greater than zero",
        "bad.csv:4: amount must be greater than zero",
        "bad.csv:5: date '01/02/2026' is not YYYY-MM-DD, DD.MM.YYYY [HH:MM[:SS]] or an ISO "
        "date-time",
        "bad.csv:6: amount is missing",
        "bad.csv:7: card_number 'ABC' is not a card number",
        "bad.csv:8: amount is not a number",
        "bad.csv:9: date 2099-01-05 is in the future",
        "bad.csv:10: more cells than header columns",
        "bad.csv:11: amount has too many decimal places",
        "error: 9 invalid line(s); nothing was imported",
    ]
    assert cli.dump() == before


def test_skip_invalid_imports_the_rest_and_the_same_file_is_refused(cli: DbCli, write_file) -> None:  # type: ignore[no-untyped-def]
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


def test_failed_import_can_be_retried_after_fixing(cli: DbCli, write_file) -> None:  # type: ignore[no-untyped-def]
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
def test_broken_files_are_refused(cli: DbCli, write_file, content: bytes, message: str) -> None:  # type: ignore[no-untyped-def]
    before = cli.dump()
    result = cli("purchases", "import", str(write_file("broken.csv", content)))
    assert result.code == 1
    assert message in result.err
    assert cli.dump() == before


def test_bad_pct_option(cli: DbCli, write_file) -> None:  # type: ignore[no-untyped-def]
    path = write_file("pos.csv", "card_number,date,amount\n999999,2026-01-01,12\n")
    result = cli("purchases", "import", str(path), "--pct", "0")
    assert result.code == 1 and "--pct must be between 1 and 99" in result.err


# ---------------------------------------------------------------- re-importing a corrected file

CORRECTED_FILE = (
    "card_number,date,amount\n"
    "100001,2026-01-01,100\n"  # imported before (line 2 of bad.csv)
    "100001,2026-01-02,7\n"
    "100001,2026-01-03,5\n"
    "100001,2026-01-02,5\n"
    "100001,2026-01-04,5\n"
    "100001,2026-01-05,5\n"
    "100001,2026-01-05,10\n"
    "100001,2026-01-05,10\n"  # the same purchase twice in one file: both are real
    "100001,2026-01-06,10.55\n"
    "100003,2026-01-07,250\n"  # imported before (line 12 of bad.csv)
)


def test_reimporting_a_corrected_file_skips_rows_already_imported(cli: DbCli, write_file) -> None:  # type: ignore[no-untyped-def]
    assert (
        cli("purchases", "import", str(write_file("bad.csv", BAD_FILE)), "--skip-invalid").code == 0
    )
    result = cli("purchases", "import", str(write_file("fixed.csv", CORRECTED_FILE)))
    assert result.code == 0, result.err
    assert "imported 8 purchases, 2026-01-02 to 2026-01-06; 2 already present; 0 new cards" in (
        result.out
    )
    rows = cli.query(
        "SELECT c.number, p.created_at, p.amount, count(*) FROM purchases p "
        "JOIN cards c ON c.id = p.card_id GROUP BY 1, 2, 3 HAVING count(*) > 1"
    )
    assert rows == [("100001", "2026-01-04 21:00:00.000000", 1000, 2)]  # the file's own pair
    assert cli.scalar("SELECT count(*) FROM purchases") == 10
    assert cli.scalar("SELECT purchase_count FROM cards WHERE number = '100001'") == 9


def test_present_rows_are_counted_as_often_as_the_ledger_holds_them(cli: DbCli, write_file) -> None:  # type: ignore[no-untyped-def]
    first = "card_number,date,amount\n100002,2026-02-01,10\n100002,2026-02-01,10\n"
    assert cli("purchases", "import", str(write_file("a.csv", first))).code == 0
    # Three equal rows now: two are the ones imported before, the third is new.
    again = first + "100002,2026-02-01,10\n100002,2026-02-02 10:00,10\n"
    result = cli("purchases", "import", str(write_file("b.csv", again)))
    assert result.code == 0, result.err
    assert "imported 2 purchases" in result.out and "2 already present" in result.out
    assert cli.scalar("SELECT count(*) FROM purchases WHERE amount = 1000") == 4


def test_a_till_sale_is_not_an_imported_row(cli: DbCli, write_file) -> None:  # type: ignore[no-untyped-def]
    card_id = cli.scalar("SELECT id FROM cards WHERE number = '100004'")
    cli.db.execute(  # a sale recorded at the till at the same moment
        "INSERT INTO purchases (card_id, amount, discount_pct, discount_amount, paid_amount, "
        "source, created_at) VALUES (:card, 1000, 7, 70, 930, 'bot', "
        "'2026-02-28 21:00:00.000000')",
        card=card_id,
    )
    path = write_file("pos.csv", "card_number,date,amount\n100004,2026-03-01,10\n")
    result = cli("purchases", "import", str(path))
    assert result.code == 0 and "imported 1 purchases" in result.out
    assert "already present" not in result.out


def test_a_file_whose_rows_are_all_present_writes_nothing(cli: DbCli, write_file) -> None:  # type: ignore[no-untyped-def]
    assert cli("purchases", "import", str(write_file("a.csv", CORRECTED_FILE))).code == 0
    before = cli.dump()
    copy = CORRECTED_FILE.replace("card_number,date,amount", "CARD_NUMBER;DATE;AMOUNT")
    result = cli("purchases", "import", str(write_file("b.csv", copy.replace(",", ";"))))
    assert result.code == 0, result.err
    assert result.out.strip() == (
        "imported 0 purchases; 10 already present; 0 new cards; 0 invalid lines skipped"
    )
    assert cli.dump() == before


# --------------------------------------------------------------------- dates as Excel writes them


def test_day_first_dates_as_russian_and_estonian_excel_writes_them(cli: DbCli, write_file) -> None:  # type: ignore[no-untyped-def]
    path = write_file(
        "excel.csv",
        "card_number;date;amount\n"
        "100001;01.09.2026;10\n"
        "100001;01.09.2026 14:30;10\n"
        "100001;1.9.2026 9:05:30;10\n"
        "100001;31.02.2026;10\n"
        "100001;01.09.26;10\n",
    )
    result = cli("purchases", "import", str(path), "--skip-invalid")
    assert result.code == 0, result.err
    assert result.err.strip().splitlines() == [
        "excel.csv:5: date '31.02.2026' is not YYYY-MM-DD, DD.MM.YYYY [HH:MM[:SS]] or an ISO "
        "date-time",
        "excel.csv:6: date '01.09.26' is not YYYY-MM-DD, DD.MM.YYYY [HH:MM[:SS]] or an ISO "
        "date-time",
    ]
    assert cli.query("SELECT created_at FROM purchases ORDER BY created_at") == [
        ("2026-08-31 21:00:00.000000",),  # store time is Europe/Moscow, UTC+3
        ("2026-09-01 06:05:30.000000",),
        ("2026-09-01 11:30:00.000000",),
    ]


# ------------------------------------------------------------------------------ ambiguous amounts


def test_ambiguous_amounts_are_refused_with_a_one_line_reason(cli: DbCli, write_file) -> None:  # type: ignore[no-untyped-def]
    path = write_file(
        "pos.csv",
        "card_number;date;amount\n"
        "100001;2026-01-01;99,999\n"
        "100001;2026-01-01;1.500\n"
        "100001;2026-01-01;1,000,000\n"
        "100001;2026-01-01;2 500,50\n"
        '100001;2026-01-01;"2,500.50"\n'
        "100001;2026-01-01;2500 ₽\n",
    )
    before = cli.dump()
    result = cli("purchases", "import", str(path))
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "pos.csv:2: amount '99,999' is ambiguous (thousands or decimals?): write 99999 or 99.99",
        "pos.csv:3: amount '1.500' is ambiguous (thousands or decimals?): write 1500 or 1.50",
        "error: 2 invalid line(s); nothing was imported",
    ]
    assert cli.dump() == before
    assert cli("purchases", "import", str(path), "--skip-invalid").code == 0
    assert cli.query("SELECT amount FROM purchases ORDER BY amount") == [
        (250000,),
        (250050,),
        (250050,),
        (100000000,),
    ]


# ------------------------------------------------------------------ no traceback for any input

GOOD_LINES = "".join(f"{100001 + i % 10},2026-01-01,{i % 900 + 1}\n" for i in range(50_000))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # A header longer than the csv module's field limit (131,072 characters).
        ("card_number,date,amount," + "x" * 140_000 + "\n100001,2026-01-01,5\n", "header"),
        ("card_number,date,amount\n100001,0001-01-01,5\n", "1 invalid line(s)"),
        ("card_number,date,amount\n100001,9999-12-31T23:59-05:00,5\n", "1 invalid line(s)"),
        # Bad lines after 50,000 good ones (once the first rows were on their way in).
        (
            "card_number,date,amount\n"
            + GOOD_LINES
            + '100001,"2026-01-01,5\n'
            + "1,2,3\n" * 50_000,
            "line 50002",
        ),
        (
            "card_number,date,amount\n" + GOOD_LINES + "100001,2026-01-01,5\x00\n",
            "1 invalid line(s)",
        ),
        (
            ("card_number,date,amount\n" + GOOD_LINES).encode() + b"100001,2026-01-01,\xff5\n",
            "line 50002: not UTF-8 text",
        ),
    ],
    ids=["long-header", "year-1", "year-9999", "late-broken-quote", "late-nul", "late-bad-utf8"],
)
def test_broken_input_gives_one_line_and_writes_nothing(  # type: ignore[no-untyped-def]
    cli: DbCli, write_file, caplog: pytest.LogCaptureFixture, content: str | bytes, message: str
) -> None:
    caplog.set_level(logging.WARNING)  # e.g. "Task exception was never retrieved"
    before = cli.dump()
    path = write_file("big.csv", content)
    result = cli("purchases", "import", str(path))
    assert result.code == 1, result.err[-500:]
    assert message in result.err
    assert "Traceback" not in result.err
    assert all(len(line) < 300 for line in result.err.splitlines())
    assert cli.dump() == before
    # --skip-invalid: the good lines may go in, the bad one is reported; never a traceback.
    result = cli("purchases", "import", str(path), "--skip-invalid")
    assert result.code in (0, 1), result.err[-500:]
    assert all(len(line) < 300 for line in result.err.splitlines())
    if result.code == 1:
        assert cli.dump() == before
    assert caplog.records == []
