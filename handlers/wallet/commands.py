"""/card, /history, /offers and /language (/store: handlers.wallet.shops)."""

from __future__ import annotations

import contextlib
import html

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardMarkup,
    Message,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.i18n import LocaleMiddleware
from config import LANGUAGES, Settings
from handlers import formatting
from handlers.wallet.base import LANGUAGE_NAMES, WalletCb
from handlers.wallet.keyboards import _languages_row
from handlers.wallet.views import _history_keyboard, _history_text, _offer_kind, send_card
from services.branches import BranchService
from services.wallet import (
    CardView,
    NoActiveCard,
    WalletService,
)


async def show_card(message: Message, wallet: WalletService, settings: Settings, bot: Bot) -> None:
    assert message.from_user is not None
    view = await wallet.card_view(message.from_user.id)
    await send_card(bot, message.chat.id, view, wallet, settings)


async def history(
    message: Message, wallet: WalletService, settings: Settings, branches: BranchService
) -> None:
    assert message.from_user is not None
    page = await wallet.history(message.from_user.id, 0)
    view = await _optional_view(wallet, message.from_user.id)
    shops = await _shop_names(branches)
    await message.answer(
        _history_text(page, view, settings, shops), reply_markup=_history_keyboard(page)
    )


async def _shop_names(branches: BranchService) -> dict[int, str] | None:
    """Every branch's name in a chain (a purchase line says where it was made), else None."""
    return await branches.names() if await branches.is_chain() else None


async def _optional_view(wallet: WalletService, tg_id: int) -> CardView | None:
    try:
        return await wallet.card_view(tg_id)
    except NoActiveCard:
        return None


async def history_page(
    cq: CallbackQuery,
    callback_data: WalletCb,
    wallet: WalletService,
    settings: Settings,
    branches: BranchService,
) -> None:
    page = await wallet.history(cq.from_user.id, callback_data.page)
    view = await _optional_view(wallet, cq.from_user.id)
    shops = await _shop_names(branches)
    if cq.message is not None and hasattr(cq.message, "edit_text"):
        with contextlib.suppress(TelegramBadRequest):  # not modified: same page twice
            await cq.message.edit_text(
                _history_text(page, view, settings, shops), reply_markup=_history_keyboard(page)
            )
    await cq.answer()


async def offers(
    message: Message, wallet: WalletService, settings: Settings, branches: BranchService
) -> None:
    assert message.from_user is not None
    items = await wallet.offers(message.from_user.id)
    if not items:
        client = await wallet.client(message.from_user.id)
        if client is not None and client.marketing_opt_out:
            await message.answer(
                _(
                    "No personal offers right now. You turned offers off, so we will not send "
                    "any: /notifications turns them back on."
                )
            )
            return
        await message.answer(
            _("No personal offers right now. We will send you one when there is something for you.")
        )
        return
    lines = [_("<b>Your personal offers</b> (applied automatically at the till):")]
    for offer in items:
        lines.append(
            "• "
            + _("+{pct} on your next purchase ({why}), valid until {until}").format(
                pct=formatting.pct(offer.bonus_pct),
                why=_offer_kind(offer.kind),
                until=formatting.when(offer.valid_until, settings),
            )
        )
    if await branches.is_chain():
        shop = await wallet.usual_branch(message.from_user.id)
        if shop is not None:
            lines.append(_("(usual shop: {name})").format(name=html.escape(shop)))
    await message.answer("\n".join(lines))


async def language(message: Message) -> None:
    await message.answer(
        _("Choose your language:"),
        reply_markup=InlineKeyboardMarkup(inline_keyboard=[_languages_row()]),
    )


async def set_language(
    cq: CallbackQuery,
    callback_data: WalletCb,
    wallet: WalletService,
    i18n: I18n,
    i18n_middleware: LocaleMiddleware,
) -> None:
    code = callback_data.value
    if code not in LANGUAGES:
        await cq.answer(_("This button is no longer valid."), show_alert=True)
        return
    stored = await wallet.set_language(cq.from_user.id, code)
    i18n_middleware.forget(cq.from_user.id)
    if not stored:
        await i18n_middleware.pending.remember(cq.from_user.id, code)
    with i18n.use_locale(code):
        text = _("Language: {language}. Send /start to continue.").format(
            language=LANGUAGE_NAMES[code]
        )
        await cq.answer(LANGUAGE_NAMES[code])
    if cq.message is not None:
        await cq.message.answer(text)
