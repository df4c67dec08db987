"""Purchase history import (e.g. a POS export): `card_number,date,amount[,discount_pct]`.

A big history (1.6M rows take tens of seconds) is imported while the tills keep selling, and
still all or nothing. Both engines share what the import means — every line validated before
anything is written, the same file refused twice, rows equal to rows of an earlier import left
out, unknown cards created, issue dates and lifetime figures brought up to date, the summary —
and differ only in how the rows are written (`_import` is the shared flow; a writer per engine).

**SQLite** (this module):

1. **Validate everything first**, without any lock on the ledger. Every line is parsed; the good
   rows go into a temporary table of the import's own SQLite connection (on disk, not in
   memory). Atomic mode: any bad line → every bad line is reported and
   nothing is written. A row identical (card, moment, amount) to a row of an *earlier* import
   is already present and left out, so a corrected file can follow a `--skip-invalid` import;
   equal rows inside one file are all imported (two equal purchases on a day are real). Only
   rows of cards that an earlier import touched are looked up.
2. **Write in short transactions** (`Pacing`). Each one holds SQLite's write lock for about
   `hold` seconds and is followed by a `pause`: a till waiting in SQLite's busy handler (which
   is not fair: it polls, up to 100 ms apart) finds the lock free during the pause. Rows go in
   sorted by (card, time), so each transaction touches neighbouring pages of the per-card
   indexes instead of most of them (in file order a 5,000-row transaction took 0.55 s, sorted
   0.11-0.17 s).
3. **All or nothing across those transactions**: the `imports` row is `running` while rows go
   in, `finishing` while the touched cards' issue dates and lifetime figures are brought up to
   date (short transactions too), then `done`. A failure or Ctrl+C while `running` removes the
   import's purchases and new cards again (in short transactions); a crash leaves it `running`
   and `recover_interrupted_imports` — at the next import, at bot start and in
   `python -m bot migrate` — removes it. An import found `finishing` is finished instead.

One import at a time per database: an exclusive `flock` on `<database>-import.lock`, which the
kernel releases when a process dies, tells a crashed import from one that is still running.

While an import runs, readers see its rows arrive; until it is `done` the touched cards' issue
dates and lifetime figures may lag behind them.

**PostgreSQL** (`services.history_import_pg`): the whole import is one transaction — rows
loaded with COPY into a temporary table, then one `INSERT … SELECT` — which MVCC lets run beside
the tills' writes; only the touched cards' rows are locked, at the very end, for the short
update of their figures. A crash or Ctrl+C leaves nothing behind (PostgreSQL rolls back).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, create_engine, event, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from db.engine import _sqlite_pragmas
from db.file_lock import FileLock
from db.lane import sync_url
from db.models import (
    SQLITE_DATETIME_FORMAT,
    CardKind,
    CardStatus,
    Import,
    ImportStatus,
    PurchaseSource,
    Segment,
)
from services import audit
from services.cards import normalize_number, refresh_totals
from services.clock import utc_now
from services.csvfile import CsvHeader, CsvRow, ambiguous, file_sha256, read_csv, shown
from services.dates import FORMS, DateOutOfRange, parse_moment
from services.errors import (
    DomainError,
    ImportFileError,
    ImportRowsInvalid,
    InvalidAmount,
    InvalidCardNumber,
)
from services.money import parse_amount
from services.pricing import discount_for

log = logging.getLogger(__name__)

ErrorSink = Callable[[int, str], None]
STAGE_BATCH = 10_000  # rows per insert into the temporary table while validating
CACHE_KIB = 32 * 1024  # the import connection's page cache: chunks re-touch the same pages

_AMOUNT_REASONS = {
    "empty": "amount is missing",
    "format": "amount is not a number",
    "zero": "amount must be greater than zero",
    "negative": "amount must be greater than zero",
    "precision": "amount has too many decimal places",
    "too_large": "amount is too large",
}
# Fast paths for what POS exports almost always contain; anything else takes the full parsers.
_SIMPLE_AMOUNT = re.compile(r"(\d{1,13})(?:[.,](\d{1,2}))?")
_SIMPLE_NUMBER = re.compile(r"\d{4,19}")


class BadRow(DomainError):
    pass


@dataclass(frozen=True)
class Pacing:
    """How an import shares the write lock with the tills (see the module docstring).

    Chunks are sized from the previous one's duration so that each write transaction lasts
    about `hold` seconds on any machine. A till that starts waiting during one polls at most
    50 ms apart for its first 0.23 s (SQLite's busy handler; 100 ms apart after that), so with
    `hold` ≈ 0.2 s a `pause` over 50 ms lets it in at the end of that transaction
    (`bench.import_purchases` measures the tills' waits).
    """

    hold: float = 0.2
    pause: float = 0.06
    first_rows: int = 2_000
    min_rows: int = 100
    max_rows: int = 200_000

    def next_rows(self, rows: int, elapsed: float) -> int:
        wanted = rows * self.hold / max(elapsed, 1e-3)
        # At most double at once: one unusually fast chunk must not make a huge next one.
        return int(max(self.min_rows, min(self.max_rows, wanted, rows * 2)))


DEFAULT_PACING = Pacing()


@dataclass(frozen=True)
class ImportSummary:
    import_id: int | None  # None when every row was already present (nothing written)
    imported: int
    present: int  # rows equal to rows of earlier imports, left out
    skipped: int  # invalid lines (--skip-invalid)
    new_cards: int
    first_at: datetime | None
    last_at: datetime | None


@dataclass(frozen=True)
class Recovered:
    """An import found interrupted: `removed` (it was still writing) or `finished`."""

    import_id: int
    file_name: str
    outcome: str
    rows: int


# ------------------------------------------------------------------------------- parsing


class _Dates:
    """Store-time dates and datetimes → naive UTC, as the engine's staging table takes it (SQLite:
    its text form; PostgreSQL: a datetime), with a cache: POS exports repeat dates."""

    def __init__(self, tz: ZoneInfo, now: datetime, as_text: bool) -> None:
        self.tz = tz
        self.now = now
        self.as_text = as_text
        self.cache: dict[str, Any] = {}

    def parse(self, raw: str) -> Any:
        hit = self.cache.get(raw)
        if hit is not None:
            return hit
        try:
            utc = parse_moment(raw, self.tz)
        except DateOutOfRange as exc:
            raise BadRow(f"date {shown(raw)} is out of range") from exc
        except ValueError as exc:
            raise BadRow(f"date {shown(raw)} is not {FORMS}") from exc
        if utc > self.now:
            raise BadRow(f"date {raw} is in the future")
        naive = utc.replace(tzinfo=None)
        result = naive.strftime(SQLITE_DATETIME_FORMAT) if self.as_text else naive
        if len(raw) == 10:  # only date-only keys repeat often enough to be worth caching
            if len(self.cache) > 100_000:
                self.cache.clear()
            self.cache[raw] = result
        return result


class _RowParser:
    """Turns one CSV row into (card number, naive UTC moment, amount minor, pct or None)."""

    def __init__(
        self,
        header: CsvHeader,
        tz: ZoneInfo,
        now: datetime,
        exponent: int,
        max_minor: int,
        *,
        text_dates: bool,
    ) -> None:
        self.i_number = header.at("card_number")
        self.i_date = header.at("date")
        self.i_amount = header.at("amount")
        self.i_pct = header.index("discount_pct")
        self.dates = _Dates(tz, now, text_dates)
        self.exponent = exponent
        self.max_minor = max_minor

    def parse(self, row: CsvRow) -> tuple[str, Any, int, int | None]:
        if row.extra:
            raise BadRow("more cells than header columns")
        cells = row.cells
        raw_number = cells[self.i_number]
        if not _SIMPLE_NUMBER.fullmatch(raw_number) or not raw_number.isascii():
            if not raw_number:
                raise BadRow("card_number is missing")
            try:
                raw_number = normalize_number(raw_number)
            except InvalidCardNumber as exc:
                raise BadRow(f"card_number {shown(raw_number)} is not a card number") from exc
        raw_date = cells[self.i_date]
        if not raw_date:
            raise BadRow("date is missing")
        created_text = self.dates.parse(raw_date)
        return raw_number, created_text, self._amount(cells[self.i_amount]), self._pct(cells)

    def _amount(self, raw: str) -> int:
        simple = _SIMPLE_AMOUNT.fullmatch(raw)
        if simple is not None and raw.isascii() and self.exponent == 2:
            whole, cents = simple.groups()
            amount = int(whole) * 100 + (int(cents.ljust(2, "0")) if cents else 0)
            if 0 < amount <= self.max_minor:
                return amount
        try:
            return parse_amount(raw, self.exponent, self.max_minor)
        except InvalidAmount as exc:
            if exc.reason == "ambiguous":
                raise BadRow(ambiguous("amount", raw, exc)) from exc
            raise BadRow(_AMOUNT_REASONS.get(exc.reason, "amount is invalid")) from exc

    def _pct(self, cells: list[str]) -> int | None:
        raw = cells[self.i_pct] if self.i_pct is not None else ""
        if not raw:
            return None
        try:
            pct = int(raw.replace(",", ".").removesuffix("%").removesuffix(".0"))
        except ValueError as exc:
            raise BadRow(f"discount_pct {shown(raw)} is not a whole number") from exc
        if not 0 <= pct <= 99:
            raise BadRow(f"discount_pct {pct} is outside 0-99")
        return pct


# ------------------------------------------------------------------------ the connection


def _database_file(database_url: str) -> Path | None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


class _Store:
    """The import's own connection to the SQLite file (temporary tables live on it).

    Reads run outside transactions (they never wait for the tills); every write is a short
    `BEGIN IMMEDIATE … COMMIT` from `transaction()`, which takes the write lock first and
    waits for it like any other writer (busy_timeout).
    """

    def __init__(self, database_url: str) -> None:
        self.engine = create_engine(sync_url(database_url), poolclass=NullPool)
        event.listen(self.engine, "connect", _connect)
        event.listen(self.engine, "begin", _begin_immediate)
        self.connection: Connection = self.engine.connect()
        self.raw: sqlite3.Connection = self.connection.connection.driver_connection  # type: ignore[assignment]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        with Session(bind=self.connection, expire_on_commit=False) as session:
            session.connection()  # BEGIN IMMEDIATE now: the write lock before any work
            yield session
            session.commit()

    def scalar(self, sql: str, *params: Any) -> Any:
        row = self.raw.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def stage(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert into a temporary table: its own transaction, no lock on the ledger."""
        self.raw.execute("BEGIN")
        self.raw.executemany(sql, rows)
        self.raw.execute("COMMIT")

    def close(self) -> None:
        self.connection.close()
        self.engine.dispose()


def _connect(dbapi_connection: sqlite3.Connection, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    dbapi_connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    # The driver opens no transactions by itself: `_begin_immediate` does, for writes only.
    dbapi_connection.isolation_level = None


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextlib.contextmanager
def _opened(database_url: str) -> Iterator[_Store | None]:
    """The store with the import lock held; None when another import holds it."""
    db_file = _database_file(database_url)
    if db_file is None:
        raise ImportFileError("the purchase import needs a SQLite database file or PostgreSQL")
    lock = FileLock(db_file.with_name(db_file.name + "-import.lock"))  # one at a time
    if not lock.acquire():
        yield None
        return
    store = None
    try:
        store = _Store(database_url)
        yield store
    finally:
        if store is not None:
            store.close()
        lock.release()


def _in_steps(
    store: _Store,
    pacing: Pacing,
    start: int,
    stop: int,
    step: Callable[[Session, int, int], object],
    first: int | None = None,
) -> None:
    """`step(session, lo, hi)` over `start` ≤ lo < hi ≤ `stop` in write transactions of about
    `pacing.hold` seconds each, `pacing.pause` apart (the tills write in the gaps)."""
    lo, size = start, first or pacing.first_rows
    while lo < stop:
        hi = min(lo + size, stop)
        with store.transaction() as session:
            began = time.monotonic()
            step(session, lo, hi)
        size = pacing.next_rows(size, time.monotonic() - began)
        lo = hi
        time.sleep(pacing.pause)


# -------------------------------------------------------------------------------- import


def import_purchases(
    database_url: str,
    path: Path,
    *,
    now: datetime,
    tz: ZoneInfo,
    exponent: int,
    max_amount_minor: int,
    unknown_pct: int = 5,
    skip_invalid: bool = False,
    on_error: ErrorSink,
    pacing: Pacing = DEFAULT_PACING,
) -> ImportSummary:
    """Import a purchase history into the (migrated) database at `database_url`: a SQLite file
    or PostgreSQL.

    Blocking (run it in a thread from async code; on PostgreSQL it runs its own event loop).
    Bad lines go to `on_error(line, reason)`; refusals raise `DomainError`s and leave the
    database as it was. `pacing` is SQLite's (PostgreSQL needs none).
    """
    if not 1 <= unknown_pct <= 99:
        raise ImportFileError(f"--pct must be between 1 and 99, not {unknown_pct}")
    header, rows = read_csv(
        path, required=["card_number", "date", "amount"], optional=["discount_pct"]
    )
    job = Job(
        path, header, rows, now, tz, exponent, max_amount_minor, unknown_pct, skip_invalid, on_error
    )
    with rows:
        if _is_postgres(database_url):
            from services import history_import_pg

            return history_import_pg.run_import(database_url, lambda writer: _import(writer, job))
        with _opened(database_url) as store:
            if store is None:
                raise ImportFileError("another purchase import is running on this database")
            return _import(_SqliteWriter(store, pacing), job)


@dataclass(frozen=True)
class Job:
    """One import as its caller asked for it: the file, how to read it, where errors go."""

    path: Path
    header: CsvHeader
    rows: Iterable[CsvRow]
    now: datetime
    tz: ZoneInfo
    exponent: int
    max_amount_minor: int
    unknown_pct: int
    skip_invalid: bool
    on_error: ErrorSink


@dataclass(frozen=True)
class Staged:
    rows: int
    bad: int
    new_cards: list[tuple[int, str, Any]]  # (temporary id < 0, number, first purchase)


class Writer(Protocol):
    """What an engine does for the shared flow (`_import`): keep the validated rows in a
    staging table `import_rows (rid, card_id, created_at, amount, pct, discount)` of its own
    connection, find the rows already present, and write."""

    text_dates: bool  # the staging table takes moments as SQLite's text (else datetimes)

    def recover(self, now: datetime) -> list[Recovered]: ...

    def known_file(self, sha: str) -> tuple[int, datetime, int] | None: ...

    def registered_cards(self) -> Iterable[tuple[str, int, int]]: ...

    def stage(self, rows: list[tuple[Any, ...]]) -> None: ...

    def mark_present(self) -> int: ...

    def write(self, job: Job, sha: str, staged: Staged, present: int) -> ImportSummary: ...


def _import(writer: Writer, job: Job) -> ImportSummary:
    """The import on either engine: recover, refuse a known file, validate and stage every
    line, leave out rows already present, write."""
    writer.recover(job.now)
    sha = file_sha256(job.path)
    _refuse_known_file(job.path, writer.known_file(sha))
    parser = _RowParser(
        job.header,
        job.tz,
        job.now,
        job.exponent,
        job.max_amount_minor,
        text_dates=writer.text_dates,
    )
    staged = _stage(writer, job, parser)
    if not staged.rows:
        raise ImportFileError(f"{job.path.name}: no purchases to import")
    present = writer.mark_present()
    if staged.rows == present:
        return ImportSummary(None, 0, present, staged.bad, 0, None, None)
    return writer.write(job, sha, staged, present)


def _refuse_known_file(path: Path, previous: tuple[int, datetime, int] | None) -> None:
    if previous is not None:
        import_id, at, rows = previous
        raise ImportFileError(
            f"{path.name}: this file was already imported "
            f"(import #{import_id} of {at:%Y-%m-%d %H:%M} UTC, {rows} rows)"
        )


def _stage(writer: Writer, job: Job, parser: _RowParser) -> Staged:
    """Phase 1: parse every line; the good rows into the writer's staging table, in file order
    (`rid` 1, 2, …). Cards not registered get temporary ids < 0."""
    cards: dict[str, tuple[int, int]] = {
        number: (card_id, pct) for number, card_id, pct in writer.registered_cards()
    }
    new_cards: dict[str, list[Any]] = {}  # number → [temporary id, first purchase]
    batch: list[tuple[Any, ...]] = []
    staged = bad = 0
    skip_invalid, on_error, unknown_pct = job.skip_invalid, job.on_error, job.unknown_pct
    for row in job.rows:
        try:
            number, created, amount, pct = parser.parse(row)
        except BadRow as exc:
            bad += 1
            on_error(row.line, str(exc))
            continue
        if bad and not skip_invalid:
            continue  # keep validating to report every bad line; nothing will be written
        card = cards.get(number)
        if card is None:
            # Not registered: a new card, created only once the whole file is known good.
            card = cards[number] = (-(len(new_cards) + 1), unknown_pct)
            new_cards[number] = [card[0], created]
        elif card[0] < 0 and created < new_cards[number][1]:
            new_cards[number][1] = created
        card_pct = card[1] if pct is None else pct
        staged += 1
        batch.append((staged, card[0], created, amount, card_pct, discount_for(amount, card_pct)))
        if len(batch) >= STAGE_BATCH:
            writer.stage(batch)
            batch = []
    if bad and not skip_invalid:
        raise ImportRowsInvalid(bad)
    if batch:
        writer.stage(batch)
    created_cards = [(tmp, number, first) for number, (tmp, first) in new_cards.items()]
    return Staged(staged, bad, created_cards)


# The dedupe rule, the same SQL on both engines: rows of `import_rows` identical (card, moment,
# amount) to rows of earlier imports, as many times as those hold them. Only rows of cards an
# earlier import touched are looked up.
PRESENT_ROWS = (
    "SELECT rid FROM (SELECT r.rid, r.card_id, r.created_at, r.amount, "
    "                 row_number() OVER (PARTITION BY r.card_id, r.created_at, r.amount "
    "                                    ORDER BY r.rid) AS nth "
    "                 FROM import_rows r "
    "                 WHERE r.card_id IN (SELECT card_id FROM purchases "
    "                                     WHERE import_id IS NOT NULL)) AS t "
    "WHERE t.nth <= (SELECT count(*) FROM purchases p WHERE p.card_id = t.card_id "
    "                AND p.created_at = t.created_at AND p.amount = t.amount "
    "                AND p.import_id IS NOT NULL)"
)


def log_recovered(found: Recovered) -> None:
    log.warning(
        "purchase import #%s (%s) was interrupted: %s",
        found.import_id,
        found.file_name,
        f"finished it ({found.rows} rows)"
        if found.outcome == "finished"
        else f"removed its {found.rows} rows and new cards",
    )


def _is_postgres(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "postgresql"


# --------------------------------------------------------------------------- SQLite writes


class _SqliteWriter:
    """The SQLite side of `_import`: the import's own connection (`_Store`), its temporary
    tables on disk, and the paced write transactions below."""

    text_dates = True

    def __init__(self, store: _Store, pacing: Pacing) -> None:
        self.store = store
        self.pacing = pacing
        store.raw.execute(
            "CREATE TEMP TABLE import_rows (rid INTEGER PRIMARY KEY, card_id INTEGER NOT NULL, "
            "created_at TEXT NOT NULL, amount INTEGER NOT NULL, pct INTEGER NOT NULL, "
            "discount INTEGER NOT NULL)"
        )

    def recover(self, now: datetime) -> list[Recovered]:
        return _recover(self.store, now, self.pacing)

    def known_file(self, sha: str) -> tuple[int, datetime, int] | None:
        row = self.store.raw.execute(
            "SELECT id, created_at, rows FROM imports WHERE file_sha256 = ?", (sha,)
        ).fetchone()
        if row is None:
            return None
        return row[0], datetime.strptime(row[1], SQLITE_DATETIME_FORMAT), row[2]

    def registered_cards(self) -> Iterable[tuple[str, int, int]]:
        return self.store.raw.execute("SELECT number, id, base_pct FROM cards")

    def stage(self, rows: list[tuple[Any, ...]]) -> None:
        self.store.stage("INSERT INTO temp.import_rows VALUES (?, ?, ?, ?, ?, ?)", rows)

    def mark_present(self) -> int:
        """`PRESENT_ROWS` into `temp.import_present`."""
        store = self.store
        store.raw.execute("CREATE TEMP TABLE import_present (rid INTEGER PRIMARY KEY)")
        if not store.scalar("SELECT 1 FROM imports LIMIT 1"):
            return 0
        store.raw.execute(f"INSERT INTO temp.import_present {PRESENT_ROWS}")
        return int(store.scalar("SELECT count(*) FROM temp.import_present"))

    def write(self, job: Job, sha: str, staged: Staged, present: int) -> ImportSummary:
        return _write(
            self.store, job.path, sha, job.now, staged, present, job.unknown_pct, self.pacing
        )


def _write(
    store: _Store,
    path: Path,
    sha: str,
    now: datetime,
    staged: Staged,
    present: int,
    unknown_pct: int,
    pacing: Pacing,
) -> ImportSummary:
    """Phase 2: the rows in short transactions, then the cards; undone on any failure."""
    with store.transaction() as session:
        imp = Import(
            kind="purchases",
            file_name=path.name[:255],
            file_sha256=sha,
            created_at=now,
            status=ImportStatus.RUNNING,
        )
        session.add(imp)
        session.flush()
        import_id = imp.id
    imported = staged.rows - present
    try:
        _create_cards(store, import_id, now, staged.new_cards, unknown_pct, pacing)
        _sort_rows(store, bool(staged.new_cards))
        _insert_rows(store, import_id, pacing)
        with store.transaction() as session:
            session.execute(
                update(Import)
                .where(Import.id == import_id)
                .values(status=ImportStatus.FINISHING, rows=imported, skipped=staged.bad)
            )
    except BaseException:
        _remove(store, import_id, pacing)
        raise
    store.raw.execute(
        "CREATE TEMP TABLE import_cards_touched AS "
        "SELECT DISTINCT card_id FROM temp.import_sorted ORDER BY card_id"
    )
    first, last = store.raw.execute(
        "SELECT min(created_at), max(created_at) FROM temp.import_sorted"
    ).fetchone()
    details = {
        "file": path.name,
        "rows": imported,
        "present": present,
        "skipped": staged.bad,
        "new_cards": len(staged.new_cards),
    }
    _finish(store, import_id, now, details, pacing)
    return ImportSummary(
        import_id,
        imported,
        present,
        staged.bad,
        len(staged.new_cards),
        _from_text(first),
        _from_text(last),
    )


_INSERT_CARDS = (
    "INSERT INTO main.cards (number, base_pct, segment, kind, status, created_at, issued_at, "
    "bind_failures) VALUES (?, ?, ?, ?, ?, ?, ?, 0)"
)


def _create_cards(
    store: _Store,
    import_id: int,
    now: datetime,
    new_cards: list[tuple[int, str, str]],
    pct: int,
    pacing: Pacing,
) -> None:
    """Cards not registered yet: issued printed cards, issued at their first purchase. Each
    write records the ids it created on the import (an interrupted import removes them)."""
    store.raw.execute(
        "CREATE TEMP TABLE import_new_cards (tmp INTEGER PRIMARY KEY, card_id INTEGER NOT NULL)"
    )
    if not new_cards:
        return
    now_text = now.astimezone(UTC).replace(tzinfo=None).strftime(SQLITE_DATETIME_FORMAT)
    fixed = (pct, Segment.B2C.value, CardKind.PRINTED.value, CardStatus.ISSUED.value, now_text)

    def create(_session: Session, lo: int, hi: int) -> None:
        chunk = new_cards[lo:hi]
        # Ids continue from the largest one while this transaction holds the write lock.
        first_id = store.scalar("SELECT coalesce(max(id), 0) + 1 FROM main.cards")
        try:
            store.raw.executemany(
                _INSERT_CARDS, [(number, *fixed, first) for _tmp, number, first in chunk]
            )
        except sqlite3.IntegrityError as exc:
            raise ImportFileError(
                "a card of the file was registered while it was being imported; "
                "run the import again"
            ) from exc
        store.raw.execute(
            "UPDATE main.imports SET cards_from = coalesce(cards_from, ?), cards_to = ? "
            "WHERE id = ?",
            (first_id, first_id + len(chunk) - 1, import_id),
        )
        # The temporary table is the connection's own: written in the same transaction.
        store.raw.executemany(
            "INSERT INTO temp.import_new_cards VALUES (?, ?)",
            [(tmp, first_id + i) for i, (tmp, _n, _f) in enumerate(chunk)],
        )

    _in_steps(store, pacing, 0, len(new_cards), create)


def _sort_rows(store: _Store, with_new_cards: bool) -> None:
    """`temp.import_sorted`: the rows to write, real card ids, in (card, time) order."""
    card = "coalesce(n.card_id, r.card_id)" if with_new_cards else "r.card_id"
    join = "LEFT JOIN temp.import_new_cards n ON n.tmp = r.card_id " if with_new_cards else ""
    store.raw.execute(
        f"CREATE TEMP TABLE import_sorted AS SELECT {card} AS card_id, r.created_at, "
        f"r.amount, r.pct, r.discount FROM temp.import_rows r {join}"
        "WHERE r.rowid NOT IN (SELECT rid FROM temp.import_present) ORDER BY 1, 2"
    )


_INSERT_CHUNK = (
    "INSERT INTO main.purchases (card_id, amount, discount_pct, discount_amount, paid_amount, "
    f"source, import_id, created_at) SELECT card_id, amount, pct, discount, amount - discount, "
    f"'{PurchaseSource.IMPORT.value}', ?, created_at FROM temp.import_sorted "
    "WHERE rowid >= ? AND rowid < ?"
)


def _insert_rows(store: _Store, import_id: int, pacing: Pacing) -> None:
    total = store.scalar("SELECT coalesce(max(rowid), 0) FROM temp.import_sorted")
    _in_steps(
        store,
        pacing,
        1,
        total + 1,
        lambda _session, lo, hi: store.raw.execute(_INSERT_CHUNK, (import_id, lo, hi)),
    )


# ------------------------------------------------------------------ finishing and undoing

_ISSUE = (
    # A card becomes issued at its first use, whichever comes first: a stock card seen in the
    # history becomes issued at its first imported purchase, and an issue date later than
    # that purchase moves back to it.
    "UPDATE main.cards SET "
    f"status = CASE WHEN status = '{CardStatus.IN_STOCK.value}' "
    f"         THEN '{CardStatus.ISSUED.value}' ELSE status END, "
    "issued_at = (SELECT min(p.created_at) FROM main.purchases p "
    "             WHERE p.card_id = cards.id AND p.import_id = :imp) "
    "WHERE id IN (SELECT card_id FROM temp.import_cards_touched "
    "             WHERE rowid >= :lo AND rowid < :hi) "
    "AND (issued_at IS NULL OR issued_at > (SELECT min(p.created_at) FROM main.purchases p "
    "     WHERE p.card_id = cards.id AND p.import_id = :imp))"
)


def _finish(
    store: _Store, import_id: int, now: datetime, details: dict[str, Any], pacing: Pacing
) -> None:
    """Issue dates and lifetime figures of `temp.import_cards_touched`, then `done`."""

    def cards(session: Session, lo: int, hi: int) -> None:
        store.raw.execute(_ISSUE, {"imp": import_id, "lo": lo, "hi": hi})
        touched = store.raw.execute(
            "SELECT card_id FROM temp.import_cards_touched WHERE rowid >= ? AND rowid < ?",
            (lo, hi),
        ).fetchall()
        refresh_totals(session, [card_id for (card_id,) in touched])

    total = store.scalar("SELECT coalesce(max(rowid), 0) FROM temp.import_cards_touched")
    _in_steps(store, pacing, 1, total + 1, cards, first=max(pacing.min_rows, 200))
    with store.transaction() as session:
        session.execute(
            update(Import).where(Import.id == import_id).values(status=ImportStatus.DONE)
        )
        audit.insert_many(
            session, [audit.values("purchases.imported", at=now, import_id=import_id, **details)]
        )


def _remove(store: _Store, import_id: int, pacing: Pacing) -> int:
    """Undo an import that did not finish: its purchases, its new cards (unless something uses
    them by now), its row; the lifetime figures of the cards it touched are recounted."""
    row = store.raw.execute(
        "SELECT cards_from, cards_to, created_at FROM imports WHERE id = ?", (import_id,)
    ).fetchone()
    if row is None:
        return 0
    cards_from, cards_to, created_at = row
    lo, hi = store.raw.execute(
        "SELECT min(id), max(id) FROM main.purchases WHERE import_id = ?", (import_id,)
    ).fetchone()
    touched: set[int] = set()
    removed = 0
    if lo is not None:
        with store.transaction():
            # An owner may have voided an imported row meanwhile: its audit event stays,
            # without the link to a purchase that no longer exists.
            store.raw.execute(
                "UPDATE main.audit_events SET purchase_id = NULL WHERE purchase_id IS NOT NULL "
                "AND EXISTS (SELECT 1 FROM main.purchases p WHERE p.id = audit_events.purchase_id "
                "AND p.import_id = ?)",
                (import_id,),
            )

        def purchases(_session: Session, lo: int, hi: int) -> None:
            nonlocal removed
            gone = store.raw.execute(
                "DELETE FROM main.purchases WHERE id >= ? AND id < ? AND import_id = ? "
                "RETURNING card_id",
                (lo, hi, import_id),
            ).fetchall()
            touched.update(card_id for (card_id,) in gone)
            removed += len(gone)

        _in_steps(store, pacing, lo, hi + 1, purchases)
    # Recounted from the ledger (a sale on such a card meanwhile counted the import's rows),
    # before the new cards go: a card left without purchases has no months left either.
    recount = sorted(touched)

    def totals(session: Session, lo: int, hi: int) -> None:
        refresh_totals(session, recount[lo:hi])

    _in_steps(store, pacing, 0, len(recount), totals, first=max(pacing.min_rows, 200))
    if cards_from is not None:
        # Unless the card is in use by now: bound, sold on at the till, audited.
        _in_steps(
            store,
            pacing,
            cards_from,
            cards_to + 1,
            lambda _session, lo, hi: store.raw.execute(
                "DELETE FROM main.cards WHERE id >= :lo AND id < :hi AND created_at = :at "
                "AND client_id IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM main.purchases p WHERE p.card_id = cards.id) "
                "AND id NOT IN (SELECT card_id FROM main.sale_drafts "
                "               WHERE card_id >= :lo AND card_id < :hi) "
                "AND id NOT IN (SELECT card_id FROM main.audit_events "
                "               WHERE card_id >= :lo AND card_id < :hi)",
                {"lo": lo, "hi": hi, "at": created_at},
            ),
        )
    with store.transaction():
        store.raw.execute("DELETE FROM main.imports WHERE id = ?", (import_id,))
    return removed


def _recover(store: _Store, now: datetime, pacing: Pacing) -> list[Recovered]:
    """Imports a crash left behind (the caller holds the import lock, so none is running)."""
    found = store.raw.execute(
        "SELECT id, file_name, status, rows FROM imports WHERE status != ? ORDER BY id",
        (ImportStatus.DONE.value,),
    ).fetchall()
    recovered = []
    for import_id, file_name, status, rows in found:
        if status == ImportStatus.FINISHING:
            store.raw.execute("DROP TABLE IF EXISTS temp.import_cards_touched")
            store.raw.execute(
                "CREATE TEMP TABLE import_cards_touched AS SELECT DISTINCT card_id "
                "FROM main.purchases WHERE import_id = ? ORDER BY card_id",
                (import_id,),
            )
            _finish(store, import_id, now, {"file": file_name, "rows": rows}, pacing)
            store.raw.execute("DROP TABLE temp.import_cards_touched")
            outcome = "finished"
        else:
            rows = _remove(store, import_id, pacing)
            outcome = "removed"
        recovered.append(Recovered(import_id, file_name, outcome, rows))
        log_recovered(recovered[-1])
    return recovered


def recover_interrupted_imports(
    database_url: str, *, now: datetime | None = None, pacing: Pacing = DEFAULT_PACING
) -> list[Recovered]:
    """Remove (or finish) imports a crash interrupted; called after migrating, at bot start
    and by `python -m bot migrate`. Blocking, like `import_purchases`. Nothing to do for a
    SQLite database that is not a file, or while another process is importing (its own crash
    is recovered next time). On PostgreSQL a crash leaves no import behind (an import is one
    transaction); an import row left unfinished by other means is handled the same way."""
    if _is_postgres(database_url):
        from services import history_import_pg

        return history_import_pg.recover(database_url, now or utc_now())
    if _database_file(database_url) is None:
        return []
    with _opened(database_url) as store:
        if store is None:
            return []
        return _recover(store, now or utc_now(), pacing)


def _from_text(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value, SQLITE_DATETIME_FORMAT).replace(tzinfo=UTC)
