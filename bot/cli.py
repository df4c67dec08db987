"""Command line: `python -m bot --help`.

Every command exits non-zero with a one-line reason on bad input: 2 for a usage or settings
problem, 1 for a refused operation (nothing written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bot.commands import (
    branches,
    campaigns,
    demo,
    history,
    inventory,
    jobs,
    kpi,
    migrate,
    promos,
    run,
    store_sales,
)
from config import SettingsError
from services.errors import DomainError

COMMAND_MODULES = (
    run,
    demo,
    migrate,
    inventory,
    history,
    jobs,
    store_sales,
    kpi,
    promos,
    campaigns,
    branches,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse prints the whole usage; one line names the problem and points at --help.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m bot",
        description="Loyalty Wallet Bot: a store's loyalty-card program in Telegram.",
        epilog="Without a command: run the bot. Settings come from the environment and .env.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.command is None:
        args = parser.parse_args(["run"])
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        for problem in exc.problems:  # every problem at once, one line each
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except DomainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
