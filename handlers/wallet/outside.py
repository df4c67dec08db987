"""Card numbers, QR photos and stale buttons that arrive outside any conversation step."""

from __future__ import annotations

import contextlib
from datetime import datetime

from aiogram import Bot
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    CallbackQuery,
    Message,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from config import Settings
from handlers.photos import qr_texts
from handlers.wallet.binding import got_number
from handlers.wallet.joining import _someone_elses_card
from handlers.wallet.keyboards import _consent_keyboard
from services import qr_payload
from services.cards import group_number
from services.qr_decode import ImageRejected, QrReader
from services.wallet import (
    NoActiveCard,
    WalletService,
)


async def number_outside_a_step(
    message: Message,
    state: FSMContext,
    wallet: WalletService,
    settings: Settings,
    bot: Bot,
    i18n: I18n,
) -> None:
    """A card number typed outside the binding step: before "I agree", after /cancel, or by a
    member who already holds a card. Say what to do instead of "I did not understand"."""
    assert message.from_user is not None
    client = await wallet.client(message.from_user.id)
    if not wallet.has_consent(client):
        await message.answer(
            _(
                "To link your card, first agree to the program's terms: tap “✅ I agree” below, "
                "then send the number again."
            ),
            reply_markup=_consent_keyboard(),
        )
        return
    try:
        view = await wallet.card_view(message.from_user.id)
    except NoActiveCard:  # a member without a card: this is the number they want to link
        await got_number(message, state, wallet, settings, bot, i18n)
        return
    await message.answer(
        _(
            "Your card is {number}. To link another card instead, open /card and tap "
            "“🔄 Link another card”."
        ).format(number=group_number(view.number))
    )


async def photo(
    message: Message,
    bot: Bot,
    qr_reader: QrReader,
    wallet: WalletService,
    settings: Settings,
    now: datetime,
) -> None:
    """A customer's photo: usually of a card's QR (their own, or one they were given; the
    card image's static QR or a screenshot of the live one)."""
    assert message.from_user is not None
    try:
        texts = await qr_texts(message, bot, qr_reader)
    except ImageRejected:
        texts = []
    number = next((n for t in texts if (n := _card_number_in(settings, t, now)) is not None), None)
    if number is None:
        await message.answer(
            _(
                "I could not find a card's QR code in this picture. To link a printed card, "
                "send the number printed on it as text."
            )
        )
        return
    client = await wallet.client(message.from_user.id)
    if wallet.has_consent(client):
        with contextlib.suppress(NoActiveCard):
            view = await wallet.card_view(message.from_user.id)
            if view.number == number:
                await message.answer(
                    _(
                        "This is your card {number}. Show this QR code at the till to get your "
                        "discount."
                    ).format(number=group_number(number))
                )
                return
    await message.answer(_someone_elses_card(settings))


def _card_number_in(settings: Settings, text: str, now: datetime) -> str | None:
    """The card a correctly signed payload names, static or live (a live one of any step)."""
    payload = qr_payload.extract(text)
    if payload is None:
        return None
    secret = settings.telegram.secret_key.get_secret_value()
    try:
        return qr_payload.read(secret, payload, now, settings.miniapp.qr_rotate_sec).number
    except qr_payload.ExpiredPayload as exc:
        return exc.number
    except qr_payload.InvalidPayload:
        return None


async def stale_button(cq: CallbackQuery) -> None:
    await cq.answer(_("This button is no longer valid."), show_alert=True)
