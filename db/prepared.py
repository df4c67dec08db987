"""Hot statements compiled once and run straight on the DB-API connection of a lane unit.

SQLAlchemy's execution path (an execution context, parameter processing, a `CursorResult`)
costs 0.1–0.2 ms of CPU per statement on a small machine; SQLite runs the till's statements in
10–25 µs. A sale runs about fifteen of them, so on the till that path was most of a sale's
database cost (README, "Benchmark" of the till).

`Prepared(statement)` compiles a Core statement once, for the dialect of the session it first
runs in, and keeps only what running it needs — all of it taken from SQLAlchemy: the SQL
text, its parameters in order with their types' bind processors, and the result columns with
their types' result processors. Values therefore go in and come out exactly as through
`Session.execute` (aware UTC datetimes from `UTCDateTime`, JSON, booleans), rows are named
tuples, and driver errors become SQLAlchemy's exceptions (`IntegrityError`, ...).

It runs in the caller's transaction: `prepared.execute(session, params)` uses the DB-API
connection of that `Session`, so it commits and rolls back with the unit like any other
statement. It is SQLite's fast path for units of work (`db.database`); on any other database
the same call runs the statement through the session, with the same results.

Refused when compiled, so a misuse fails on first use rather than silently: parameters that
are rendered at execution time (an expanding `IN`), and INSERT/UPDATE columns whose Python-side
defaults SQLAlchemy would compute at execution time — give such columns a value. As with
`Session.execute`, the parameter names an INSERT or UPDATE gets decide the columns it writes,
so a statement is compiled once per set of names.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError, InvalidRequestError, MultipleResultsFound, NoResultFound
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable, Select

_REQUIRED = object()


@dataclass(frozen=True)
class _Compiled:
    sql: str
    binds: tuple[tuple[str, Any, Callable[[Any], Any] | None], ...]  # name, default, processor
    row: Any  # the namedtuple class of result rows, or None
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # result column index, processor

    def arguments(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        values = []
        for name, default, process in self.binds:
            value = params.get(name, default)
            if value is _REQUIRED:
                raise InvalidRequestError(f"A value is required for bind parameter {name!r}")
            values.append(value if process is None else process(value))
        return tuple(values)

    def rows(self, raw: list[tuple[Any, ...]]) -> list[Any]:
        if not self.processors:
            return [self.row._make(values) for values in raw]
        rows = []
        for values in raw:
            converted = list(values)
            for index, process in self.processors:
                converted[index] = process(converted[index])
            rows.append(self.row._make(converted))
        return rows


_CONNECTION = "db.prepared.connection"


def _driver_connection(session: Session) -> Any:
    """The DB-API connection of the session's transaction (begun if need be); looked up once
    per transaction, since a transaction keeps its connection."""
    transaction = session.get_transaction()
    if transaction is not None:
        cached = session.info.get(_CONNECTION)
        if cached is not None and cached[0] is transaction:
            return cached[1]
    connection = session.connection().connection.driver_connection
    session.info[_CONNECTION] = (session.get_transaction(), connection)
    return connection


class PreparedResult:
    """Rows (named tuples) and the row count of one execution; the `Result` calls the hot
    paths use."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            if self._rows:
                raise MultipleResultsFound("Multiple rows were found when exactly one was required")
            raise NoResultFound("No row was found when one was required")
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]


class Prepared:
    """A Core statement compiled once and run on the DB-API connection (module docstring)."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self.dialect_name: str | None = None
        # Compiled per set of parameter names, like SQLAlchemy's own cache: the names an
        # INSERT or UPDATE gets decide its columns.
        self._compiled: dict[tuple[str, ...], _Compiled] = {}

    def execute(self, session: Session, params: Mapping[str, Any] | None = None) -> PreparedResult:
        params = params or {}
        if session.get_bind().dialect.name != "sqlite":
            # The fast path is SQLite's (its driver is synchronous and its SQL takes
            # microseconds); elsewhere the statement runs through the session as usual.
            result = session.execute(self.statement, params)
            rows = list(result.all()) if result.returns_rows else []
            return PreparedResult(rows, result.rowcount)
        names = tuple(params)
        compiled = self._compiled.get(names) or self._compile(session, names)
        arguments = compiled.arguments(params)
        connection = _driver_connection(session)
        try:
            cursor = connection.execute(compiled.sql, arguments)
            raw = cursor.fetchall() if cursor.description is not None else []
        except connection.Error as exc:  # the same exception classes SQLAlchemy raises
            raise DBAPIError.instance(compiled.sql, arguments, exc, connection.Error) from exc
        rows = compiled.rows(raw) if compiled.row is not None else []
        return PreparedResult(rows, cursor.rowcount)

    def execute_many(self, session: Session, params: Sequence[Mapping[str, Any]]) -> int:
        """One statement for several parameter sets with the same names (an INSERT of many
        rows); returns the row count."""
        if not params:
            return 0
        if session.get_bind().dialect.name != "sqlite":
            return int(session.execute(self.statement, list(params)).rowcount)
        names = tuple(params[0])
        compiled = self._compiled.get(names) or self._compile(session, names)
        if compiled.row is not None:
            raise InvalidRequestError("execute_many() cannot return rows")
        arguments = [compiled.arguments(p) for p in params]
        connection = _driver_connection(session)
        try:
            return int(connection.executemany(compiled.sql, arguments).rowcount)
        except connection.Error as exc:
            raise DBAPIError.instance(compiled.sql, arguments, exc, connection.Error) from exc

    def _compile(self, session: Session, names: tuple[str, ...]) -> _Compiled:
        dialect = session.get_bind().dialect
        if self.dialect_name not in (None, dialect.name):
            raise InvalidRequestError(f"compiled for {self.dialect_name}, not {dialect.name}")
        self.dialect_name = dialect.name
        compiled: Any = self.statement.compile(dialect=dialect, column_keys=list(names))
        if not compiled.positional:
            raise InvalidRequestError(f"{dialect.name}: only positional parameters are supported")
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise InvalidRequestError(
                "parameters rendered at execution time (an expanding IN) are not supported"
            )
        computed = [*compiled.insert_prefetch, *compiled.update_prefetch]
        if computed:
            missing = ", ".join(sorted(column.key for column in computed))
            raise InvalidRequestError(f"give these columns a value (Python defaults): {missing}")
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        binds = []
        for name in compiled.positiontup:
            bind = by_name[name]
            default = _REQUIRED if bind.required else bind.effective_value
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            binds.append((name, default, process))
        columns: list[tuple[str, Any]]
        if isinstance(self.statement, Select):
            columns = list(self.statement.selected_columns.items())
        else:
            columns = [(column.key, column) for column in compiled.effective_returning or ()]
        keys = [key for key, _ in columns]
        row = namedtuple("Row", keys, rename=True) if columns else None  # type: ignore[misc]
        processors = []
        for index, (_key, column) in enumerate(columns):
            process = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if process is not None:
                processors.append((index, process))
        result = _Compiled(compiled.string, tuple(binds), row, tuple(processors))
        self._compiled[names] = result
        return result
