"""Binding a printed card (number, PIN, replacing a lost one) or taking a digital card."""

from __future__ import annotations

from aiogram import Bot
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from config import Settings
from handlers.referrals import after_joining
from handlers.wallet.base import Wallet, WalletCb
from handlers.wallet.views import (
    _after_binding,
    _ask_profile,
    _drop_buttons,
    _welcome_text,
    send_card,
)
from services.cards import group_number
from services.wallet import (
    PinRequired,
    ReplacementNeedsConfirmation,
    WalletService,
)


async def _bind(
    message_or_cq: Message | CallbackQuery,
    *,
    text: str,
    pin: str | None,
    replace: bool,
    state: FSMContext,
    wallet: WalletService,
    settings: Settings,
    bot: Bot,
    i18n: I18n,
) -> None:
    user = message_or_cq.from_user
    assert user is not None
    chat_id = user.id
    try:
        result = await wallet.bind(user.id, text, pin=pin, replace=replace)
    except PinRequired as exc:
        await state.set_state(Wallet.pin)
        await state.update_data(number=exc.number)
        await bot.send_message(
            chat_id,
            _("Card {number} is protected by a PIN. Send the PIN printed on the back.").format(
                number=group_number(exc.number)
            ),
        )
        return
    except ReplacementNeedsConfirmation as exc:
        await state.set_state(Wallet.confirm_replace)
        await state.update_data(number=exc.new_number, pin=pin)
        keyboard = InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(
                        text=_("✅ Replace my card"),
                        callback_data=WalletCb(action="replace").pack(),
                    ),
                    InlineKeyboardButton(
                        text=_("❌ Keep the current one"),
                        callback_data=WalletCb(action="keep").pack(),
                    ),
                ]
            ]
        )
        await bot.send_message(
            chat_id,
            _(
                "You already have card {old}. Replace it with card {new}? The old card will be "
                "blocked; your purchases and discount level carry over to the new one."
            ).format(old=group_number(exc.old_number), new=group_number(exc.new_number)),
            reply_markup=keyboard,
        )
        return
    await _after_binding(bot, chat_id, result, state, wallet, settings)


async def link_other(cq: CallbackQuery, state: FSMContext, wallet: WalletService) -> None:
    """A lost or a better card: ask for its number; binding it asks to confirm the swap."""
    await wallet.require_client(cq.from_user.id)
    await cq.answer()
    await state.set_state(Wallet.number)
    await cq.bot.send_message(  # type: ignore[union-attr]
        cq.from_user.id,
        _(
            "Send the number of the card you want to link instead, for example "
            "<code>100 045</code>. You will be asked to confirm."
        ),
    )


async def got_number(
    message: Message,
    state: FSMContext,
    wallet: WalletService,
    settings: Settings,
    bot: Bot,
    i18n: I18n,
) -> None:
    await _bind(
        message,
        text=message.text or "",
        pin=None,
        replace=False,
        state=state,
        wallet=wallet,
        settings=settings,
        bot=bot,
        i18n=i18n,
    )


async def number_hint(message: Message) -> None:
    await message.answer(
        _("Please send the card number as text, for example 100 045 (or /cancel).")
    )


async def got_pin(
    message: Message,
    state: FSMContext,
    wallet: WalletService,
    settings: Settings,
    bot: Bot,
    i18n: I18n,
) -> None:
    data = await state.get_data()
    await _bind(
        message,
        text=str(data.get("number", "")),
        pin=(message.text or "")[:64],
        replace=False,
        state=state,
        wallet=wallet,
        settings=settings,
        bot=bot,
        i18n=i18n,
    )


async def pin_hint(message: Message) -> None:
    await message.answer(_("Please send the PIN from the back of the card as text (or /cancel)."))


async def confirm_replace(
    cq: CallbackQuery,
    callback_data: WalletCb,
    state: FSMContext,
    wallet: WalletService,
    settings: Settings,
    bot: Bot,
    i18n: I18n,
) -> None:
    data = await state.get_data()
    if await state.get_state() != Wallet.confirm_replace.state or not data.get("number"):
        await cq.answer(_("This button is no longer valid."), show_alert=True)
        return
    await cq.answer()
    await _drop_buttons(cq)
    if callback_data.action == "keep":
        await state.clear()
        await bot.send_message(cq.from_user.id, _("OK, you keep your current card."))
        return
    await _bind(
        cq,
        text=str(data["number"]),
        pin=data.get("pin"),
        replace=True,
        state=state,
        wallet=wallet,
        settings=settings,
        bot=bot,
        i18n=i18n,
    )


async def confirm_hint(message: Message) -> None:
    await message.answer(
        _("Please choose with the buttons above: replace your card or keep it (or /cancel).")
    )


async def digital(
    cq: CallbackQuery,
    state: FSMContext,
    wallet: WalletService,
    settings: Settings,
    bot: Bot,
) -> None:
    result = await wallet.issue_digital(cq.from_user.id)
    await cq.answer()
    await _drop_buttons(cq)
    conversation = await state.get_data()  # an invite link opened before joining, if any
    await state.clear()
    await bot.send_message(
        cq.from_user.id,
        _("Here is your digital card {number}.").format(number=group_number(result.number)),
    )
    client = await wallet.require_client(cq.from_user.id)
    await send_card(bot, cq.from_user.id, await wallet.card_view(client), wallet, settings)
    if result.welcome is not None:
        await bot.send_message(cq.from_user.id, _welcome_text(result.welcome, settings))
    await after_joining(bot, cq.from_user.id, conversation, wallet)
    await _ask_profile(bot, cq.from_user.id, state, phone=client.phone is None)
