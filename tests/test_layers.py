"""Layering rules: `services/` is the domain and imports no aiogram, directly or through what
it imports. The bot layer adapts aiogram to the domain's interfaces (the delivery sender's
`Transport` is `bot/telegram_transport.py`, its `Renderer` `handlers/outbox.py`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = sorted((ROOT / "services").rglob("*.py"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_service_module_imports_aiogram() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            n for n in _imports(path) if n.split(".")[0] == "aiogram"
        )
        for path in SERVICES
    }
    assert {path: names for path, names in offenders.items() if names} == {}
    assert len(SERVICES) > 20  # the walk saw them all


def test_importing_every_service_loads_no_aiogram() -> None:
    """Not through another package either (a fresh interpreter: this one has aiogram loaded)."""
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in SERVICES
        if path.name != "__init__.py"
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiogram'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
