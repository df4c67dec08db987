"""`python -m bot branches add|list|edit|close` and `cards add --branch`: what the owner types,
what the database holds, and that every refusal is one line, exit code 1 (2 for a usage problem)
and nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import Cli

MAIN = "Main Shop"
MAIN_GROUP = "-1009000"


@pytest.fixture
def cli(db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    monkeypatch.setenv("STORE_NAME", MAIN)
    monkeypatch.setenv("STORE_ADDRESS", "1 Main St")
    monkeypatch.setenv("STAFF_CHAT_ID", MAIN_GROUP)
    return Cli(db_path, monkeypatch, capsys)


def written(cli: Cli) -> list[tuple[Any, ...]]:
    """Everything a branch command could write."""
    rows: list[tuple[Any, ...]] = []
    for table in ("branches", "branch_managers", "audit_events", "cards"):
        rows += [(table, *row) for row in cli.query(f"SELECT * FROM {table} ORDER BY 1, 2")]
    return rows


def add_tartu(cli: Cli, *extra: str) -> None:
    result = cli(
        "branches",
        "add",
        "--name",
        "Tartu",
        "--staff-chat",
        "-100222",
        "--address",
        "Rüütli 1",
        "--hours",
        "9-21",
        "--phone",
        "+372 5555 0000",
        "--lat",
        "58.3806",
        "--lon",
        "26.7251",
        "--manager",
        "555",
        "666",
        *extra,
    )
    assert result.code == 0, result.err
    assert result.out == "added branch 'Tartu' (id 2, staff group -100222)\n"


def test_add_list_edit_close(cli: Cli) -> None:
    add_tartu(cli)
    assert cli.query(
        "SELECT id, name, address, hours, phone, latitude, longitude, staff_chat_id, closed_at "
        "FROM branches WHERE id = 2"
    ) == [(2, "Tartu", "Rüütli 1", "9-21", "+372 5555 0000", 58.3806, 26.7251, -100222, None)]
    assert cli.query("SELECT tg_id FROM branch_managers WHERE branch_id = 2 ORDER BY 1") == [
        (555,),
        (666,),
    ]

    table = cli("branches", "list")
    assert table.code == 0
    lines = table.out.splitlines()
    assert lines[0].split() == [
        "id",
        "name",
        "staff",
        "group",
        "address",
        "hours",
        "phone",
        "location",
        "managers",
        "status",
    ]
    assert lines[1].split()[:4] == ["1", "Main", "Shop", MAIN_GROUP]
    assert "1 Main St" in lines[1] and lines[1].endswith("open")
    tartu = lines[2]
    for cell in ("Tartu", "-100222", "Rüütli 1", "9-21", "+372 5555 0000", "58.3806,26.7251"):
        assert cell in tartu
    assert "555,666" in tartu and tartu.endswith("open")

    listed = json.loads(cli("branches", "list", "--json").out)
    assert [b["name"] for b in listed] == [MAIN, "Tartu"]
    assert listed[1]["managers"] == [555, 666] and listed[1]["latitude"] == 58.3806

    edited = cli(
        "branches",
        "edit",
        "tartu",  # names are matched case-insensitively
        "--name",
        "Tartu Kesklinn",
        "--hours",
        "8-22",
        "--no-location",
        "--no-managers",
    )
    assert edited.code == 0, edited.err
    assert edited.out.startswith("changed branch 'Tartu Kesklinn': ")
    assert cli.query("SELECT name, hours, latitude, longitude FROM branches WHERE id = 2") == [
        ("Tartu Kesklinn", "8-22", None, None)
    ]
    assert cli.scalar("SELECT count(*) FROM branch_managers WHERE branch_id = 2") == 0
    assert cli("branches", "edit", "Tartu Kesklinn", "--manager", "777").code == 0
    assert cli.query("SELECT tg_id FROM branch_managers WHERE branch_id = 2") == [(777,)]
    # The first shop's managers are the only thing of it the CLI changes.
    assert cli("branches", "edit", MAIN, "--manager", "888").code == 0
    assert cli.query("SELECT tg_id FROM branch_managers WHERE branch_id = 1") == [(888,)]

    closed = cli("branches", "close", "Tartu Kesklinn")
    assert closed.code == 0
    assert closed.out == "closed branch 'Tartu Kesklinn': it sells no more; its history stays\n"
    assert cli.scalar("SELECT closed_at IS NOT NULL FROM branches WHERE id = 2") == 1
    assert "closed " in cli("branches", "list").out.splitlines()[2]
    assert cli.query("SELECT action FROM audit_events WHERE action LIKE 'branch%' ORDER BY id") == [
        ("branch_added",),
        ("branch_edited",),
        ("branch_edited",),
        ("branch_edited",),
        ("branch_closed",),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "--name", "TARTU", "--staff-chat", "-100999"], "named 'TARTU' exists already"),
        (["add", "--name", "main shop", "--staff-chat", "-100999"], "exists already"),
        (["add", "--name", "Pärnu", "--staff-chat", "-100222"], "the staff group of the branch"),
        (["add", "--name", "Pärnu", "--staff-chat", MAIN_GROUP], "of the branch 'Main Shop'"),
        (["add", "--name", "Pärnu", "--staff-chat", "abc"], "numeric id"),
        (["add", "--name", "Pärnu", "--staff-chat", "12345"], "numeric id"),
        (["add", "--name", "Pärnu", "--staff-chat", "-1003", "--lat", "58.3"], "--lat and --lon"),
        (
            ["add", "--name", "Pärnu", "--staff-chat", "-1003", "--lat", "x", "--lon", "1"],
            "--lat and --lon",
        ),
        (["add", "--name", "Pärnu", "--staff-chat", "-1003", "--manager", "bob"], "user ids"),
        (["add", "--name", " ", "--staff-chat", "-1003"], "a branch needs a name"),
        (["add", "--name", "Pärnu"], "the following arguments are required: --staff-chat"),
        (["edit", "Narva", "--hours", "9-18"], "no branch named 'Narva'"),
        (["edit", "Tartu", "--name", "Main Shop"], "exists already"),
        (["edit", "Tartu", "--staff-chat", MAIN_GROUP], "already the staff group"),
        (["edit", "Tartu", "--lon", "26.7"], "--lat and --lon"),
        (["edit", "Tartu"], "nothing to change"),
        (["edit", "Tartu", "--manager", "1", "--no-managers"], "not allowed with argument"),
        (["edit", MAIN, "--hours", "9-18"], "change STORE_HOURS there"),
        (["edit", MAIN, "--name", "Central"], "change STORE_NAME there"),
        (["edit", MAIN, "--staff-chat", "-1004"], "change STAFF_CHAT_ID there"),
        (["close", "Narva"], "no branch named 'Narva'"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_refusals_are_one_line_and_write_nothing(cli: Cli, args: list[str], message: str) -> None:
    add_tartu(cli)
    before = written(cli)
    result = cli("branches", *args)
    usage = ("the following arguments", "nothing to change", "not allowed", "invalid choice")
    assert result.code == (2 if any(m in message for m in usage) else 1)
    assert result.out == ""
    assert len(result.err.strip().splitlines()) == 1 and message in result.err
    assert written(cli) == before


def test_the_last_open_branch_cannot_be_closed(cli: Cli) -> None:
    add_tartu(cli)
    assert cli("branches", "close", MAIN).code == 0
    before = written(cli)
    for name, message in (("Tartu", "is the last open one"), (MAIN, "is closed already")):
        result = cli("branches", "close", name)
        assert result.code == 1 and message in result.err
        assert len(result.err.strip().splitlines()) == 1
        assert written(cli) == before


def test_a_one_shop_install_lists_its_shop_from_the_settings(cli: Cli) -> None:
    result = cli("branches", "list")
    assert result.code == 0
    assert len(result.out.splitlines()) == 2
    assert MAIN in result.out and MAIN_GROUP in result.out and "1 Main St" in result.out


def test_cards_add_tags_the_range_with_its_branch(cli: Cli) -> None:
    add_tartu(cli)
    assert cli("cards", "add", "--from", "100001", "--to", "100010", "--pct", "5").code == 0
    tagged = cli(
        "cards", "add", "--from", "200001", "--to", "200005", "--pct", "7", "--branch", "tartu"
    )
    assert tagged.code == 0, tagged.err
    assert tagged.out == "added 5 cards 200001-200005 at 7% (b2c) for the branch 'Tartu'\n"
    assert cli.query("SELECT branch_id, base_pct, count(*) FROM cards GROUP BY 1, 2") == [
        (1, 5, 10),
        (2, 7, 5),
    ]
    listing = cli("cards", "list")
    assert listing.code == 0
    lines = [line.split() for line in listing.out.splitlines()]
    assert lines[0] == ["branch", "status", "pct", "segment", "cards"]
    assert ["Main", "Shop", "in_stock", "5%", "b2c", "10"] in lines
    assert ["Tartu", "in_stock", "7%", "b2c", "5"] in lines
    assert lines[-1] == ["total", "15"]


@pytest.mark.parametrize(
    ("branch", "message"),
    [("Narva", "no branch named 'Narva'"), ("Tartu", "the branch 'Tartu' is closed")],
)
def test_cards_add_refuses_an_unknown_or_closed_branch(cli: Cli, branch: str, message: str) -> None:
    add_tartu(cli)
    assert cli("branches", "close", "Tartu").code == 0
    before = written(cli)
    result = cli(
        "cards", "add", "--from", "200001", "--to", "200005", "--pct", "7", "--branch", branch
    )
    assert result.code != 0 and result.out == ""
    assert len(result.err.strip().splitlines()) == 1 and message in result.err
    assert written(cli) == before


def test_a_one_shop_card_list_has_no_branch_column(cli: Cli) -> None:
    assert (
        cli("cards", "list").out
        == "no cards registered yet: add them with python -m bot cards add\n"
    )
    assert cli("cards", "add", "--from", "100001", "--to", "100010", "--pct", "5").code == 0
    out = cli("cards", "list").out
    assert "branch" not in out
    assert [line.split() for line in out.splitlines()] == [
        ["status", "pct", "segment", "cards"],
        ["in_stock", "5%", "b2c", "10"],
        ["total", "10"],
    ]


def test_cards_import_tags_the_files_cards_with_its_branch(cli: Cli, tmp_path: Path) -> None:
    add_tartu(cli)
    cards = tmp_path / "tartu.csv"
    cards.write_text("number,pct\n300001,5\n300002,10\n", encoding="utf-8")
    result = cli("cards", "import", str(cards), "--branch", "TARTU")
    assert result.code == 0, result.err
    assert result.out == "imported 2 cards (1 at 5%, 1 at 10%) for the branch 'Tartu'\n"
    assert cli.query("SELECT number, branch_id FROM cards ORDER BY number") == [
        ("300001", 2),
        ("300002", 2),
    ]
    # An unknown branch: one line, nothing written (the file itself is fine).
    more = tmp_path / "more.csv"
    more.write_text("number,pct\n300003,5\n", encoding="utf-8")
    before = written(cli)
    refused = cli("cards", "import", str(more), "--branch", "Narva")
    assert refused.code == 1 and refused.out == ""
    assert refused.err.strip().splitlines() == [
        "error: no branch named 'Narva' (python -m bot branches list shows them)"
    ]
    assert written(cli) == before
