"""SQL that reads the same on SQLite and PostgreSQL, where the two spell it differently.

Services write their queries with SQLAlchemy Core and these few constructs, never with one
engine's functions (`julianday`, a three-argument `max`, `INSERT OR IGNORE`):

    greatest(a, b, c)                  # the largest of several values, per row
    days_between(later, earlier)       # fractional days between two timestamps
    insert_ignoring(table, "key", dialect=session.get_bind().dialect.name)
    upsert(table, {"key": k, "value": v}, ("key",), dialect=…)
    sqlite_hint(condition)             # a true condition only SQLite's planner needs
    per_key(aggregates, Purchase.card_id, Card.id, dialect=…)  # per-card aggregates to join
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Float, FromClause, Select, Table, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.functions import FunctionElement, GenericFunction


class greatest(GenericFunction[Any]):
    """The largest of its arguments (SQLite's scalar `max(a, b, …)`, PostgreSQL's
    `GREATEST`). Give it arguments that are not NULL: the two engines differ there."""

    inherit_cache = True


@compiles(greatest, "sqlite")
def _greatest_sqlite(element: greatest, compiler: Any, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"


@compiles(greatest)
def _greatest(element: greatest, compiler: Any, **kw: Any) -> str:
    return f"GREATEST({compiler.process(element.clauses, **kw)})"


class days_between(FunctionElement[float]):
    """`later − earlier` in days (fractional), for two timestamp expressions."""

    type = Float()
    inherit_cache = True


@compiles(days_between, "sqlite")
def _days_sqlite(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(julianday({later}) - julianday({earlier}))"


@compiles(days_between)
def _days(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(EXTRACT(EPOCH FROM ({later} - {earlier})) / 86400.0)"


def insert_ignoring(table: Table, *keys: str, dialect: str) -> Insert:
    """`INSERT … ON CONFLICT (keys) DO NOTHING` for this dialect (`sqlite` or `postgresql`):
    a row whose keys exist already is left out, and `rowcount` says whether it went in."""
    module = sqlite if dialect == "sqlite" else postgresql
    return module.insert(table).on_conflict_do_nothing(index_elements=list(keys))


def upsert(table: Table, values: dict[str, Any], keys: tuple[str, ...], *, dialect: str) -> Insert:
    """`INSERT … ON CONFLICT (keys) DO UPDATE`: the row with these keys ends up holding
    `values`, whether it existed or not (one statement, safe against a concurrent insert)."""
    module = sqlite if dialect == "sqlite" else postgresql
    statement = module.insert(table).values(values)
    changed = {name: statement.excluded[name] for name in values if name not in keys}
    return statement.on_conflict_do_update(index_elements=list(keys), set_=changed)


class sqlite_hint(FunctionElement[bool]):
    """A condition that is true anyway, written only to steer SQLite's query planner: SQLite
    gets it as it is, other engines get `1 = 1` (their planners need no hint and would pay
    for it). E.g. `sqlite_hint(Purchase.card_id.in_(select(Card.id)))` — always true (a
    foreign key) — makes SQLite walk an index on `card_id` card by card, seeking each card's
    range, with or without ANALYZE statistics; on PostgreSQL that IN is a hash join of every
    row."""

    # No Boolean type: SQLite's compiler would write a boolean expression as `(…) = 1`, which
    # its planner cannot use for an index.
    inherit_cache = True


@compiles(sqlite_hint, "sqlite")
def _sqlite_hint_sqlite(element: sqlite_hint, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(sqlite_hint)
def _sqlite_hint(element: sqlite_hint, compiler: Any, **kw: Any) -> str:
    return "1 = 1"


def per_key(
    aggregates: Select[Any],
    key: ColumnElement[Any],
    outer: ColumnElement[Any],
    *,
    dialect: str,
    name: str,
) -> tuple[FromClause, ColumnElement[bool]]:
    """`aggregates` (a SELECT of aggregates only, with its filters) for each value of `outer`,
    as a FROM clause and the ON condition to LEFT JOIN it by: `key = outer` row by row.

    Both engines then walk an index that starts with `key` one key at a time (range seeks,
    rows already grouped) instead of hashing every matching row: SQLite as a GROUP BY over
    `key IN (SELECT outer)` (see `sqlite_hint`), PostgreSQL as a LATERAL subquery — its hash
    aggregate of 500,000 rows by 10,000 cards took 2.3× as long as the 10,000 seeks. On
    PostgreSQL an `outer` without rows gets one row of NULL sums and a zero count."""
    if dialect == "sqlite":
        grouped = (
            aggregates.add_columns(key.label("per_key"))
            .where(sqlite_hint(key.in_(select(outer))))
            .group_by(key)
            .subquery(name)
        )
        return grouped, grouped.c.per_key == outer
    return aggregates.where(key == outer).lateral(name), true()
