"""Why members take part: the four answer buttons, the "something else" text, and the
digest's lines.

The question itself is rendered by `handlers/outbox.py` when the outbox sends it. Its buttons
carry only the reason (`why:a:<reason>`, `why:k` to skip the text): the service looks up the
pressing user's own question, so a press from someone who was never asked is refused, and a
second press changes nothing.
"""

from __future__ import annotations

import contextlib
import html
from datetime import datetime
from typing import Literal

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __

from config import Settings
from db.database import Database
from handlers import formatting
from handlers.errors import renders
from handlers.filters import Match
from handlers.surveys import drop_buttons
from services import motivation
from services.delivery import Button
from services.motivation import MotivationFigures, MotivationNotAsked, Reason
from services.reports import ReportService, digest_week
from services.surveys import AnswerStatus


class MotivationCb(CallbackData, prefix="why"):
    action: Literal["a", "k"]  # "a" = answer with `reason`, "k" = skip the text
    reason: Reason = Reason.OTHER


class MotivationFlow(StatesGroup):
    comment = State()


# The answers as the member reads them on the buttons (and the owner in the digest).
LABELS = {
    Reason.DISCOUNT: __("The discount"),
    Reason.STORE: __("The store itself"),
    Reason.CONVENIENCE: __("Convenience"),
    Reason.OTHER: __("Something else"),
}


def label(reason: Reason) -> str:
    return str(LABELS[reason])


def question_keyboard() -> tuple[tuple[Button, ...], ...]:
    """The question's four buttons, one a row (the outbox's plain-data buttons)."""
    return tuple(
        (Button(label(reason), MotivationCb(action="a", reason=reason).pack()),)
        for reason in Reason
    )


@renders(MotivationNotAsked)
def _not_asked(exc: Exception, settings: Settings) -> str:
    return _("This survey is not available.")


def _skip_keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=_("Skip"), callback_data=MotivationCb(action="k").pack())]
        ]
    )


async def on_reason(
    cq: CallbackQuery,
    callback_data: MotivationCb,
    db: Database,
    state: FSMContext,
    now: datetime,
) -> None:
    result = await motivation.answer(
        db, tg_id=cq.from_user.id, reason=callback_data.reason, now=now
    )
    if result.status is AnswerStatus.ALREADY:
        await cq.answer(_("You have already answered this survey. Thank you!"))
        await drop_buttons(cq)
        return
    await cq.answer()
    chosen = f"✅ {html.escape(label(callback_data.reason))}"
    if not result.ask_comment:
        text = f"{chosen}\n\n" + _("Thank you for your answer!")
        if isinstance(cq.message, Message):
            await cq.message.edit_text(text)
        return
    await state.set_state(MotivationFlow.comment)
    prompt = f"{chosen}\n\n" + _("What keeps you with us? Just write a few words, or press Skip.")
    if isinstance(cq.message, Message):
        await cq.message.edit_text(prompt, reply_markup=_skip_keyboard())
        await state.update_data(prompt=cq.message.message_id)
    elif cq.bot is not None:  # the question is too old to edit: ask in a new message
        sent = await cq.bot.send_message(cq.from_user.id, prompt, reply_markup=_skip_keyboard())
        await state.update_data(prompt=sent.message_id)


async def on_skip(cq: CallbackQuery, db: Database, state: FSMContext) -> None:
    awaited = await motivation.awaits_comment(db, tg_id=cq.from_user.id)
    if await state.get_state() == MotivationFlow.comment.state:  # not another flow's
        await state.clear()
    if not awaited:
        await cq.answer(_("Thank you! We already have your answer."))
        await drop_buttons(cq)
        return
    await cq.answer()
    if isinstance(cq.message, Message):
        await cq.message.edit_text(
            f"✅ {html.escape(label(Reason.OTHER))}\n\n" + _("Thank you for your answer!")
        )


async def on_comment(message: Message, db: Database, state: FSMContext, now: datetime) -> None:
    assert message.from_user is not None and message.text is not None
    prompt = (await state.get_data()).get("prompt")
    await state.clear()
    stored = await motivation.comment(db, tg_id=message.from_user.id, text=message.text, now=now)
    if isinstance(prompt, int) and message.bot is not None:
        with contextlib.suppress(TelegramBadRequest):  # the Skip button under the prompt goes
            await message.bot.edit_message_reply_markup(
                chat_id=message.chat.id, message_id=prompt, reply_markup=None
            )
    if stored:
        await message.answer(_("Thank you for the feedback! We will read it carefully."))
    else:
        await message.answer(_("Thank you! We already have your answer."))


async def on_comment_not_text(message: Message) -> None:
    await message.answer(_("Please write your answer as text, or press Skip."))


# -------------------------------------------------------------------------------- digest


def _share(count: int, answers: int) -> str:
    """`3 (60 %)`; a bare `0` when the span has no answers at all."""
    if not answers:
        return formatting.number(count)
    pct = (200 * count + answers) // (2 * answers)  # whole percent, halves up
    return f"{formatting.number(count)} ({formatting.pct(pct)})"


def render_lines(
    figures: MotivationFigures, room: int | None = None, comment_chars: int = 80
) -> list[str]:
    """The digest's block (HTML, in the current locale): a blank line, the heading, one line
    per reason with the week's and all time's answers and shares, and the week's "something
    else" comments, escaped, under their reason. Nothing at all before the first answer.

    `room`: visible characters the caption has left; comments are dropped (the oldest first),
    then the whole block, until it fits."""
    if not figures.total_answers:
        return []
    lines = ["", _("<b>Why members take part</b> (this week · in total)")]
    for reason in Reason:
        week = _share(figures.week[reason], figures.week_answers)
        total = _share(figures.total[reason], figures.total_answers)
        lines.append(f"• {html.escape(label(reason))}: {week} · {total}")
    comments = [
        f"   «{html.escape(formatting.shorten(text, comment_chars))}»" for text in figures.comments
    ]
    for shown in range(len(comments), -1, -1):
        block = lines + comments[:shown]  # "something else" is the last line: they go under it
        # + 1: the line break that joins the block to the text before
        if room is None or formatting.visible_len(block) + 1 <= room:
            return block
    return []


async def motivation_lines(
    reports: ReportService, now: datetime, room: int | None = None, comments: int = 2
) -> list[str]:
    """The weekly digest's lines about why members take part, for the digest's week (the last
    7 complete store days before `now`), within `room` visible characters: see
    `render_lines`."""
    first, last = digest_week(now, reports.settings)
    figures = await reports.db.report(motivation.figures, reports.settings, first, last, comments)
    return render_lines(figures, room)


def setup() -> Router:
    """This feature's router, built anew for each dispatcher (handlers in routing order)."""
    router = Router(name=__name__)
    # The customer's private chat only: pressed or forged in a group, nothing changes.
    router.message.filter(Match(F.chat.type == "private"))
    router.callback_query.filter(Match(F.message.chat.type == "private"))
    router.callback_query.register(on_reason, MotivationCb.filter(F.action == "a"))
    router.callback_query.register(on_skip, MotivationCb.filter(F.action == "k"))
    router.message.register(
        on_comment,
        StateFilter(MotivationFlow.comment),
        Match(F.text),
        ~Match(F.text.startswith("/")),
    )
    router.message.register(
        on_comment_not_text, StateFilter(MotivationFlow.comment), ~Match(F.text)
    )
    return router
