"""Benchmark: the owner's /export (XLSX and CSV zip) against writing the same rows untyped.

    .venv/bin/python -m bench.export [--cards 10000] [--purchases 200000] [--db PATH]

Generates the data as `bench.kpi` does (two years of purchases, surveys) into a temporary,
migrated SQLite database. The floor runs the same queries (the KPI set and every sheet's rows,
streamed) and appends the raw database values to an openpyxl write-only workbook: what any
export has to do. The export then adds what makes the file usable — labels, money in major
units, store-time datetimes, number formats, formula guards — and the CSV zip writes the same
rows as `;`-separated text with a decimal comma. Reported: best-of-N wall and CPU time, the
ratios, and the process's max RSS (the rows stream: memory must not grow with the data).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from pathlib import Path

from aiogram.utils.i18n import I18n
from openpyxl import Workbook
from sqlalchemy.orm import Session

from bench.kpi import END, fill_totals, generate
from bot.i18n import create_i18n
from config import Settings, load_settings
from db.database import Database
from db.engine import create_engine
from db.migrate import upgrade
from services import export, kpi
from services.clock import store_day_bounds
from services.reports import ReportService


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def floor_xlsx(session: Session, settings: Settings, first: date, last: date) -> Path:
    """The same reads, database values into a write-only workbook: no typing, no labels (a
    report unit, as the export is)."""
    start, end = store_day_bounds(first, last, settings.store.tz)
    path = Path(tempfile.mkstemp(suffix=".xlsx")[1])
    workbook = Workbook(write_only=True)
    summary = workbook.create_sheet("kpi_summary")
    kpis = kpi.compute(session, settings, first, last)
    for item in export.SUMMARY_ROWS:
        summary.append([item.key, str(getattr(kpis, item.key.split(".")[0], ""))])
    for table in export._tables(settings, start, end):
        sheet = workbook.create_sheet(table.name)
        sheet.append([item.key for item in table.fields])
        for row in session.execute(table.query.execution_options(yield_per=2_000)):
            # Excel has no time zones: the least any export must do to a value.
            sheet.append([v.replace(tzinfo=None) if isinstance(v, datetime) else v for v in row])
    workbook.save(path)
    return path


async def measure(path: Path, repeat: int, i18n: I18n) -> dict[str, tuple[float, float]]:
    from handlers.owner_reports import export_labels

    url = f"sqlite+aiosqlite:///{path}"
    settings = load_settings(env_file=None, database_url=url, timezone="Europe/Moscow")
    engine = create_engine(url)
    db = Database.of(engine)
    reports = ReportService(db, settings)
    last = END.astimezone(settings.store.tz).date()
    first = last - timedelta(days=729)
    best: dict[str, tuple[float, float]] = {}
    with i18n.context(), i18n.use_locale("ru"):
        labels = export_labels("ru", {2000 + i: f"Cashier {i}" for i in range(5)})

    async def timed(name: str, work: Callable[[], Awaitable[Path]]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        produced = await work()
        took = (time.perf_counter() - wall, time.process_time() - cpu)
        produced.unlink()
        previous = best.get(name)
        best[name] = took if previous is None or took[0] < previous[0] else previous

    try:
        for _ in range(repeat):
            await timed("floor", lambda: db.report(floor_xlsx, settings, first, last))
            await timed("xlsx", lambda: reports.export_xlsx(first, last, labels))
            await timed("csv", lambda: reports.export_csv_zip(first, last, labels))
    finally:
        await engine.dispose()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.export")
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--purchases", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--db", type=Path, help="keep the generated database here and reuse it next time"
    )
    args = parser.parse_args()
    i18n = create_i18n("ru")
    import handlers.owner_reports  # noqa: F401  (aiogram, matplotlib: the baseline RSS)

    baseline = _rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "bench.db"
        if not path.exists():
            asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))
            t0 = time.perf_counter()
            generate(path, args.cards, args.purchases)
            asyncio.run(fill_totals(f"sqlite+aiosqlite:///{path}"))
            print(
                f"generated {args.cards:,} cards, {args.purchases:,} purchases "
                f"in {time.perf_counter() - t0:.1f} s"
            )
        after_generate = _rss_mb()
        best = asyncio.run(measure(path, args.repeat, i18n))
    floor_wall, floor_cpu = best["floor"]
    print(f"best of {args.repeat}                    wall s  ×floor   cpu s  ×floor")
    for name, label in (
        ("floor", "floor: raw rows to XLSX"),
        ("xlsx", "/export (XLSX)"),
        ("csv", "/export csv (zip)"),
    ):
        wall, cpu = best[name]
        print(f"{label:<26} {wall:8.2f} {wall / floor_wall:7.2f} {cpu:7.2f} {cpu / floor_cpu:7.2f}")
    print(
        f"max RSS: {baseline:.0f} MB after imports, {after_generate:.0f} MB after generating, "
        f"{_rss_mb():.0f} MB at the end"
    )


if __name__ == "__main__":
    main()
