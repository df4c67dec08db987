"""The project explains itself: the design document exists, every reference to it (and every
link between the README and docs/) leads somewhere, and nothing points at a file that is not in
the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config import PROJECT_ROOT

DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
_SKIP_DIRS = {".venv", ".git", "data", "build", "__pycache__", ".hypothesis", ".ruff_cache"}
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _project_files(*suffixes: str) -> list[Path]:
    return [
        path
        for path in PROJECT_ROOT.rglob("*")
        if path.suffix in suffixes
        and path.is_file()
        and not _SKIP_DIRS.intersection(path.relative_to(PROJECT_ROOT).parts)
    ]


def _anchors(markdown: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces → '-', repeats '-1'…"""
    seen: dict[str, int] = {}
    anchors = set()
    in_code = False
    for line in markdown.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        match = None if in_code else _HEADING.match(line)
        if match is None:
            continue
        # Markup goes (underscores stay: GitHub keeps them, as in `OWNER_IDS`).
        text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", match.group(2)).lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_the_design_document_is_in_the_repository() -> None:
    design = PROJECT_ROOT / "docs" / "design.md"
    text = design.read_text(encoding="utf-8")
    for section in ("Product", "Layout", "Domain", "Contracts", "KPI definitions", "Planned"):
        assert f"## {section}" in text
    assert "docs/design.md" in (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def test_nothing_cites_a_design_file_that_does_not_exist() -> None:
    missing = "DESIGN" + ".md"  # spelled apart so that this file does not cite it either
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)}:{number}"
        for path in _project_files(".py", ".md", ".toml")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if missing in line
    ]
    assert offenders == []


@pytest.mark.parametrize("document", DOCS, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_every_link_leads_somewhere(document: Path) -> None:
    broken = []
    for target in _LINK.findall(document.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # https:, mailto: — outside the repository
            continue
        path_part, _, anchor = target.partition("#")
        linked = (document.parent / path_part).resolve() if path_part else document
        checks_anchor = bool(anchor) and linked.suffix == ".md"
        if not linked.exists() or (checks_anchor and anchor not in _anchors(linked)):
            broken.append(target)
    assert broken == []
