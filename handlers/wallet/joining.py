"""/start, the privacy consent and the welcome of a new member (staff get their own welcome)."""

from __future__ import annotations

import html

from aiogram import Bot
from aiogram.filters import CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardRemove,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.i18n import LocaleMiddleware
from config import Settings
from handlers.referrals import opened_invite
from handlers.roles import Role, StaffDirectory
from handlers.wallet.base import WalletCb
from handlers.wallet.keyboards import _consent_keyboard
from handlers.wallet.views import _ask_number, _drop_buttons, send_card
from services import qr_payload, referrals
from services.wallet import (
    NoActiveCard,
    TelegramProfile,
    WalletService,
)


def _someone_elses_card(settings: Settings) -> str:
    return _(
        "This is a loyalty card of <b>{store}</b>. Only the store's staff can use it "
        "at the till. Want your own card? Send /start."
    ).format(store=html.escape(settings.store.name))


async def _offer_consent(message: Message, name: str, settings: Settings) -> None:
    await message.answer(
        _(
            "Hello, {name}! 👋\n"
            "This is the loyalty program of <b>{store}</b>: your discount card lives right here "
            "in Telegram. Show its QR code at the till to get your discount, and see your "
            "savings and personal offers at any time."
        ).format(name=html.escape(name), store=html.escape(settings.store.name)),
        reply_markup=ReplyKeyboardRemove(),
    )
    await message.answer(
        _(
            "<b>Before we start.</b> To run your card we store your Telegram id and name, "
            "the language you chose, your card number and your purchases with us (date, amount, "
            "discount), and later, only if you choose to give them, your phone number and "
            "birthday. We use them only for the loyalty program: your discount, your history "
            "and personal offers. We do not share them.\n"
            "The full policy: /privacy. You can download or erase your data at any time: "
            "/mydata, /deletemydata.\n\n"
            "Do you agree?"
        ),
        reply_markup=_consent_keyboard(),
    )


async def start(
    message: Message,
    command: CommandObject,
    state: FSMContext,
    wallet: WalletService,
    staff: StaffDirectory,
    settings: Settings,
    bot: Bot,
) -> None:
    assert message.from_user is not None
    await state.clear()
    args = (command.args or "").strip()
    if args and qr_payload.looks_like_payload(args):
        # Someone opened a card's QR link: it is only useful at the till. Say nothing about it.
        await message.answer(_someone_elses_card(settings), reply_markup=ReplyKeyboardRemove())
        return
    if code := referrals.invite_code_of(args):  # a friend's invite: kept until they join
        await opened_invite(message, code, state, wallet)
    client = await wallet.client(message.from_user.id)
    if wallet.has_consent(client):
        try:
            view = await wallet.card_view(client)
        except NoActiveCard:
            await _ask_number(bot, message.chat.id, state, settings)
            return
        await send_card(bot, message.chat.id, view, wallet, settings)
        return
    role = await staff.role(bot, message.from_user.id)
    if role >= Role.CASHIER:
        # Staff open the bot to work: the till first; joining as a customer is one tap away.
        await message.answer(_staff_welcome(role, settings), reply_markup=_join_keyboard())
        return
    await _offer_consent(message, message.from_user.first_name or "", settings)


def _staff_welcome(role: Role, settings: Settings) -> str:
    who = (
        _("You are an owner of <b>{store}</b>.")
        if role >= Role.OWNER
        else _("You are a cashier of <b>{store}</b>.")
    ).format(store=html.escape(settings.store.name))
    return "\n".join(
        [
            who,
            _(
                "To record a sale, scan the customer's QR code with your phone's camera, send a "
                "photo of it here, or type /sale and the card number, e.g. /sale 100045. "
                "/help lists everything you can do."
            ),
            "",
            _("Want a loyalty card of your own as a customer too? Tap below."),
        ]
    )


def _join_keyboard() -> InlineKeyboardMarkup:
    join = InlineKeyboardButton(
        text=_("💳 Get my own card"), callback_data=WalletCb(action="join").pack()
    )
    return InlineKeyboardMarkup(inline_keyboard=[[join]])


async def join(cq: CallbackQuery, settings: Settings) -> None:
    await cq.answer()
    await _drop_buttons(cq)
    if isinstance(cq.message, Message):
        await _offer_consent(cq.message, cq.from_user.first_name or "", settings)


async def agree(
    cq: CallbackQuery,
    state: FSMContext,
    wallet: WalletService,
    settings: Settings,
    bot: Bot,
    i18n: I18n,
    i18n_middleware: LocaleMiddleware,
) -> None:
    user = cq.from_user
    client = await wallet.give_consent(
        TelegramProfile(
            tg_id=user.id,
            first_name=user.first_name,
            last_name=user.last_name,
            username=user.username,
        ),
        language=i18n.current_locale,
    )
    await i18n_middleware.pending.forget(user.id)
    i18n_middleware.forget(user.id)
    await cq.answer(_("Thank you!"))
    await _drop_buttons(cq)
    chat_id = cq.message.chat.id if cq.message is not None else user.id
    try:
        view = await wallet.card_view(client)
    except NoActiveCard:
        await _ask_number(bot, chat_id, state, settings)
        return
    await send_card(bot, chat_id, view, wallet, settings)
