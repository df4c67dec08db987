"""The install step of `make run` / `make test` is quiet: a fresh clone's first `make run` must
show the operator its one-line message, not a hundred lines of build-backend warnings.

The project is installed as the Makefile does (`pip install --quiet -e .`, build isolation, the
newest setuptools the index offers) into a throwaway environment, from a copy of the project."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from config import PROJECT_ROOT

# What the build needs; a copy keeps `*.egg-info` and `build/` out of the working tree.
_SOURCES = ("pyproject.toml", "README.md", "bot", "handlers", "services", "db")


def _copy_project(target: Path) -> Path:
    target.mkdir()
    for name in _SOURCES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / name)
    return target


def _noise(stderr: str) -> list[str]:
    # "WARNING: Location ... is ignored" comes from a pip configuration with local indexes that
    # do not hold every package; it is the machine's, not the project's.
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("WARNING: Location ")
    ]


def test_editable_install_prints_no_build_warnings(tmp_path: Path) -> None:
    project = _copy_project(tmp_path / "project")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(tmp_path / "venv" / "bin" / "python"),
            "install",
            "--quiet",
            "--no-deps",  # the dependencies are not what is under test
            "-e",
            str(project),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert _noise(result.stderr) == [], result.stderr[-3000:]


def test_wheel_holds_the_packages_and_the_migrations(tmp_path: Path) -> None:
    project = _copy_project(tmp_path / "project")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(project),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert _noise(result.stderr) == [], result.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "bot/__main__.py",
        "bot/commands/run.py",
        "handlers/errors.py",
        "services/errors.py",
        "db/migrations/env.py",
        "db/migrations/versions/0001_initial.py",
    ):
        assert expected in names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: LicenseRef-Proprietary" in text
