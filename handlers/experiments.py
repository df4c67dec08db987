"""How a hold-out experiment's figures read (campaigns, win-back, birthday offers): shares as
percentages, the lift in percentage points with its 95 % confidence interval
(`services.experiments`)."""

from __future__ import annotations

from aiogram.utils.i18n import gettext as _

from handlers import formatting


def share(value: float | None) -> str:
    """A share as a percentage with one decimal (`23.5 %`); — when unknown."""
    return "—" if value is None else formatting.pct(round(value * 100, 1))


def points(value: float) -> str:
    """A difference of shares in percentage points, signed (`+12.3 pp`, `−4 pp`)."""
    rounded = round(value * 100, 1)
    shown = formatting.number(abs(rounded))
    sign = "+" if rounded > 0 else "−" if rounded < 0 else ""
    return _("{value} pp").format(value=sign + shown)


def interval(low: float | None, high: float | None) -> str:
    """`95 % CI −1.2 to +25.3 pp`; a note when a group is still empty."""
    if low is None or high is None:
        return _("no confidence interval yet: a group is empty")
    return _("95 % CI {low} to {high}").format(low=points(low), high=points(high))


def lift_text(lift: float | None, low: float | None, high: float | None) -> str:
    """`+12.3 pp (95 % CI −1.2 to +25.3 pp)`, or — when a group is empty."""
    if lift is None:
        return "—"
    return _("{lift} ({interval})").format(lift=points(lift), interval=interval(low, high))
