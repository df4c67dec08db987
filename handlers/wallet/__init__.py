"""The customer wallet: /start, consent, binding a card (or a digital one), the QR card in chat,
/card, /history, /offers, /store (a chain's branches, nearest first once the customer shares
a location), /language and the optional profile (phone, birthday).

Staff and owners use it as customers too; their deep links are answered earlier by the till
router. A card deep link opened by anyone else reveals nothing about the card.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandStart, StateFilter

from handlers.filters import InChain, Match
from handlers.photos import IMAGE
from handlers.wallet import refusals  # noqa: F401 - registers the refusals' texts
from handlers.wallet.base import Wallet, WalletCb
from handlers.wallet.binding import (
    confirm_hint,
    confirm_replace,
    digital,
    got_number,
    got_pin,
    link_other,
    number_hint,
    pin_hint,
)
from handlers.wallet.commands import (
    history,
    history_page,
    language,
    offers,
    set_language,
    show_card,
)
from handlers.wallet.joining import agree, join, start
from handlers.wallet.outside import number_outside_a_step, photo, stale_button
from handlers.wallet.profile import birthday_hint, got_birthday, got_phone, phone_other
from handlers.wallet.shops import shared_location, store


def setup() -> Router:
    """This feature's router, built anew for each dispatcher (handlers in routing order)."""
    router = Router(name=__name__)
    router.message.filter(Match(F.chat.type == "private"))
    # Wallet buttons live in the customer's private chat; pressed (or forged) in a group they
    # change nothing and post nothing there (the catch-all only stops the spinner).
    router.callback_query.filter(Match(F.message.chat.type == "private"))
    router.message.register(start, CommandStart(), StateFilter("*"))
    router.callback_query.register(join, WalletCb.filter(F.action == "join"))
    router.callback_query.register(agree, WalletCb.filter(F.action == "agree"))
    router.message.register(show_card, Command("card"))
    router.message.register(history, Command("history"))
    router.callback_query.register(history_page, WalletCb.filter(F.action == "hist"))
    router.message.register(offers, Command("offers"))
    router.message.register(store, Command("store"))
    router.message.register(language, Command("language"))
    router.callback_query.register(set_language, WalletCb.filter(F.action == "lang"))
    router.callback_query.register(link_other, WalletCb.filter(F.action == "other"))
    router.message.register(got_number, StateFilter(Wallet.number), Match(F.text))
    router.message.register(number_hint, StateFilter(Wallet.number))
    router.message.register(got_pin, StateFilter(Wallet.pin), Match(F.text))
    router.message.register(pin_hint, StateFilter(Wallet.pin))
    router.callback_query.register(
        confirm_replace, WalletCb.filter(F.action.in_({"replace", "keep"}))
    )
    router.message.register(confirm_hint, StateFilter(Wallet.confirm_replace))
    router.callback_query.register(digital, WalletCb.filter(F.action == "digital"))
    router.message.register(got_phone, StateFilter(Wallet.phone), Match(F.contact))
    router.message.register(phone_other, StateFilter(Wallet.phone))
    router.message.register(got_birthday, StateFilter(Wallet.birthday), Match(F.text))
    router.message.register(birthday_hint, StateFilter(Wallet.birthday))
    # A location outside any step: the /store button's answer (a chain's branches by distance).
    router.message.register(shared_location, StateFilter(None), Match(F.location), InChain())
    router.message.register(number_outside_a_step, Match(F.text.regexp(r"\s*\d[\d \-]{3,30}\s*")))
    router.message.register(photo, IMAGE)
    router.callback_query.register(stale_button, WalletCb.filter())
    return router
