"""The write path's statements, compiled once and run on the driver's own cursor.

``Connection.execute`` costs several times what SQLite takes to run a
primary-key update: for every statement SQLAlchemy looks up its compiled
form, builds an execution context, processes the parameters, makes a result
and dispatches events. The store runs the same few statements for every
call, so on SQLite's standard driver (on the event loop, see
``store.engine``) :func:`execute` compiles each statement once per set of
parameter names and hands the driver a plain tuple, each value converted by
the bind processor SQLAlchemy itself applies (``UtcDateTime``'s text form,
``Money``'s scaled integer, JSON with the engine's serializer): what is
stored is the same. Other drivers (asyncpg under ``run_sync``, aiosqlite),
and statements this does not run (expanding ``IN``, ``RETURNING``, column
defaults computed in Python), take SQLAlchemy's ordinary route.

Driver errors are raised as ``Connection.execute`` raises them
(``IntegrityError``, ``OperationalError``...), so retries and callers see
no difference.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import DBAPIError, InvalidRequestError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import Executable, Select

_DRIVER = "pysqlite"

_Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Plan:
    """A statement compiled for one dialect and one set of parameter names."""

    sql: str
    take: Callable[[Mapping[str, Any]], Sequence[Any]]
    """The parameters for the ``?`` of ``sql``, in order."""
    processors: tuple[tuple[int, _Processor], ...]
    """The bind processor of each parameter that has one, by position."""
    carried: Mapping[str, Any]
    """Values the statement carries itself (``last_event_seq + 1``), by parameter name."""
    columns: tuple[_Processor | None, ...]
    """A query's result processors, one per column."""

    def values(self, params: Mapping[str, Any]) -> Sequence[Any]:
        if self.carried:
            params = {**self.carried, **params}
        try:
            values = self.take(params)
        except KeyError as missing:
            name = missing.args[0]
            raise InvalidRequestError(f"a value is required for bind parameter {name!r}") from None
        if not self.processors:
            return values
        processed = list(values)
        for index, process in self.processors:
            processed[index] = process(processed[index])
        return processed

    def row(self, found: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(
            value if process is None else process(value)
            for value, process in zip(found, self.columns, strict=True)
        )


def _taker(names: Sequence[str]) -> Callable[[Mapping[str, Any]], Sequence[Any]]:
    """The values of ``names`` from a mapping, as a tuple (in C for two or more)."""
    if len(names) > 1:
        return itemgetter(*names)
    if names:
        name = names[0]
        return lambda params: (params[name],)
    return lambda _params: ()


_plans: weakref.WeakKeyDictionary[Dialect, dict[tuple[Executable, tuple[str, ...]], _Plan | None]]
_plans = weakref.WeakKeyDictionary()


def execute(connection: Connection, statement: Executable, params: Mapping[str, Any]) -> int:
    """Run ``statement`` with ``params`` (no result rows); returns how many rows it changed."""
    plan = _plan(connection, statement, params)
    if plan is None:
        return int(connection.execute(statement, params).rowcount)
    values = plan.values(params)
    return int(_run(connection, plan, values, many=False).rowcount)


def execute_many(
    connection: Connection, statement: Executable, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run ``statement`` once per row of ``rows`` (``executemany``), all with the same names."""
    if not rows:
        return
    plan = _plan(connection, statement, rows[0])
    if plan is None:
        connection.execute(statement, rows)
        return
    _run(connection, plan, [plan.values(row) for row in rows], many=True)


def first(
    connection: Connection, query: Select[Any], params: Mapping[str, Any]
) -> tuple[Any, ...] | None:
    """The first row ``query`` finds with ``params``, its values converted as in a ``Row``."""
    plan = _plan(connection, query, params)
    if plan is None:
        row = connection.execute(query, params).first()
        return None if row is None else tuple(row)
    found = _run(connection, plan, plan.values(params), many=False).fetchone()
    return None if found is None else plan.row(found)


def _plan(connection: Connection, statement: Executable, params: Mapping[str, Any]) -> _Plan | None:
    dialect = connection.dialect
    if dialect.driver != _DRIVER:
        return None
    plans = _plans.get(dialect)
    if plans is None:
        plans = _plans[dialect] = {}
    key = (statement, tuple(params))
    try:
        return plans[key]
    except KeyError:
        plan = plans[key] = _compile(dialect, statement, key[1])
        return plan


def _compile(dialect: Dialect, statement: Executable, names: tuple[str, ...]) -> _Plan | None:
    compiled = cast(Any, statement).compile(dialect=dialect, column_keys=list(names))
    assert isinstance(compiled, SQLCompiler)
    positions = compiled.positiontup
    if (
        positions is None
        or compiled.effective_returning
        or compiled.insert_prefetch
        or compiled.update_prefetch
        or any(bind.expanding or bind.callable for bind in compiled.binds.values())
    ):
        return None
    processors = tuple(
        (index, process)
        for index, name in enumerate(positions)
        if (process := compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
    )
    carried = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
    columns: tuple[_Processor | None, ...] = ()
    if isinstance(statement, Select):
        columns = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        )
    return _Plan(compiled.string, _taker(positions), processors, carried, columns)


def _run(connection: Connection, plan: _Plan, values: Any, *, many: bool) -> Any:
    dialect = connection.dialect
    driver = connection.connection.dbapi_connection
    assert driver is not None
    error_type: type[Exception] = dialect.loaded_dbapi.Error
    try:
        if many:
            return driver.cursor().executemany(plan.sql, values)
        return driver.cursor().execute(plan.sql, values)
    except error_type as error:
        wrapped = DBAPIError.instance(
            plan.sql, values, error, error_type, dialect=dialect, ismulti=many
        )
        raise cast(BaseException, wrapped) from error
