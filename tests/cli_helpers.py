"""Run `python -m bot …` in-process against the test's database and read the database back."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main


@dataclass
class CliResult:
    code: int
    out: str
    err: str


class Cli:
    def __init__(
        self, db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.db_path = db_path
        self.capsys = capsys
        monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{db_path}")
        monkeypatch.setenv("TIMEZONE", "Europe/Moscow")
        monkeypatch.setenv("CURRENCY", "RUB")
        monkeypatch.chdir(db_path.parent)  # no developer .env is picked up

    def __call__(self, *args: str) -> CliResult:
        self.capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse usage errors and --help
            code = int(exc.code or 0)
        captured = self.capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db_path) as conn:
            return conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, *params: Any) -> Any:
        return self.query(sql, *params)[0][0]

    def dump(self) -> list[tuple[Any, ...]]:
        """Everything the ledger tables hold (to prove a refused command wrote nothing)."""
        rows: list[tuple[Any, ...]] = []
        for table in ("cards", "purchases", "imports", "audit_events", "clients"):
            rows += [(table, *row) for row in self.query(f"SELECT * FROM {table} ORDER BY 1")]
        return rows
