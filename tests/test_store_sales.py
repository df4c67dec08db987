"""`python -m bot store-sales import`: the till's daily totals, on both engines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
        yield DbCli(db, tmp_path, monkeypatch, capsys)


def stored(cli: DbCli) -> list[tuple[Any, ...]]:
    return cli.query("SELECT CAST(day AS TEXT), revenue, checks FROM store_days ORDER BY day")


def everything(cli: DbCli) -> list[tuple[Any, ...]]:
    """The store days with when they were imported, and the audit trail."""
    return cli.query("SELECT * FROM store_days ORDER BY day") + cli.dump()


def test_imports_a_good_file(cli: DbCli, write_file: Any) -> None:
    path = write_file(
        "till.csv",
        "date,revenue,checks\n2026-09-01,12345.67,210\n2026-09-02,9000,150\n2026-09-03,0,0\n",
    )
    result = cli("store-sales", "import", str(path))
    assert result.code == 0, result.err
    assert result.out == "imported 3 store days, 2026-09-01 to 2026-09-03: 3 added, 0 replaced\n"
    assert result.err == ""
    assert stored(cli) == [
        ("2026-09-01", 1_234_567, 210),
        ("2026-09-02", 900_000, 150),
        ("2026-09-03", 0, 0),  # closed: a real day without sales
    ]
    assert cli.query("SELECT action FROM audit_events") == [("store_sales.imported",)]


def test_excel_flavours(cli: DbCli, write_file: Any) -> None:
    """What Russian- and Estonian-locale Excel writes: a BOM, `;`, CRLF, a decimal comma,
    grouped thousands (spaces, no-break spaces), day-first dates, capitalised headers, blank
    lines; mixed with ISO dates and a currency sign."""
    content = (
        "\ufeffDate;Revenue;Checks\r\n"
        "01.09.2026;1 234,50;1\u00a0024\r\n"
        "\r\n"
        "2.9.2026;12\u00a0500,5;90\r\n"
        "2026-09-03;700 ₽;7\r\n"
    )
    result = cli("store-sales", "import", str(write_file("excel.csv", content)))
    assert result.code == 0, result.err
    assert "3 added, 0 replaced" in result.out
    assert stored(cli) == [
        ("2026-09-01", 123_450, 1024),
        ("2026-09-02", 1_250_050, 90),
        ("2026-09-03", 70_000, 7),
    ]
    tabs = write_file("tabs.csv", "date\trevenue\tchecks\n2026-09-04\t10,00\t1\n")
    assert cli("store-sales", "import", str(tabs)).code == 0
    assert stored(cli)[-1] == ("2026-09-04", 1_000, 1)


def test_a_windows_1251_file_is_refused_with_one_line(cli: DbCli, write_file: Any) -> None:
    """As the purchase import does (`services.csvfile`): not guessed, refused, nothing written."""
    content = "date;revenue;checks;branch\n01.09.2026;100,50;3;Магазин\n".encode("cp1251")
    result = cli("store-sales", "import", str(write_file("cp1251.csv", content)))
    assert result.code == 1
    assert len(result.err.strip().splitlines()) == 1
    assert "not UTF-8" in result.err and "CSV UTF-8" in result.err
    assert stored(cli) == []


BAD_FILE = (
    "date,revenue,checks\n"
    "2026-09-01,100,3\n"  # 2: fine
    "2026-09-02,-5,3\n"  # 3: negative revenue
    "09/03/2026,100,3\n"  # 4: not a date
    "2026-09-04,100\n"  # 5: checks missing
    "2026-09-05,ten,3\n"  # 6: not a number
    "2099-01-05,100,3\n"  # 7: future
    "2026-09-06,100,3,extra\n"  # 8: too many cells
    "2026-09-07,10.5555,3\n"  # 9: too many decimals
    "2026-09-08,100,2.5\n"  # 10: not a whole number of checks
    "2026-09-09,100,0\n"  # 11: revenue without checks
    "2026-09-10,0,4\n"  # 12: checks without revenue
    "2026-09-01,200,5\n"  # 13: the same day again
    "2026-09-11,1,500,3\n"  # 14: ambiguous (a comma inside an unquoted field makes 4 cells)
    '2026-09-12,"1,500",3\n'  # 15: ambiguous amount
    ",100,3\n"  # 16: date missing
    "2026-09-13,100,-3\n"  # 17: negative checks
    "2026-09-14,100,3\n"  # 18: fine
)


def test_a_broken_file_names_every_bad_line_and_writes_nothing(cli: DbCli, write_file: Any) -> None:
    good = write_file("good.csv", "date,revenue,checks\n2026-09-01,50,1\n")
    assert cli("store-sales", "import", str(good)).code == 0
    before = everything(cli)
    result = cli("store-sales", "import", str(write_file("bad.csv", BAD_FILE)))
    assert result.code == 1
    assert result.out == ""
    assert result.err.strip().splitlines() == [
        "bad.csv:3: revenue must not be negative",
        "bad.csv:4: date '09/03/2026' is not YYYY-MM-DD or DD.MM.YYYY",
        "bad.csv:5: checks is missing",
        "bad.csv:6: revenue is not a number",
        "bad.csv:7: date 2099-01-05 is in the future",
        "bad.csv:8: more cells than header columns",
        "bad.csv:9: revenue has too many decimal places",
        "bad.csv:10: checks '2.5' is not a whole number",
        "bad.csv:11: revenue without checks: checks is 0",
        "bad.csv:12: checks without revenue: revenue is 0",
        "bad.csv:13: date 2026-09-01 repeats line 2",
        "bad.csv:14: more cells than header columns",
        "bad.csv:15: revenue '1,500' is ambiguous (thousands or decimals?): write 1500 or 1.50",
        "bad.csv:16: date is missing",
        "bad.csv:17: checks must not be negative",
        "error: 15 invalid line(s); nothing was imported",
    ]
    assert everything(cli) == before  # the day stored earlier is untouched too


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty"),
        ("day,revenue,checks\n2026-09-01,1,1\n", "wrong header"),
        ("date,revenue,checks\n", "no days in the file"),
    ],
)
def test_files_that_are_not_store_totals(
    cli: DbCli, write_file: Any, content: str, message: str
) -> None:
    result = cli("store-sales", "import", str(write_file("x.csv", content)))
    assert result.code == 1
    assert len(result.err.strip().splitlines()) == 1 and message in result.err
    assert stored(cli) == []


def test_re_importing_a_corrected_file_replaces_the_days(cli: DbCli, write_file: Any) -> None:
    first = write_file(
        "september.csv",
        "date,revenue,checks\n2026-09-01,100,10\n2026-09-02,200,20\n2026-09-03,300,30\n",
    )
    assert "3 added, 0 replaced" in cli("store-sales", "import", str(first)).out
    corrected = write_file(
        "corrected.csv",
        "date,revenue,checks\n2026-09-02,250,25\n2026-09-03,300,30\n2026-09-04,400,40\n",
    )
    result = cli("store-sales", "import", str(corrected))
    assert result.code == 0, result.err
    assert result.out == "imported 3 store days, 2026-09-02 to 2026-09-04: 1 added, 2 replaced\n"
    assert stored(cli) == [
        ("2026-09-01", 10_000, 10),  # not in the second file: kept
        ("2026-09-02", 25_000, 25),  # replaced by the corrected figures
        ("2026-09-03", 30_000, 30),
        ("2026-09-04", 40_000, 40),
    ]
    # The same file once more is fine as well: every day replaced by itself.
    again = cli("store-sales", "import", str(corrected))
    assert "0 added, 3 replaced" in again.out
    assert len(stored(cli)) == 4


def per_branch(cli: DbCli) -> list[tuple[Any, ...]]:
    """The store days with their branch (1: the first shop)."""
    return cli.query(
        "SELECT CAST(day AS TEXT), branch_id, revenue, checks FROM store_days "
        "ORDER BY day, branch_id"
    )


def test_a_chains_branch_column_names_the_branch_of_each_line(cli: DbCli, write_file: Any) -> None:
    for name, chat in (("Tallinn", "-100111"), ("Tartu", "-100222")):
        assert cli("branches", "add", "--name", name, "--staff-chat", chat).code == 0
    tallinn, tartu = (
        cli.scalar("SELECT id FROM branches WHERE name = :n", n=n) for n in ("Tallinn", "Tartu")
    )
    path = write_file(
        "chain.csv",
        "date;revenue;checks;branch\n"
        "01.09.2026;100,00;10;Tallinn\n"
        "01.09.2026;50,50;5; tartu \n"  # names are compared case-insensitively
        "01.09.2026;30;3;\n"  # an empty cell: the first shop
        "02.09.2026;70;7;TALLINN\n",
    )
    result = cli("store-sales", "import", str(path))
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "imported 4 store days of 3 branch(es), 2026-09-01 to 2026-09-02: 4 added, 0 replaced",
    ]
    assert per_branch(cli) == [
        ("2026-09-01", 1, 3_000, 3),
        ("2026-09-01", tallinn, 10_000, 10),
        ("2026-09-01", tartu, 5_050, 5),
        ("2026-09-02", tallinn, 7_000, 7),
    ]
    # A corrected day of one branch replaces that branch's day only.
    fix = write_file("fix.csv", "date,revenue,checks,branch\n2026-09-01,60,6,Tartu\n")
    assert "0 added, 1 replaced" in cli("store-sales", "import", str(fix)).out
    assert per_branch(cli)[2] == ("2026-09-01", tartu, 6_000, 6)
    twice = write_file(
        "twice.csv", "date,revenue,checks,branch\n2026-09-05,1,1,Tartu\n2026-09-05,2,2,tartu\n"
    )
    result = cli("store-sales", "import", str(twice))
    assert result.code == 1
    assert "twice.csv:3: date 2026-09-05, branch 'tartu', repeats line 2" in result.err


def test_an_unknown_branch_is_a_bad_line_and_nothing_is_written(
    cli: DbCli, write_file: Any
) -> None:
    assert cli("branches", "add", "--name", "Tartu", "--staff-chat", "-100222").code == 0
    before = everything(cli)
    path = write_file(
        "chain.csv",
        "date,revenue,checks,branch\n2026-09-01,100,10,Tartu\n2026-09-01,50,5,Pärnu\n",
    )
    result = cli("store-sales", "import", str(path))
    assert result.code == 1
    assert result.out == ""
    assert result.err.strip().splitlines() == [
        "chain.csv:3: branch 'Pärnu' is not a branch of the chain "
        "(python -m bot branches list shows them)",
        "error: 1 invalid line(s); nothing was imported",
    ]
    assert everything(cli) == before


def test_a_one_shop_file_with_a_branch_column_needs_no_branch(
    cli: DbCli, write_file: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Empty branch cells, or the shop's own name (STORE_NAME), are the first shop's days."""
    monkeypatch.setenv("STORE_NAME", "Kohvik Mari")
    path = write_file(
        "shop.csv", "date,revenue,checks,branch\n2026-09-01,100,10,\n2026-09-02,5,1,kohvik mari\n"
    )
    result = cli("store-sales", "import", str(path))
    assert result.code == 0, result.err
    assert stored(cli) == [("2026-09-01", 10_000, 10), ("2026-09-02", 500, 1)]
    assert cli.query("SELECT DISTINCT branch_id FROM store_days") == [(1,)]


def test_the_kpis_see_the_imported_days(cli: DbCli, write_file: Any) -> None:
    """Imported totals reach `kpi --json` (no card purchases: every check is someone else's)."""
    path = write_file("till.csv", "date,revenue,checks\n2026-09-01,1000,10\n2026-09-03,500,4\n")
    assert cli("store-sales", "import", str(path)).code == 0
    result = cli("kpi", "--from", "2026-09-01", "--to", "2026-09-07", "--json")
    assert result.code == 0, result.err
    store = json.loads(result.out)["impact"]["store"]
    assert store == {
        "days_covered": 2,
        "covered": [["2026-09-01", "2026-09-01"], ["2026-09-03", "2026-09-03"]],
        "revenue": 1500.0,
        "checks": 14,
        "card_revenue": 0.0,
        "card_purchases": 0,
        "card_share": 0.0,
        "average_check_cardholders": None,  # no card purchases
        "average_check_others": 107.14,  # 1,500 / 14
    }
