"""SQL that reads the same on SQLite and PostgreSQL, where the two spell it differently.

Services write their queries with SQLAlchemy Core and these few constructs, never with one
engine's functions (`julianday`, a three-argument `max`, `INSERT OR IGNORE`):

    greatest(a, b, c)                  # the largest of several values, per row
    days_between(later, earlier)       # fractional days between two timestamps
    insert_ignoring(table, "key", dialect=session.get_bind().dialect.name)
    upsert(table, {"key": k, "value": v}, ("key",), dialect=…)
    year_month(Purchase.created_at)    # the timestamp's month as YYYYMM (an integer)
    days_later(Card.bound_at, 30)      # a timestamp plus (fractional) days
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, Integer, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.functions import FunctionElement, GenericFunction

from db.models import UTCDateTime


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


class year_month(FunctionElement[int]):
    """The month of a timestamp column (stored as naive UTC) as the integer YYYYMM: from
    PostgreSQL's `EXTRACT`; on SQLite, where timestamps are text (`YYYY-MM-DD HH:MM:SS.ffffff`),
    from its first seven characters."""

    type = Integer()
    inherit_cache = True


@compiles(year_month, "sqlite")
def _year_month_sqlite(element: year_month, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return (
        f"(CAST(substr({column}, 1, 4) AS INTEGER) * 100 + CAST(substr({column}, 6, 2) AS INTEGER))"
    )


@compiles(year_month)
def _year_month(element: year_month, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"CAST(EXTRACT(YEAR FROM {column}) * 100 + EXTRACT(MONTH FROM {column}) AS INTEGER)"


class days_later(FunctionElement[datetime]):
    """`moment` + `days` (fractional; negative: earlier), to compare with a timestamp column:
    PostgreSQL's interval arithmetic; on SQLite, where timestamps are text, the same text form
    to the millisecond."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(days_later, "sqlite")
def _days_later_sqlite(element: days_later, compiler: Any, **kw: Any) -> str:
    moment, days = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"strftime('%Y-%m-%d %H:%M:%f', julianday({moment}) + ({days}))"


@compiles(days_later)
def _days_later_default(element: days_later, compiler: Any, **kw: Any) -> str:
    moment, days = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"({moment} + ({days}) * INTERVAL '1 day')"


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
