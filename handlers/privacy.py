"""Data rights for everyone, in any state, consent or not: /privacy, /mydata, /deletemydata,
/notifications. Private chats only: a data export must never land in a group.

The policy text lives in `locales/<lang>/privacy.md` so the owner can edit it without touching
code. It is a small Markdown subset (`# heading`, `## heading`, `- item`, `**bold**`) rendered to
Telegram HTML; `{store_name}`, `{store_phone}`, `{store_address}`, `{version}` and `{retention}`
are filled in, any other `{…}` is left as written.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from config import LANGUAGES, PROJECT_ROOT, Settings
from db.database import Database
from handlers import formatting
from handlers.filters import Match
from services import privacy

POLICY_DIR = PROJECT_ROOT / "locales"
MESSAGE_LIMIT = 4096


class PrivacyAction(StrEnum):
    ERASE = "erase"
    KEEP = "keep"
    MARKETING_ON = "on"
    MARKETING_OFF = "off"


class PrivacyCb(CallbackData, prefix="pv"):
    action: PrivacyAction


# ------------------------------------------------------------------------------ the policy


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def policy_path(language: str, root: Path = POLICY_DIR) -> Path:
    path = root / language / "privacy.md"
    return path if path.is_file() else root / "ru" / "privacy.md"


def render_policy(source: str, values: dict[str, str]) -> str:
    """Markdown subset → Telegram HTML, with every value escaped.

    A store may leave values unset (no phone, no address): a line that only labels such values
    ("Questions: {store_phone} {store_address}") is then left out, and so is a heading left
    with nothing under it — never a heading followed by nothing."""
    lines: list[tuple[int, str]] = []  # (heading level, 0 for any other line; HTML)
    for line in html.escape(source, quote=False).splitlines():
        filled = _fill_line(line, values)
        if filled is None:
            continue
        stripped = filled.strip()
        if stripped.startswith("#"):
            level = len(stripped) - len(stripped.lstrip("#"))
            lines.append((level, f"<b>{stripped.lstrip('#').strip()}</b>"))
        elif stripped.startswith(("- ", "* ")):
            lines.append((0, "• " + stripped[2:]))
        else:
            lines.append((0, filled.rstrip()))
    kept = [
        text
        for index, (level, text) in enumerate(lines)
        if not level or _has_content(lines[index + 1 :], level)
    ]
    text = _BLANK_LINES.sub("\n\n", "\n".join(kept)).strip()
    return _BOLD.sub(r"<b>\1</b>", text)


_BLANK_LINES = re.compile(r"\n{3,}")
_SPACES = re.compile(r"(?<=\S) {2,}")
_LABEL_ENDS = (":", "—", "–", "-")


def _fill_line(line: str, values: dict[str, str]) -> str | None:
    """The line with its values filled in; None when all its values are empty and the rest of
    the line is only their label (it ends with a colon or a dash, or has no words at all)."""
    known = [m[1] for m in _PLACEHOLDER.finditer(line) if m[1] in values]
    if known and not any(values[name].strip() for name in known):
        label = _PLACEHOLDER.sub(lambda m: "" if m[1] in values else m[0], line)
        label = label.replace("**", "").strip().lstrip("#-* ").strip()
        if label.endswith(_LABEL_ENDS) or not any(ch.isalnum() for ch in label):
            return None
    filled = _PLACEHOLDER.sub(
        lambda m: html.escape(values[m[1]].strip()) if m[1] in values else m[0], line
    )
    return _SPACES.sub(" ", filled) if known else filled  # an empty value leaves no gap


def _has_content(following: list[tuple[int, str]], level: int) -> bool:
    """Whether a heading has any text under it before the next heading of its level or higher."""
    for other_level, text in following:
        if other_level and other_level <= level:
            return False
        if not other_level and text.strip():
            return True
    return False


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split at paragraph (then line) boundaries so that no part exceeds Telegram's limit."""
    parts: list[str] = []
    current = ""
    for paragraph in text.split("\n\n"):
        pieces = [paragraph] if len(paragraph) <= limit else paragraph.split("\n")
        for piece in pieces:
            piece = piece.strip("\n")
            if not piece:
                continue
            while len(piece) > limit:  # one enormous line: hard cut (no tags span it here)
                parts.append(piece[:limit])
                piece = piece[limit:]
            candidate = f"{current}\n\n{piece}" if current else piece
            if len(candidate) <= limit:
                current = candidate
            else:
                parts.append(current)
                current = piece
    if current:
        parts.append(current)
    return parts


def _retention_text(settings: Settings) -> str:
    if settings.privacy.retention_months:
        return ngettext(
            "If you neither buy with the card nor write to the bot for {months} month, "
            "your data is anonymised automatically.",
            "If you neither buy with the card nor write to the bot for {months} months, "
            "your data is anonymised automatically.",
            settings.privacy.retention_months,
        ).format(months=formatting.number(settings.privacy.retention_months))
    return _("We keep your data until you erase it.")


def _nothing_stored() -> str:
    return _(
        "We store nothing about you: you have not joined the loyalty program "
        "(or your data was erased)."
    )


async def show_policy(message: Message, db: Database, settings: Settings) -> None:
    assert message.from_user is not None
    language = formatting.current_locale()
    if language not in LANGUAGES:
        language = settings.store.default_language
    source = policy_path(language).read_text(encoding="utf-8")
    values = {
        "store_name": settings.store.name,
        "store_phone": settings.store.phone,
        "store_address": settings.store.address,
        "version": settings.privacy.policy_version,
        "retention": _retention_text(settings),
    }
    text = render_policy(source, values)
    client = await privacy.membership(db, message.from_user.id)
    if client is None or client.consent_at is None:
        status = _nothing_stored()
    elif client.consent_version == settings.privacy.policy_version:
        status = _("You accepted this version of the policy on {date}.").format(
            date=formatting.day(client.consent_at, settings)
        )
    else:
        status = _(
            "You accepted version {old} of the policy on {date}; the current version is "
            "{version}. Send /start to review and accept it."
        ).format(
            old=html.escape(client.consent_version or "?"),
            date=formatting.day(client.consent_at, settings),
            version=html.escape(settings.privacy.policy_version),
        )
    for part in split_message(f"{text}\n\n<i>{status}</i>"):
        await message.answer(part, disable_web_page_preview=True)


# ------------------------------------------------------------------------------- /mydata


async def send_my_data(message: Message, db: Database, settings: Settings) -> None:
    assert message.from_user is not None
    data = await privacy.export_client_data(
        db,
        message.from_user.id,
        exponent=settings.store.currency_exponent,
        currency=settings.store.currency,
    )
    if data is None:
        await message.answer(_nothing_stored())
        return
    await message.answer_document(
        BufferedInputFile(privacy.export_json(data), filename="my-data.json"),
        caption=_("Everything we store about you. Keep this file private."),
    )


# -------------------------------------------------------------------------- /deletemydata


def _erase_keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("🗑 Yes, erase my data"),
                    callback_data=PrivacyCb(action=PrivacyAction.ERASE).pack(),
                )
            ],
            [
                InlineKeyboardButton(
                    text=_("Keep my data"),
                    callback_data=PrivacyCb(action=PrivacyAction.KEEP).pack(),
                )
            ],
        ]
    )


async def ask_to_erase(message: Message, db: Database) -> None:
    assert message.from_user is not None
    if await privacy.membership(db, message.from_user.id) is None:
        await message.answer(_nothing_stored())
        return
    await message.answer(
        _(
            "Erase all your data?\n\n"
            "Your card will be blocked; your name, Telegram id, phone, birthday and survey "
            "comments will be deleted. Purchase records stay, without your name, for the "
            "store's accounting. This cannot be undone."
        ),
        reply_markup=_erase_keyboard(),
    )


async def _edit_or_send(cq: CallbackQuery, text: str, markup: Any = None) -> None:
    if cq.message is not None and isinstance(cq.message, Message):
        try:
            await cq.message.edit_text(text, reply_markup=markup)
        except TelegramBadRequest as exc:  # a second tap on a stale button: nothing changed
            if "not modified" not in exc.message:
                raise
    elif cq.message is not None:  # too old to edit: answer in the chat instead
        await cq.bot.send_message(cq.message.chat.id, text, reply_markup=markup)  # type: ignore[union-attr]


async def erase(
    cq: CallbackQuery, db: Database, settings: Settings, state: FSMContext, now: datetime
) -> None:
    # Only ever the presser's own data: the button carries no id to trust.
    erased = await privacy.erase_client(
        db, cq.from_user.id, now, default_language=settings.store.default_language
    )
    await state.clear()
    if erased:
        text = _("Your data was erased. Goodbye! If you ever want to come back, send /start.")
    else:
        text = _nothing_stored()
    await _edit_or_send(cq, text)
    await cq.answer()


async def keep(cq: CallbackQuery) -> None:
    await _edit_or_send(cq, _("Nothing was deleted."))
    await cq.answer()


# ------------------------------------------------------------------------- /notifications


def _marketing_view(enabled: bool) -> tuple[str, InlineKeyboardMarkup]:
    if enabled:
        text = _("Offers and surveys: <b>on</b>. We write rarely and never in quiet hours.")
        button = InlineKeyboardButton(
            text=_("🔕 Turn off"),
            callback_data=PrivacyCb(action=PrivacyAction.MARKETING_OFF).pack(),
        )
    else:
        text = _("Offers and surveys: <b>off</b>. We only answer when you write to us.")
        button = InlineKeyboardButton(
            text=_("🔔 Turn on"), callback_data=PrivacyCb(action=PrivacyAction.MARKETING_ON).pack()
        )
    return text, InlineKeyboardMarkup(inline_keyboard=[[button]])


async def show_notifications(message: Message, db: Database) -> None:
    assert message.from_user is not None
    enabled = await privacy.marketing_enabled(db, message.from_user.id)
    if enabled is None:
        await message.answer(_nothing_stored())
        return
    text, markup = _marketing_view(enabled)
    await message.answer(text, reply_markup=markup)


async def toggle_notifications(
    cq: CallbackQuery, callback_data: PrivacyCb, db: Database, now: datetime
) -> None:
    wanted = callback_data.action == PrivacyAction.MARKETING_ON
    enabled = await privacy.set_marketing(db, cq.from_user.id, wanted, now)
    if enabled is None:
        await _edit_or_send(cq, _nothing_stored())
        await cq.answer()
        return
    text, markup = _marketing_view(enabled)
    await _edit_or_send(cq, text, markup)
    await cq.answer(_("Saved."))


def setup() -> Router:
    """This feature's router, built anew for each dispatcher (handlers in routing order)."""
    router = Router(name=__name__)
    router.message.filter(Match(F.chat.type == "private"))
    # A privacy button pressed (or forged) in a group changes nothing and posts nothing there.
    router.callback_query.filter(Match(F.message.chat.type == "private"))
    router.message.register(show_policy, Command("privacy"), StateFilter("*"))
    router.message.register(send_my_data, Command("mydata"), StateFilter("*"))
    router.message.register(ask_to_erase, Command("deletemydata"), StateFilter("*"))
    router.callback_query.register(erase, PrivacyCb.filter(F.action == PrivacyAction.ERASE))
    router.callback_query.register(keep, PrivacyCb.filter(F.action == PrivacyAction.KEEP))
    router.message.register(show_notifications, Command("notifications"), StateFilter("*"))
    router.callback_query.register(
        toggle_notifications,
        PrivacyCb.filter(F.action.in_({PrivacyAction.MARKETING_ON, PrivacyAction.MARKETING_OFF})),
    )
    return router
