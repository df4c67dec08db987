"""The owner's dashboard in the Mini App: the /stats figures as tiles, and the trends.

The figures are the KPI set of `services.kpi` for the chosen period and the equally long one
before it, as `/stats` and `python -m bot kpi --json` compute them; here they are formatted in
the owner's language for tiles, with the raw value beside each so that the page (and its
tests) can compare.

In a chain (`BranchService.is_chain`) the figures may be one branch's (`branch_id`: the same KPI
set `/stats NAME` and `kpi --branch NAME` give, and that branch's 12 weeks); who may see which
branch is `handlers.owner_reports.reader_scope`'s rule, applied by the API before this runs.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from aiogram.utils.i18n import gettext as _

from config import Settings
from handlers import formatting
from handlers.owner_reports import STATS_LINES, rfm_names
from services import kpi
from services.reports import ReportService

# The tiles, in the order the owner reads them (a subset of /stats: the headline figures).
TILES = (
    "revenue",
    "purchases",
    "active_cards",
    "average_check",
    "average_discount_pct",
    "new_buyers",
    "cards_issued",
    "retention_rate",
    "roi_pct",
)


async def dashboard(
    reports: ReportService,
    settings: Settings,
    first: date,
    last: date,
    weeks: int,
    branch_id: int | None = None,
) -> dict[str, Any]:
    """The dashboard's figures of the whole program (`branch_id` None) or of one branch."""
    current, previous = await reports.compared(first, last, branch_id)
    series = await reports.weekly(last, weeks, branch_id)
    lines = {key: (label, render) for label, key, render in STATS_LINES}
    tiles = []
    for key in TILES:
        label, render = lines[key]
        value, before = getattr(current, key), getattr(previous, key)
        tiles.append(
            {
                "key": key,
                "label": str(label),
                "value": value,
                "shown": render(value, settings),
                "change_pct": _rounded(kpi.change_pct(value, before)),
            }
        )
    nps = current.nps
    names = rfm_names()
    return {
        "period": {
            "first": first.isoformat(),
            "last": last.isoformat(),
            "shown": f"{formatting.day(first, settings)} – {formatting.day(last, settings)}",
        },
        "tiles": tiles,
        "nps": {
            "score": None if nps.score is None else round(nps.score, 1),
            "answers": nps.answers,
            "label": _("NPS"),
        },
        "weeks": [
            {
                "first": point.first.isoformat(),
                "label": formatting.day(point.first, settings),
                "revenue": point.revenue,
                "revenue_shown": formatting.money(point.revenue, settings),
                "active_cards": point.active_cards,
                "nps": None if point.nps_score is None else round(point.nps_score, 1),
            }
            for point in series
        ],
        "rfm": [
            {"key": key, "label": names[key], "cards": count} for key, count in current.rfm.items()
        ],
        "labels": {
            "revenue": str(lines["revenue"][0]),
            "active_cards": str(lines["active_cards"][0]),
            "rfm": _("RFM segments"),
            "weeks": _("Last 12 weeks"),
            "nps_trend": _("NPS by week"),
        },
    }


def _rounded(change: float | None) -> float | None:
    return None if change is None else round(change, 1)
