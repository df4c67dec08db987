"""The customer wallet: /start, consent, binding a card (or a digital one), the QR card in chat,
/card, /history, /offers, /store, /language and the optional profile (phone, birthday).

Staff and owners use it as customers too; their deep links are answered earlier by the till
router. A card deep link opened by anyone else reveals nothing about the card.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject, CommandStart, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.i18n import LocaleMiddleware
from config import LANGUAGES, Settings
from handlers import formatting
from handlers.errors import renders
from handlers.filters import Match
from handlers.photos import IMAGE, qr_texts
from handlers.roles import Role, StaffDirectory
from services import qr_payload
from services.card_image import CardArt, art_key, render_png
from services.cards import group_number
from services.qr_decode import ImageRejected, QrReader
from services.wallet import (
    NO_YEAR,
    AlreadyHasCard,
    BindRateLimited,
    BindResult,
    CardBindLocked,
    CardBoundElsewhere,
    CardView,
    ConsentRequired,
    DigitalCardsUnavailable,
    HistoryPage,
    InvalidBirthday,
    InvalidPhone,
    NoActiveCard,
    OfferView,
    PinRequired,
    ReplacementNeedsConfirmation,
    TelegramProfile,
    WalletService,
    WrongPin,
)

log = logging.getLogger(__name__)

LANGUAGE_NAMES = {"ru": "🇷🇺 Русский", "en": "🇬🇧 English", "et": "🇪🇪 Eesti"}


class WalletCb(CallbackData, prefix="w"):
    action: str  # agree | digital | other | replace | keep | hist | lang
    value: str = ""
    page: int = 0


class Wallet(StatesGroup):
    number = State()
    pin = State()
    confirm_replace = State()
    phone = State()
    birthday = State()


# --------------------------------------------------------------------------- refusals


@renders(ConsentRequired)
def _consent_required(exc: Exception, settings: Settings) -> str:
    return _("First send /start to join the loyalty program of {store}.").format(
        store=html.escape(settings.store.name)
    )


@renders(NoActiveCard)
def _no_card(exc: Exception, settings: Settings) -> str:
    return _("You have no card yet. Send /start to add your card or get a digital one.")


@renders(CardBoundElsewhere)
def _bound_elsewhere(exc: Exception, settings: Settings) -> str:
    return _(
        "This card is already linked to another Telegram account. "
        "If it is your card, please contact the store."
    )


@renders(PinRequired)
def _pin_required(exc: Exception, settings: Settings) -> str:
    return _("This card is protected by a PIN. Send the card number again, then its PIN.")


@renders(WrongPin)
def _wrong_pin(exc: Exception, settings: Settings) -> str:
    return _("The PIN does not match. Check the back of the card and send the PIN again.")


@renders(CardBindLocked)
def _bind_locked(exc: Exception, settings: Settings) -> str:
    return _(
        "This card cannot be linked right now because of too many failed attempts. "
        "Please contact the store."
    )


@renders(BindRateLimited)
def _rate_limited(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, BindRateLimited)
    return _("Too many unsuccessful attempts. Please try again after {time}.").format(
        time=formatting.when(exc.retry_at, settings)
    )


@renders(AlreadyHasCard)
def _already_has_card(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, AlreadyHasCard)
    return _("You already have card {number}. Send /card to see it.").format(
        number=group_number(exc.number)
    )


@renders(DigitalCardsUnavailable)
def _no_digital(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, DigitalCardsUnavailable)
    if exc.reason == "exhausted":
        return _("No digital cards are left right now. Please ask for a printed card in the store.")
    return _("Digital cards are not available. Please get a printed card in the store.")


@renders(InvalidBirthday)
def _bad_birthday(exc: Exception, settings: Settings) -> str:
    return _("Please send the date as DD.MM.YYYY (for example 31.12.1990) or just DD.MM.")


@renders(InvalidPhone)
def _bad_phone(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, InvalidPhone)
    if exc.reason == "not_own":
        return _("Please share your own number with the button below.")
    return _("That does not look like a phone number.")


@renders(ReplacementNeedsConfirmation)
def _needs_confirmation(exc: Exception, settings: Settings) -> str:
    return _("You already have a card. Send /start to link another one.")


# --------------------------------------------------------------------------- keyboards


def _languages_row() -> list[InlineKeyboardButton]:
    return [
        InlineKeyboardButton(text=name, callback_data=WalletCb(action="lang", value=code).pack())
        for code, name in LANGUAGE_NAMES.items()
    ]


def _consent_keyboard() -> InlineKeyboardMarkup:
    agree = InlineKeyboardButton(
        text=_("✅ I agree"), callback_data=WalletCb(action="agree").pack()
    )
    return InlineKeyboardMarkup(inline_keyboard=[[agree], _languages_row()])


def _number_keyboard(settings: Settings) -> InlineKeyboardMarkup | None:
    if not settings.cards.digital:
        return None
    button = InlineKeyboardButton(
        text=_("📱 I have no card"), callback_data=WalletCb(action="digital").pack()
    )
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


def _skip_labels(i18n: I18n) -> set[str]:
    return {i18n.gettext("Skip", locale=code).casefold() for code in LANGUAGES} | {"/skip"}


def _phone_keyboard() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[
            [KeyboardButton(text=_("📞 Share my phone number"), request_contact=True)],
            [KeyboardButton(text=_("Skip"))],
        ],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


def _skip_keyboard() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=_("Skip"))]], resize_keyboard=True, one_time_keyboard=True
    )


# --------------------------------------------------------------------------- rendering


def _segment_label(view: CardView) -> str:
    labels = []
    if view.segment == "b2b":
        labels.append(_("Business"))
    if view.kind == "digital":
        labels.append(_("Digital card"))
    return " · ".join(labels)


def card_caption(view: CardView, settings: Settings) -> str:
    lines = [
        _("<b>{store}</b> loyalty card {number}").format(
            store=html.escape(settings.store.name), number=group_number(view.number)
        ),
    ]
    if view.segment == "b2b":
        lines.append(_("Business client card."))
    lines.append(
        _(
            "Your discount: <b>{pct}</b> off every purchase. "
            "Show this QR code at the till before paying."
        ).format(pct=formatting.pct(view.tier_pct))
    )
    if view.next_tier is not None:
        lines.append(
            _("Spend {amount} more to reach {pct}.").format(
                amount=formatting.money(view.next_tier.remaining, settings),
                pct=formatting.pct(view.next_tier.pct),
            )
        )
    elif view.cumulative_tiers_on:
        lines.append(_("You have reached our highest discount level."))
    lines.append(
        _("Saved so far: {amount}").format(amount=formatting.money(view.total_saved, settings))
    )
    return "\n".join(lines)


async def send_card(
    bot: Bot, chat_id: int, view: CardView, wallet: WalletService, settings: Settings
) -> None:
    """The card image, uploaded once per version and re-sent by file_id afterwards."""
    me = await bot.me()
    payload = qr_payload.sign(settings.telegram.secret_key.get_secret_value(), view.number)
    art = CardArt(
        store_name=settings.store.name,
        number=view.number,
        tier_pct=view.tier_pct,
        segment_label=_segment_label(view),
        link=qr_payload.deep_link(me.username or "", payload),
        caption=_("discount"),
    )
    key = art_key(art)
    caption = card_caption(view, settings)
    other = InlineKeyboardButton(
        text=_("🔄 Link another card"), callback_data=WalletCb(action="other").pack()
    )
    keyboard = InlineKeyboardMarkup(inline_keyboard=[[other]])
    if view.image_file_id and view.image_key == key:
        try:
            await bot.send_photo(
                chat_id, view.image_file_id, caption=caption, reply_markup=keyboard
            )
            return
        except TelegramBadRequest as exc:  # the file expired on Telegram's side: upload again
            log.info("stored card image of card %s refused (%s); re-uploading", view.card_id, exc)
    png = await asyncio.to_thread(render_png, art)
    sent = await bot.send_photo(
        chat_id,
        BufferedInputFile(png, filename=f"card-{view.number}.png"),
        caption=caption,
        reply_markup=keyboard,
    )
    if sent.photo:
        await wallet.remember_image(view.card_id, key, sent.photo[-1].file_id)


async def _ask_number(bot: Bot, chat_id: int, state: FSMContext, settings: Settings) -> None:
    await state.set_state(Wallet.number)
    lines = [_("Send the number printed on your card, for example <code>100 045</code>.")]
    if settings.cards.digital:
        lines.append(_("No card yet? Tap “I have no card” and we will make a digital one."))
    await bot.send_message(chat_id, "\n".join(lines), reply_markup=_number_keyboard(settings))


async def _after_binding(
    bot: Bot,
    chat_id: int,
    result: BindResult,
    state: FSMContext,
    wallet: WalletService,
    settings: Settings,
) -> None:
    await state.clear()
    if result.replaced_number:
        await bot.send_message(
            chat_id,
            _(
                "Card {old} is now blocked and replaced by card {new}. "
                "Your purchases and discount level carry over."
            ).format(old=group_number(result.replaced_number), new=group_number(result.number)),
            reply_markup=ReplyKeyboardRemove(),
        )
    elif result.already_bound:
        await bot.send_message(chat_id, _("This card is already yours."))
    else:
        await bot.send_message(
            chat_id,
            _("Done! Card {number} is now yours.").format(number=group_number(result.number)),
        )
    client = await wallet.require_client(chat_id)
    await send_card(bot, chat_id, await wallet.card_view(client), wallet, settings)
    if result.welcome is not None:
        await bot.send_message(chat_id, _welcome_text(result.welcome, settings))
    if client.phone is None or client.birthday is None:
        await _ask_profile(bot, chat_id, state, phone=client.phone is None)


def _welcome_text(offer: OfferView, settings: Settings) -> str:
    return _(
        "🎁 A welcome gift: <b>+{pct}</b> off your first purchase, until {until}. "
        "The till applies it by itself when you show your card."
    ).format(pct=formatting.pct(offer.bonus_pct), until=formatting.day(offer.valid_until, settings))


async def _ask_profile(bot: Bot, chat_id: int, state: FSMContext, *, phone: bool) -> None:
    if phone:
        await state.set_state(Wallet.phone)
        await bot.send_message(
            chat_id,
            _(
                "Optional: share your phone number so that the store can find your card "
                "if you lose access to Telegram. We never use it for advertising calls. "
                "Tap the button below, or “Skip”."
            ),
            reply_markup=_phone_keyboard(),
        )
        return
    await state.set_state(Wallet.birthday)
    await bot.send_message(
        chat_id,
        _(
            "Optional: when is your birthday? We send a birthday gift: an extra discount. "
            "Send the date as DD.MM.YYYY or just DD.MM, or tap “Skip”."
        ),
        reply_markup=_skip_keyboard(),
    )


async def _finish_profile(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(
        _("All set! Show /card at the till to get your discount."),
        reply_markup=ReplyKeyboardRemove(),
    )


def _history_text(page: HistoryPage, view: CardView | None, settings: Settings) -> str:
    if not page.items:
        return _("No purchases yet. Show /card at the till and your savings will appear here.")
    lines = [
        _("<b>Your purchases</b> (page {page} of {pages})").format(
            page=page.page + 1, pages=page.pages
        )
    ]
    for item in page.items:
        line = _("{when}: {amount}, discount {pct} = {saved}, paid {paid}").format(
            when=formatting.when(item.at, settings),
            amount=formatting.money(item.amount, settings),
            pct=formatting.pct(item.discount_pct),
            saved=formatting.money(item.discount_amount, settings),
            paid=formatting.money(item.paid_amount, settings),
        )
        if item.voided:
            line = "<s>{}</s> {}".format(line, _("(cancelled)"))
        lines.append("• " + line)
    if view is not None:
        lines.append("")
        lines.append(
            _("Saved in total: {amount}").format(
                amount=formatting.money(view.total_saved, settings)
            )
        )
    return "\n".join(lines)


def _history_keyboard(page: HistoryPage) -> InlineKeyboardMarkup | None:
    buttons = []
    if page.page > 0:
        buttons.append(
            InlineKeyboardButton(
                text=_("◀ Newer"), callback_data=WalletCb(action="hist", page=page.page - 1).pack()
            )
        )
    if page.page + 1 < page.pages:
        buttons.append(
            InlineKeyboardButton(
                text=_("Older ▶"), callback_data=WalletCb(action="hist", page=page.page + 1).pack()
            )
        )
    return InlineKeyboardMarkup(inline_keyboard=[buttons]) if buttons else None


def _offer_kind(kind: str) -> str:
    return {
        "winback": _("we miss you"),
        "birthday": _("birthday gift"),
        "welcome": _("welcome gift"),
    }.get(kind, kind)


async def _drop_buttons(cq: CallbackQuery) -> None:
    """Take the buttons off a message once they were used (a double tap finds none)."""
    if cq.message is not None and hasattr(cq.message, "edit_reply_markup"):
        with contextlib.suppress(TelegramBadRequest):  # already edited
            await cq.message.edit_reply_markup(reply_markup=None)


# --------------------------------------------------------------------------- /start, consent


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


# --------------------------------------------------------------------------- commands


async def show_card(message: Message, wallet: WalletService, settings: Settings, bot: Bot) -> None:
    assert message.from_user is not None
    view = await wallet.card_view(message.from_user.id)
    await send_card(bot, message.chat.id, view, wallet, settings)


async def history(message: Message, wallet: WalletService, settings: Settings) -> None:
    assert message.from_user is not None
    page = await wallet.history(message.from_user.id, 0)
    view = await _optional_view(wallet, message.from_user.id)
    await message.answer(_history_text(page, view, settings), reply_markup=_history_keyboard(page))


async def _optional_view(wallet: WalletService, tg_id: int) -> CardView | None:
    try:
        return await wallet.card_view(tg_id)
    except NoActiveCard:
        return None


async def history_page(
    cq: CallbackQuery, callback_data: WalletCb, wallet: WalletService, settings: Settings
) -> None:
    page = await wallet.history(cq.from_user.id, callback_data.page)
    view = await _optional_view(wallet, cq.from_user.id)
    if cq.message is not None and hasattr(cq.message, "edit_text"):
        with contextlib.suppress(TelegramBadRequest):  # not modified: same page twice
            await cq.message.edit_text(
                _history_text(page, view, settings), reply_markup=_history_keyboard(page)
            )
    await cq.answer()


async def offers(message: Message, wallet: WalletService, settings: Settings) -> None:
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
    await message.answer("\n".join(lines))


async def store(message: Message, settings: Settings) -> None:
    lines = [f"<b>{html.escape(settings.store.name)}</b>"]
    if settings.store.address:
        lines.append(_("📍 Address: {address}").format(address=html.escape(settings.store.address)))
    if settings.store.hours:
        lines.append(_("🕒 Opening hours: {hours}").format(hours=html.escape(settings.store.hours)))
    if settings.store.phone:
        lines.append(_("📞 Phone: {phone}").format(phone=html.escape(settings.store.phone)))
    await message.answer("\n".join(lines))
    if settings.store.latitude is not None and settings.store.longitude is not None:
        await message.answer_venue(
            latitude=settings.store.latitude,
            longitude=settings.store.longitude,
            title=settings.store.name,
            address=settings.store.address or settings.store.name,
        )


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


# --------------------------------------------------------------------------- binding


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
    await state.clear()
    await bot.send_message(
        cq.from_user.id,
        _("Here is your digital card {number}.").format(number=group_number(result.number)),
    )
    client = await wallet.require_client(cq.from_user.id)
    await send_card(bot, cq.from_user.id, await wallet.card_view(client), wallet, settings)
    if result.welcome is not None:
        await bot.send_message(cq.from_user.id, _welcome_text(result.welcome, settings))
    await _ask_profile(bot, cq.from_user.id, state, phone=client.phone is None)


# --------------------------------------------------------------------------- profile


async def got_phone(message: Message, state: FSMContext, wallet: WalletService, bot: Bot) -> None:
    assert message.contact is not None and message.from_user is not None
    await wallet.set_phone(
        message.from_user.id,
        message.contact.phone_number,
        contact_user_id=message.contact.user_id,
    )
    await message.answer(_("Thank you, your phone number is saved."))
    client = await wallet.require_client(message.from_user.id)
    if client.birthday is None:
        await _ask_profile(bot, message.chat.id, state, phone=False)
    else:
        await _finish_profile(message, state)


async def phone_other(message: Message, state: FSMContext, bot: Bot, i18n: I18n) -> None:
    if (message.text or "").strip().casefold() in _skip_labels(i18n):
        await _ask_profile(bot, message.chat.id, state, phone=False)
        return
    await message.answer(
        _("Tap “📞 Share my phone number” below, or “Skip”."), reply_markup=_phone_keyboard()
    )


async def got_birthday(
    message: Message, state: FSMContext, wallet: WalletService, settings: Settings, i18n: I18n
) -> None:
    assert message.from_user is not None
    if (message.text or "").strip().casefold() in _skip_labels(i18n):
        await _finish_profile(message, state)
        return
    birthday = await wallet.set_birthday(message.from_user.id, message.text or "")
    await message.answer(
        _("Thank you! Birthday saved: {date}.").format(
            date=formatting.day(birthday, settings)
            if birthday.year != NO_YEAR
            else f"{birthday:%d.%m}"
        )
    )
    await _finish_profile(message, state)


async def birthday_hint(message: Message) -> None:
    await message.answer(
        _("Please send your birthday as DD.MM.YYYY or DD.MM, or tap “Skip”."),
        reply_markup=_skip_keyboard(),
    )


# --------------------------------------------------------------------------- outside any step


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
    message: Message, bot: Bot, qr_reader: QrReader, wallet: WalletService, settings: Settings
) -> None:
    """A customer's photo: usually of a card's QR (their own, or one they were given)."""
    assert message.from_user is not None
    try:
        texts = await qr_texts(message, bot, qr_reader)
    except ImageRejected:
        texts = []
    secret = settings.telegram.secret_key.get_secret_value()
    number = next((n for t in texts if (n := _card_number_in(secret, t)) is not None), None)
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


def _card_number_in(secret: str, text: str) -> str | None:
    payload = qr_payload.extract(text)
    if payload is None:
        return None
    try:
        return qr_payload.verify(secret, payload)
    except qr_payload.InvalidPayload:
        return None


async def stale_button(cq: CallbackQuery) -> None:
    await cq.answer(_("This button is no longer valid."), show_alert=True)


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
    router.message.register(number_outside_a_step, Match(F.text.regexp(r"\s*\d[\d \-]{3,30}\s*")))
    router.message.register(photo, IMAGE)
    router.callback_query.register(stale_button, WalletCb.filter())
    return router
