"""The digest chart an owner reads: money and dates in their language, a friendly empty state,
axes from zero, a legend that never hides a bar.

The chart is captured from the real `digest_message` (the handler passes the labels and the
money formatting in), then inspected as a drawn matplotlib Figure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from aiogram.utils.i18n import gettext as _
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.i18n import create_i18n
from config import Settings
from handlers import owner_reports
from handlers.owner_reports import digest_message
from services import kpi, reports
from tests.kpi_helpers import Data, msk, report_service

PNG = b"\x89PNG\r\n\x1a\n"
NOW = datetime(2026, 11, 16, 9, tzinfo=UTC)  # Monday: the digest's last week is Nov 9–15
NBSP = "\u00a0"

# A whole currency amount with its sign, grouped as the language groups it.
MONEY = {
    "ru": re.compile(rf"^\d{{1,3}}([{NBSP} ]\d{{3}})*{NBSP}₽$"),
    "en": re.compile(r"^₽\d{1,3}(,\d{3})*$"),
    "et": re.compile(rf"^\d{{1,3}}([{NBSP} ]\d{{3}})*{NBSP}₽$"),
}
LAST_WEEK = {"ru": "15 нояб.", "en": "Nov 15", "et": "15. nov"}
NOTHING_YET = {
    "ru": "Пока нечего показать",
    "en": "Nothing to chart yet",
    "et": "Graafikul pole veel midagi näidata",
}


@pytest.fixture
def charts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Figure]]:
    """Every chart the handler renders, as the drawn Figure behind its PNG."""
    figures: list[Figure] = []
    render = reports.render_chart

    def capture(series: list[kpi.WeekPoint], labels: reports.ChartLabels, exponent: int) -> bytes:
        figure = reports.chart_figure(series, labels, exponent)
        figure.canvas.draw()  # lays it out: ticks, texts and extents as in the PNG
        figures.append(figure)
        return render(series, labels, exponent)

    monkeypatch.setattr(owner_reports, "render_chart", capture)
    yield figures


async def _digest_chart(
    engine: AsyncEngine, settings: Settings, charts: list[Figure], locale: str
) -> Figure:
    i18n = create_i18n("ru")
    with i18n.context(), i18n.use_locale(locale):
        _text, png = await digest_message(report_service(engine, settings), NOW)
    assert png.startswith(PNG)
    return charts[-1]


def _axis(fig: Figure, ylabel: str) -> Axes:
    (found,) = [ax for ax in fig.axes if ax.get_ylabel() == ylabel]
    return found


def _tick_texts(labels: list) -> list[str]:  # type: ignore[type-arg]
    return [t.get_text() for t in labels if t.get_visible() and t.get_text()]


async def _busy_program(session: AsyncSession) -> None:
    """Twelve weeks of sales: the same weekly revenue (tall bars everywhere), growing buyers."""
    d = Data(session)
    client = await d.client()
    cards = [await d.card(f"1001{i:02d}", issued_at=msk(2026, 8, 1)) for i in range(12)]
    for week in range(12):
        day = 15 - 7 * (11 - week)  # the Sunday ending each week, counted from Nov 15
        month = 11
        while day < 1:
            month -= 1
            day += {10: 31, 9: 30, 8: 31}[month]
        buyers = cards[: week + 1]
        for card in buyers:
            await d.buy(card, msk(2026, month, day, 12), 30_000_000 // len(buyers))
        await d.survey(client, msk(2026, month, day, 13), 9 if week % 2 else 3)
    await d.commit()


@pytest.mark.parametrize("locale", ["ru", "en", "et"])
async def test_the_money_axis_reads_as_money_and_the_weeks_as_dates(
    session: AsyncSession,
    engine: AsyncEngine,
    settings: Settings,
    charts: list[Figure],
    locale: str,
) -> None:
    await _busy_program(session)
    fig = await _digest_chart(engine, settings, charts, locale)
    i18n = create_i18n("ru")
    with i18n.context(), i18n.use_locale(locale):
        revenue, active, nps = _("Revenue through cards"), _("Active cards"), _("NPS")
    money_ticks = _tick_texts(_axis(fig, revenue).get_yticklabels())
    assert len(money_ticks) >= 3
    assert all(MONEY[locale].match(t) for t in money_ticks), money_ticks
    assert any(len(re.sub(r"\D", "", t)) >= 6 for t in money_ticks)  # 100 000 and up: grouped
    assert "RUB" not in " ".join(money_ticks)

    count_ticks = _tick_texts(_axis(fig, active).get_yticklabels())
    assert count_ticks and all(t.isdigit() for t in count_ticks), count_ticks

    weeks = _tick_texts(_axis(fig, nps).get_xticklabels())
    assert len(weeks) == 12 and weeks[-1] == LAST_WEEK[locale], weeks
    # Every text on the chart is in the owner's language: legend and title too.
    legend_texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert legend_texts == [revenue, active]


async def test_the_legend_never_covers_a_bar(
    session: AsyncSession, engine: AsyncEngine, settings: Settings, charts: list[Figure]
) -> None:
    await _busy_program(session)  # every bar reaches the top of the plot
    fig = await _digest_chart(engine, settings, charts, "en")
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    assert legends
    bars = [patch for patch in _axis(fig, "Revenue through cards").patches if patch.get_height()]
    assert len(bars) == 12
    texts = [
        *fig.texts,  # the title
        *(t for ax in fig.axes for t in (*ax.get_xticklabels(), *ax.get_yticklabels())),
        *(ax.title for ax in fig.axes if ax.get_title()),
    ]
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for bar in bars:
            assert not Bbox.intersection(box, bar.get_window_extent(renderer)), (box, bar)
        # Nor does it sit on the title or a tick label.
        for text in texts:
            if text.get_visible() and text.get_text():
                other = text.get_window_extent(renderer)
                assert not Bbox.intersection(box, other), text.get_text()


@pytest.mark.parametrize("locale", ["ru", "en", "et"])
async def test_a_new_program_gets_a_message_instead_of_empty_axes(
    session: AsyncSession,
    engine: AsyncEngine,
    settings: Settings,
    charts: list[Figure],
    locale: str,
) -> None:
    d = Data(session)
    await d.card("100045", issued_at=msk(2026, 11, 10))  # issued, never used
    await d.commit()
    fig = await _digest_chart(engine, settings, charts, locale)
    assert not [ax for ax in fig.axes if ax.axison]  # no axes, so no −0.04…0.04 either
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(t.replace("\n", " ").startswith(NOTHING_YET[locale]) for t in texts), texts


async def test_axes_start_at_zero_with_whole_counts_when_only_answers_came_in(
    session: AsyncSession, engine: AsyncEngine, settings: Settings, charts: list[Figure]
) -> None:
    d = Data(session)
    client = await d.client()
    await d.survey(client, msk(2026, 11, 12), 10)  # an answer, but no purchase yet
    await d.commit()
    fig = await _digest_chart(engine, settings, charts, "en")
    revenue, active = _axis(fig, "Revenue through cards"), _axis(fig, "Active cards")
    for ax in (revenue, active):
        low, high = ax.get_ylim()
        assert low == 0 and high >= 1
    assert _tick_texts(revenue.get_yticklabels()) == ["₽0", "₽1"]
    assert _tick_texts(active.get_yticklabels()) == ["0", "1"]
    nps = _axis(fig, "NPS")
    assert nps.lines and nps.get_ylim() == (-100, 100)
