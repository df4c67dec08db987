"""Logging: one line per record, timestamps in UTC, level from LOG_LEVEL."""

from __future__ import annotations

import logging
import time


def setup_logging(level: str = "INFO") -> None:
    logging.Formatter.converter = time.gmtime
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)sZ %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # aiogram logs every handled update at INFO; keep that for debugging only.
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)
