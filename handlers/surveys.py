"""NPS answers (buttons 0…10, then an optional comment) and the opt-out button on offers.

The survey id in the button is only a lookup key: the service re-checks that the survey
belongs to the pressing user. A second press is answered politely and changes nothing.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from pydantic import Field

from config import Settings
from db.database import Database
from handlers.errors import renders
from handlers.filters import Match
from services import privacy, surveys
from services.surveys import AnswerStatus, SurveyNotFound


class NpsCb(CallbackData, prefix="nps"):
    action: str  # "s" = score, "k" = skip the comment
    # Bounded so that forged data (`nps:s:<40 digits>:5`) is refused when unpacked, before any
    # query: SQLite cannot even compare an integer that large.
    survey: int = Field(ge=1, le=2**62)
    score: int = Field(default=0, ge=0, le=10)


class MarketingCb(CallbackData, prefix="mkt"):
    action: str  # "out" | "in"


class SurveyFlow(StatesGroup):
    comment = State()


@renders(SurveyNotFound)
def _not_found(exc: Exception, settings: Settings) -> str:
    return _("This survey is not available.")


def _skip_keyboard(survey_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("Skip"), callback_data=NpsCb(action="k", survey=survey_id).pack()
                )
            ]
        ]
    )


async def drop_buttons(cq: CallbackQuery) -> None:
    """A question answered: its buttons go (a message already without them is fine)."""
    if isinstance(cq.message, Message):
        with contextlib.suppress(TelegramBadRequest):  # already without buttons
            await cq.message.edit_reply_markup(reply_markup=None)


async def on_score(
    cq: CallbackQuery,
    callback_data: NpsCb,
    db: Database,
    settings: Settings,
    state: FSMContext,
    now: datetime,
) -> None:
    result = await surveys.answer(
        db,
        settings,
        survey_id=callback_data.survey,
        tg_id=cq.from_user.id,
        score=callback_data.score,
        now=now,
    )
    if result.status is AnswerStatus.ALREADY:
        await cq.answer(_("You have already answered this survey. Thank you!"))
        await drop_buttons(cq)
        return
    if result.status is AnswerStatus.EXPIRED:
        await cq.answer(_("This survey is closed. Thank you anyway!"))
        await drop_buttons(cq)
        return
    await cq.answer()
    if isinstance(cq.message, Message):
        await cq.message.edit_text(
            _("Your rating: {score} of 10. Thank you!").format(score=result.score)
        )
        if result.ask_comment:
            await state.set_state(SurveyFlow.comment)
            await state.update_data(survey_id=result.survey_id)
            await cq.message.answer(
                _("What could we do better? Just write a few words, or press Skip."),
                reply_markup=_skip_keyboard(result.survey_id),
            )


async def on_skip(
    cq: CallbackQuery,
    callback_data: NpsCb,
    db: Database,
    settings: Settings,
    state: FSMContext,
    now: datetime,
) -> None:
    await surveys.comment(
        db, settings, survey_id=callback_data.survey, tg_id=cq.from_user.id, text=None, now=now
    )
    await state.clear()
    await cq.answer()
    if isinstance(cq.message, Message):
        await cq.message.edit_text(_("Thank you for your answer!"))


async def on_comment(
    message: Message,
    db: Database,
    settings: Settings,
    state: FSMContext,
    now: datetime,
) -> None:
    assert message.from_user is not None and message.text is not None
    survey_id = (await state.get_data()).get("survey_id")
    await state.clear()
    if not isinstance(survey_id, int):
        return
    stored = await surveys.comment(
        db,
        settings,
        survey_id=survey_id,
        tg_id=message.from_user.id,
        text=message.text,
        now=now,
    )
    if stored:
        await message.answer(_("Thank you for the feedback! We will read it carefully."))
    else:
        await message.answer(_("Thank you! We already have your answer."))


async def on_comment_not_text(message: Message) -> None:
    await message.answer(_("Please write your answer as text, or press Skip."))


async def on_marketing(
    cq: CallbackQuery, callback_data: MarketingCb, db: Database, now: datetime
) -> None:
    enabled = callback_data.action == "in"
    state = await privacy.set_marketing(db, cq.from_user.id, enabled, now)
    if state is None:
        await cq.answer(_("You are not a member of the program."), show_alert=True)
        return
    await cq.answer()
    if not isinstance(cq.message, Message):
        return
    if enabled:
        await cq.message.edit_text(_("Offers are back on. Welcome back!"))
        return
    await cq.message.answer(
        _("Done: you will not receive offers or surveys any more."),
        reply_markup=InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(
                        text=_("↩️ Undo"), callback_data=MarketingCb(action="in").pack()
                    )
                ]
            ]
        ),
    )
    await drop_buttons(cq)


def setup() -> Router:
    """This feature's router, built anew for each dispatcher (handlers in routing order)."""
    router = Router(name=__name__)
    # Surveys and the opt-out button belong to the customer's private chat: in a group (forged or
    # forwarded) they change nothing and post nothing there.
    router.message.filter(Match(F.chat.type == "private"))
    router.callback_query.filter(Match(F.message.chat.type == "private"))
    router.callback_query.register(on_score, NpsCb.filter(F.action == "s"))
    router.callback_query.register(on_skip, NpsCb.filter(F.action == "k"))
    router.message.register(
        on_comment, StateFilter(SurveyFlow.comment), Match(F.text), ~Match(F.text.startswith("/"))
    )
    router.message.register(on_comment_not_text, StateFilter(SurveyFlow.comment), ~Match(F.text))
    router.callback_query.register(on_marketing, MarketingCb.filter())
    return router
