"""Logging: one line per record, timestamps in UTC, level from LOG_LEVEL."""

from __future__ import annotations

import logging
import time


class _AlembicPreamble(logging.Filter):
    """Alembic announces its dialect on every migration ("Context impl SQLiteImpl.", "Will
    assume non-transactional DDL."): on every start of the bot, and meaningless to an operator.
    Its "Running upgrade …" lines stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Context impl ", "Will assume "))


_ALEMBIC_PREAMBLE = _AlembicPreamble()


def setup_logging(level: str = "INFO") -> None:
    logging.Formatter.converter = time.gmtime
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)sZ %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # aiogram logs every handled update at INFO; keep that for debugging only.
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)
    migration = logging.getLogger("alembic.runtime.migration")
    if _ALEMBIC_PREAMBLE not in migration.filters:
        migration.addFilter(_ALEMBIC_PREAMBLE)
