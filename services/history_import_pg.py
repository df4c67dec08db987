"""The purchase history import on PostgreSQL: one transaction, the rows loaded with COPY.

`services.history_import` reads and validates the file and decides what goes in, the same on
both engines; this module keeps the validated rows and writes them on PostgreSQL:

1. **One transaction** on one connection, from the first line read to the commit. It begins
   with a transaction-level advisory lock (`IMPORT_LOCK`): one import (or recovery) at a time
   per database, a second one is refused. The lock ends with the transaction, so a crashed
   import never keeps it: the server rolls the transaction back when the connection drops.
2. **COPY**: the validated rows go into a temporary table with asyncpg's
   `copy_records_to_table`, in batches while the file is read; the rows already present are
   found with the shared SQL (`history_import.PRESENT_ROWS`); the new cards are created; then
   one `INSERT … SELECT` writes the rows into `purchases`, sorted by (card, time) so that the
   per-card indexes are filled page by page. Nobody sees any of it before the commit.
3. **The tills keep writing** meanwhile (MVCC: their statements neither see the import's rows
   nor wait for them), except on the row locks of the touched cards:
   - Each inserted purchase locks its card FOR KEY SHARE (the foreign key check) until the
     commit. That conflicts with FOR UPDATE only, so a sale locks its card FOR NO KEY UPDATE
     (`services.sales`); with FOR UPDATE every sale on a card of the file would wait for the
     whole import.
   - The touched cards' lifetime figures and issue dates are updated last, right before the
     commit: their per-card sums are computed first, from the temporary table and without any
     lock; then the cards are locked in id order, updated with those sums, and the transaction
     commits. Only a sale on one of those cards waits, and only for that step (logged: about
     0.1 s for 10,000 cards, `bench.import_purchases`). Adding the sums is exact under READ
     COMMITTED: a sale committed meanwhile counted its card from the ledger without the
     import's rows, and the UPDATE adds them to the card's latest version.
4. **Ctrl+C, an error, `kill -9`**: the transaction rolls back and leaves nothing to recover.
   `recover` still removes (or finishes) an import row that is not `done` — no import of this
   module leaves one, but the rule is the database's, not the writer's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import column, delete, exists, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from db.database import Database
from db.engine import create_engine
from db.models import (
    AuditEvent,
    Card,
    CardKind,
    CardStatus,
    Import,
    ImportStatus,
    Purchase,
    PurchaseSource,
    SaleDraft,
    Segment,
)
from db.sql import year_month
from services import audit
from services.cards import refresh_totals
from services.errors import ImportFileError
from services.history_import import (
    PRESENT_ROWS,
    ImportSummary,
    Job,
    Recovered,
    Staged,
    log_recovered,
)

log = logging.getLogger("services.history_import")

T = TypeVar("T")

# The advisory lock of purchase imports (its key: b"lwb-imp"), per database.
IMPORT_LOCK = 0x6C77622D696D70

_ROW_COLUMNS = ("rid", "card_id", "created_at", "amount", "pct", "discount")


def run_import(database_url: str, body: Callable[[PgWriter], T]) -> T:
    """`body(writer)` — the shared import flow — in one transaction that commits what it
    wrote. Blocking: runs its own event loop (call it from a thread in async code)."""
    return asyncio.run(_in_transaction(database_url, _import_unit, body))


def recover(database_url: str, now: datetime) -> list[Recovered]:
    """Remove (or finish) import rows that are not `done`; nothing while an import runs."""
    return asyncio.run(_in_transaction(database_url, _recover_unit, now))


async def _in_transaction(database_url: str, unit: Callable[..., T], *args: Any) -> T:
    # The import's own connection (no pool): its temporary tables and statements die with it.
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        return await Database.of(engine).write(unit, *args)
    finally:
        await engine.dispose()


def _import_unit(session: Session, body: Callable[[PgWriter], T]) -> T:
    writer = PgWriter(session)
    if not _try_lock(session):
        raise ImportFileError("another purchase import is running on this database")
    writer.begin()
    result = body(writer)
    session.commit()  # nothing left to commit when rows were written (`write` committed)
    return result


def _recover_unit(session: Session, now: datetime) -> list[Recovered]:
    if not _try_lock(session):
        return []
    recovered = _recover(session, now)
    session.commit()
    return recovered


def _try_lock(session: Session) -> bool:
    return bool(
        session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": IMPORT_LOCK})
    )


class PgWriter:
    """The PostgreSQL side of `history_import._import` (see the module docstring)."""

    text_dates = False

    def __init__(self, session: Session) -> None:
        self.session = session

    def begin(self) -> None:
        self._execute(
            "CREATE TEMP TABLE import_rows (rid integer NOT NULL, card_id integer NOT NULL, "
            "created_at timestamp NOT NULL, amount bigint NOT NULL, pct integer NOT NULL, "
            "discount bigint NOT NULL) ON COMMIT DROP"
        )

    def recover(self, now: datetime) -> list[Recovered]:
        return _recover(self.session, now)

    def known_file(self, sha: str) -> tuple[int, datetime, int] | None:
        row = self.session.execute(
            select(Import.id, Import.created_at, Import.rows).where(Import.file_sha256 == sha)
        ).first()
        return None if row is None else (row.id, row.created_at, row.rows)

    def registered_cards(self) -> Iterable[tuple[str, int, int]]:
        return self.session.execute(select(Card.number, Card.id, Card.base_pct))  # type: ignore[return-value]

    def stage(self, rows: list[tuple[Any, ...]]) -> None:
        self._copy("import_rows", rows, _ROW_COLUMNS)

    def mark_present(self) -> int:
        """`PRESENT_ROWS` into the temporary table `import_present`."""
        self._execute("CREATE TEMP TABLE import_present (rid integer PRIMARY KEY) ON COMMIT DROP")
        if self.session.scalar(text("SELECT 1 FROM imports LIMIT 1")) is None:
            return 0
        self._execute(f"INSERT INTO import_present {PRESENT_ROWS}")
        return int(self.session.scalar(text("SELECT count(*) FROM import_present")) or 0)

    def write(self, job: Job, sha: str, staged: Staged, present: int) -> ImportSummary:
        """Phase 2, then the commit: the import row, new cards, the rows, the cards' figures."""
        session = self.session
        imp = Import(
            kind="purchases",
            file_name=job.path.name[:255],
            file_sha256=sha,
            created_at=job.now,
            status=ImportStatus.RUNNING,
        )
        session.add(imp)
        session.flush()
        import_id = imp.id
        self._create_cards(import_id, job.now, staged.new_cards, job.unknown_pct)
        rows = _rows_to_write(bool(staged.new_cards), bool(present))
        # Sorted by card and time: the per-card indexes are written page by page.
        session.execute(text("SET LOCAL work_mem = '64MB'"))
        self._execute(
            "INSERT INTO purchases (card_id, amount, discount_pct, discount_amount, "
            "paid_amount, source, import_id, created_at) "
            "SELECT card_id, amount, pct, discount, amount - discount, "
            f"'{PurchaseSource.IMPORT.value}', CAST(:imp AS integer), created_at "
            f"FROM ({rows}) AS w ORDER BY card_id, created_at",
            imp=import_id,
        )
        # What the import adds to each card and to each of its months, computed before any
        # card is locked.
        month = year_month(column("created_at")).compile(dialect=session.get_bind().dialect)
        self._execute(
            "CREATE TEMP TABLE import_months ON COMMIT DROP AS "
            f"SELECT card_id, {month} AS month, count(*) AS n, sum(amount) AS total, "
            "sum(discount) AS discount, min(created_at) AS first_at, max(created_at) AS last_at "
            f"FROM ({rows}) AS w GROUP BY card_id, {month}"
        )
        self._execute(
            "CREATE TEMP TABLE import_cards ON COMMIT DROP AS "
            "SELECT card_id, sum(n) AS n, sum(total) AS total, min(first_at) AS first_at, "
            "max(last_at) AS last_at FROM import_months GROUP BY card_id"
        )
        cards, first, last = session.execute(
            text("SELECT count(*), min(first_at), max(last_at) FROM import_cards")
        ).one()
        imported = staged.rows - present
        session.execute(
            update(Import)
            .where(Import.id == import_id)
            .values(status=ImportStatus.DONE, rows=imported, skipped=staged.bad)
        )
        details = {
            "file": job.path.name,
            "rows": imported,
            "present": present,
            "skipped": staged.bad,
            "new_cards": len(staged.new_cards),
        }
        audit.insert_many(
            session,
            [audit.values("purchases.imported", at=job.now, import_id=import_id, **details)],
        )
        began = time.monotonic()
        self._update_cards()
        session.commit()
        log.info(
            "purchase import #%s: %d cards brought up to date, their rows locked for %.0f ms",
            import_id,
            cards,
            (time.monotonic() - began) * 1000,
        )
        return ImportSummary(
            import_id,
            imported,
            present,
            staged.bad,
            len(staged.new_cards),
            first.replace(tzinfo=UTC),
            last.replace(tzinfo=UTC),
        )

    def _create_cards(
        self, import_id: int, now: datetime, new_cards: list[tuple[int, str, Any]], pct: int
    ) -> None:
        """Cards not registered yet: issued printed cards, issued at their first purchase, in
        the order the file names them; `import_new_cards` maps temporary ids to real ones."""
        self._execute(
            "CREATE TEMP TABLE import_new_cards (tmp integer PRIMARY KEY, number text NOT NULL, "
            "first_at timestamp NOT NULL, card_id integer) ON COMMIT DROP"
        )
        if not new_cards:
            return
        self._copy("import_new_cards", new_cards, ("tmp", "number", "first_at"))
        try:
            self._execute(
                "WITH made AS (INSERT INTO cards (number, base_pct, segment, kind, status, "
                "created_at, issued_at, bind_failures, purchase_count, purchase_total) "
                f"SELECT number, CAST(:pct AS integer), '{Segment.B2C.value}', "
                f"'{CardKind.PRINTED.value}', '{CardStatus.ISSUED.value}', "
                "CAST(:now AS timestamp), first_at, 0, 0, 0 FROM import_new_cards "
                "ORDER BY tmp DESC RETURNING id, number) "
                "UPDATE import_new_cards n SET card_id = made.id FROM made "
                "WHERE made.number = n.number",
                pct=pct,
                now=now.astimezone(UTC).replace(tzinfo=None),
            )
        except IntegrityError as exc:
            raise ImportFileError(
                "a card of the file was registered while it was being imported; "
                "run the import again"
            ) from exc
        # What an unfinished import would remove (see `recover`).
        self._execute(
            "UPDATE imports SET cards_from = n.lo, cards_to = n.hi FROM (SELECT min(card_id) "
            "AS lo, max(card_id) AS hi FROM import_new_cards) AS n WHERE id = CAST(:imp AS "
            "integer)",
            imp=import_id,
        )

    def _update_cards(self) -> None:
        """The touched cards: locked in id order (no deadlock with another writer that does
        the same), then their figures and issue dates, with the sums of `import_cards`, and
        their months with those of `import_months`."""
        self._execute(
            "SELECT count(*) FROM (SELECT c.id FROM cards c JOIN import_cards a "
            "ON a.card_id = c.id ORDER BY c.id FOR NO KEY UPDATE OF c) AS locked"
        )
        # A card becomes issued at its first use, whichever comes first: a stock card seen in
        # the history becomes issued at its first imported purchase, and an issue date later
        # than that purchase moves back to it.
        earlier = "(c.issued_at IS NULL OR c.issued_at > a.first_at)"
        self._execute(
            "UPDATE cards c SET purchase_count = c.purchase_count + a.n, "
            "purchase_total = c.purchase_total + a.total, "
            "last_purchase_at = GREATEST(c.last_purchase_at, a.last_at), "
            f"status = CASE WHEN c.status = '{CardStatus.IN_STOCK.value}' AND {earlier} "
            f"         THEN '{CardStatus.ISSUED.value}' ELSE c.status END, "
            f"issued_at = CASE WHEN {earlier} THEN a.first_at ELSE c.issued_at END "
            "FROM import_cards a WHERE c.id = a.card_id"
        )
        # The months: those the cards had get the import's sums added, the others are
        # written (no other writer can add a month of a locked card meanwhile; two set-wise
        # statements take two thirds of the time of one INSERT … ON CONFLICT).
        same = "m.card_id = a.card_id AND m.month = a.month"
        self._execute(
            "UPDATE card_months m SET purchases = m.purchases + a.n, "
            "revenue = m.revenue + a.total, discount = m.discount + a.discount "
            f"FROM import_months a WHERE {same}"
        )
        self._execute(
            "INSERT INTO card_months (card_id, month, purchases, revenue, discount) "
            "SELECT card_id, month, n, total, discount FROM import_months a "
            f"WHERE NOT EXISTS (SELECT 1 FROM card_months m WHERE {same}) "
            "ORDER BY card_id, month"
        )

    def _execute(self, sql: str, **params: Any) -> None:
        self.session.execute(text(sql), params)

    def _copy(self, table: str, records: list[tuple[Any, ...]], columns: tuple[str, ...]) -> None:
        """COPY `records` into a table of this transaction's connection (asyncpg's binary
        COPY, awaited from this synchronous unit)."""
        driver = self.session.connection().connection.dbapi_connection
        driver.run_async(  # type: ignore[union-attr]
            lambda connection: connection.copy_records_to_table(
                table, records=records, columns=columns
            )
        )


def _rows_to_write(with_new_cards: bool, with_present: bool) -> str:
    """The staged rows to write, with real card ids: a query for a FROM clause."""
    card = "coalesce(n.card_id, r.card_id)" if with_new_cards else "r.card_id"
    join = " LEFT JOIN import_new_cards n ON n.tmp = r.card_id" if with_new_cards else ""
    where = (
        " WHERE NOT EXISTS (SELECT 1 FROM import_present x WHERE x.rid = r.rid)"
        if with_present
        else ""
    )
    return (
        f"SELECT {card} AS card_id, r.created_at, r.amount, r.pct, r.discount "
        f"FROM import_rows r{join}{where}"
    )


# ------------------------------------------------------------------ unfinished import rows


def _recover(session: Session, now: datetime) -> list[Recovered]:
    """Import rows that are not `done` (the caller holds `IMPORT_LOCK`): `running` ones are
    removed, `finishing` ones finished — as on SQLite, in this one transaction."""
    found = session.execute(
        select(Import).where(Import.status != ImportStatus.DONE).order_by(Import.id)
    ).scalars()
    recovered = []
    for imp in found.all():
        if imp.status == ImportStatus.FINISHING:
            _finish(session, imp, now)
            outcome, rows = "finished", imp.rows
        else:
            outcome, rows = "removed", _remove(session, imp)
        recovered.append(Recovered(imp.id, imp.file_name, outcome, rows))
        log_recovered(recovered[-1])
    return recovered


def _remove(session: Session, imp: Import) -> int:
    """Its purchases, its new cards (unless something uses them by now), its row; the figures
    of the cards it touched are recounted."""
    mine = select(Purchase.id).where(Purchase.import_id == imp.id)
    # An owner may have voided an imported row meanwhile: its audit event stays.
    session.execute(
        update(AuditEvent).where(AuditEvent.purchase_id.in_(mine)).values(purchase_id=None)
    )
    touched = session.scalars(
        delete(Purchase).where(Purchase.import_id == imp.id).returning(Purchase.card_id)
    ).all()
    # Recounted before the new cards go: a card left without purchases has no months either.
    _recount(session, sorted(set(touched)))
    if imp.cards_from is not None and imp.cards_to is not None:
        session.execute(
            delete(Card).where(
                Card.id.between(imp.cards_from, imp.cards_to),
                Card.created_at == imp.created_at,
                Card.client_id.is_(None),
                ~exists().where(Purchase.card_id == Card.id),
                ~exists().where(SaleDraft.card_id == Card.id),
                ~exists().where(AuditEvent.card_id == Card.id),
            )
        )
    session.execute(delete(Import).where(Import.id == imp.id))
    return len(touched)


def _finish(session: Session, imp: Import, now: datetime) -> None:
    """Issue dates and lifetime figures of the cards it touched, then `done`."""
    card_ids = session.scalars(
        select(Purchase.card_id).where(Purchase.import_id == imp.id).distinct()
    ).all()
    _recount(session, sorted(card_ids))
    session.execute(
        text(
            "UPDATE cards c SET "
            f"status = CASE WHEN c.status = '{CardStatus.IN_STOCK.value}' "
            f"         THEN '{CardStatus.ISSUED.value}' ELSE c.status END, "
            "issued_at = f.first_at FROM (SELECT card_id, min(created_at) AS first_at "
            "FROM purchases WHERE import_id = :imp GROUP BY card_id) AS f "
            "WHERE c.id = f.card_id AND (c.issued_at IS NULL OR c.issued_at > f.first_at)"
        ),
        {"imp": imp.id},
    )
    session.execute(update(Import).where(Import.id == imp.id).values(status=ImportStatus.DONE))
    details = {"file": imp.file_name, "rows": imp.rows}
    audit.insert_many(
        session, [audit.values("purchases.imported", at=now, import_id=imp.id, **details)]
    )


def _recount(session: Session, card_ids: list[int]) -> None:
    """Lock the cards in id order (as a sale locks one), then recount each from the ledger."""
    if not card_ids:
        return
    session.execute(
        text(
            "SELECT count(*) FROM (SELECT id FROM cards WHERE id = ANY(:ids) ORDER BY id "
            "FOR NO KEY UPDATE) AS locked"
        ),
        {"ids": card_ids},
    )
    refresh_totals(session, card_ids)
