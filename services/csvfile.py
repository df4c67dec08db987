"""Streaming CSV reader for what spreadsheets and POS systems actually write.

- UTF-8 with or without a BOM (Excel writes one); anything else is refused, not guessed.
- `,`, `;` (Russian-locale Excel) or tab as the delimiter, detected from the header line.
- The header is matched case-insensitively; required and optional columns are checked.
- Rows are yielded one at a time with their physical line number: files of millions of rows
  never sit in memory whole.
- A file that stops being UTF-8 deep inside (after a first block that was) is refused with the
  number of the line that is not, whenever the rows are read: the caller writes nothing until
  it has read them all.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TextIO

from services.errors import ImportFileError, InvalidAmount

_SNIFF_BYTES = 64 * 1024
_DELIMITERS = (";", ",", "\t")
_MAX_HEADER_CHARS = 4096
# Bytes that are not UTF-8, as the "surrogateescape" error handler hands them over.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


class CsvRow(NamedTuple):
    """One data line: stripped cells in header order ("" when missing)."""

    line: int
    cells: list[str]
    extra: bool  # more cells than header columns


@dataclass(frozen=True)
class CsvHeader:
    columns: list[str]
    delimiter: str

    def index(self, name: str) -> int | None:
        """Position of an optional column, None when the file does not have it."""
        return self.columns.index(name) if name in self.columns else None

    def at(self, name: str) -> int:
        """Position of a required column (read_csv has checked that it exists)."""
        return self.columns.index(name)


SHOWN = 40  # characters of a bad value echoed in a message


def shown(raw: str) -> str:
    """A bad cell as a message echoes it: quoted, cut at `SHOWN` characters."""
    return repr(raw if len(raw) <= SHOWN else raw[:SHOWN] + "…")


def ambiguous(column: str, raw: str, exc: InvalidAmount) -> str:
    """What to write instead of an amount with one separator and three digits after it
    (`99,999`: thousands or decimals?)."""
    units, group = exc.digits
    return (
        f"{column} {shown(raw)} is ambiguous (thousands or decimals?): "
        f"write {units}{group} or {units}.{group[:2]}"
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_text(path: Path) -> str:
    if not path.is_file():
        raise ImportFileError(f"{path}: no such file")
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if not head.strip(b"\xef\xbb\xbf \r\n\t"):
        raise ImportFileError(f"{path}: the file is empty")
    if b"\x00" in head:
        raise ImportFileError(f"{path}: this is a binary file, not a CSV")
    encoding = "utf-8-sig"
    try:
        # An incremental decoder tolerates a multi-byte character cut at the sniff boundary.
        codecs.getincrementaldecoder(encoding)().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the file as CSV UTF-8"
        ) from exc
    return encoding


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_csv(path: Path, required: list[str], optional: list[str]) -> tuple[CsvHeader, CsvRows]:
    """Validate the header now; return it and the data rows, read lazily (use `with rows:`).

    Raises `ImportFileError` for a file that is not a CSV with this header. A line that is not
    UTF-8 or not CSV deeper in the file surfaces from the iterator as `ImportFileError` with its
    line number.
    """
    encoding = _check_text(path)
    # Undecodable bytes are kept (as lone surrogates) and refused with their line number.
    fh = path.open("r", encoding=encoding, errors="surrogateescape", newline="")
    try:
        header_line = fh.readline(_MAX_HEADER_CHARS)
        offset = 1
        while header_line and not header_line.strip():
            header_line = fh.readline(_MAX_HEADER_CHARS)
            offset += 1
        if len(header_line) == _MAX_HEADER_CHARS and not header_line.endswith("\n"):
            raise ImportFileError(
                f"{path}: the header line is longer than {_MAX_HEADER_CHARS} characters; "
                "expected " + ",".join(required + [f"[{c}]" for c in optional])
            )
        if _UNDECODABLE.search(header_line):
            raise ImportFileError(f"{path}: not UTF-8 text; save the file as CSV UTF-8")
        delimiter = _delimiter(header_line)
        try:
            header_cells = next(csv.reader([header_line], delimiter=delimiter), [])
        except csv.Error as exc:
            raise ImportFileError(f"{path}: the header line is not CSV ({exc})") from exc
        columns = [c.strip().lower() for c in header_cells]
        missing = [c for c in required if c not in columns]
        unknown = [c for c in columns if c not in required and c not in optional]
        if missing or unknown:
            expected = ",".join(required + [f"[{c}]" for c in optional])
            found = ",".join(columns)[:80] or "(nothing)"
            raise ImportFileError(f"{path}: wrong header {found!r}; expected {expected}")
        if len(set(columns)) != len(columns):
            raise ImportFileError(f"{path}: a column appears twice in the header")
    except BaseException:
        fh.close()
        raise
    return CsvHeader(columns, delimiter), CsvRows(fh, _rows(fh, columns, delimiter, path, offset))


class CsvRows:
    """The data rows, read lazily; `with rows:` closes the file even if they are never read
    (an import refused after the header check)."""

    def __init__(self, fh: TextIO, rows: Iterator[CsvRow]) -> None:
        self._fh = fh
        self._rows = rows

    def __iter__(self) -> Iterator[CsvRow]:
        return self._rows

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> CsvRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rows(
    fh: TextIO, columns: list[str], delimiter: str, path: Path, offset: int
) -> Iterator[CsvRow]:
    width = len(columns)
    reader = csv.reader(fh, delimiter=delimiter)
    line = offset
    try:
        with fh:
            for cells in reader:
                line = offset + reader.line_num
                for cell in cells:
                    # isascii() is O(1) on most cells; only other text is searched.
                    if not cell.isascii() and _UNDECODABLE.search(cell):
                        raise ImportFileError(
                            f"{path}: line {line}: not UTF-8 text; save the file as CSV UTF-8"
                        )
                count = len(cells)
                if count == width:
                    yield CsvRow(line, [cell.strip() for cell in cells], False)
                elif not cells or (count == 1 and not cells[0].strip()):
                    continue  # blank lines are not data
                elif count < width:
                    padded = [cell.strip() for cell in cells] + [""] * (width - count)
                    yield CsvRow(line, padded, False)
                else:
                    yield CsvRow(line, [cell.strip() for cell in cells[:width]], True)
    except csv.Error as exc:
        # Typically a quote that never closes: the rest of the file became one huge cell.
        raise ImportFileError(
            f'{path}: line {line + 1}: broken CSV ({exc}); is a quote (") left open?'
        ) from exc
