"""What the customer sees: the card and its caption, history pages, offers, the profile prompts."""

from __future__ import annotations

import asyncio
import contextlib
import html

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardRemove,
    WebAppInfo,
)
from aiogram.utils.i18n import gettext as _

from config import Settings
from handlers import formatting
from handlers.referrals import after_joining, card_share_button
from handlers.wallet.base import Wallet, WalletCb, log
from handlers.wallet.keyboards import _number_keyboard, _phone_keyboard, _skip_keyboard
from services import qr_payload
from services.card_image import CardArt, art_key, render_png
from services.cards import group_number
from services.wallet import (
    BindResult,
    CardView,
    HistoryPage,
    OfferView,
    WalletService,
)


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
    rows = [[await card_share_button(bot, view.client_id, wallet)], [other]]
    if settings.miniapp.url is not None:  # the Mini App's live card, whose QR keeps changing
        live = WebAppInfo(url=settings.miniapp.url + "?view=card")
        rows.insert(0, [InlineKeyboardButton(text=_("📱 Open live card"), web_app=live)])
    keyboard = InlineKeyboardMarkup(inline_keyboard=rows)
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
    conversation = await state.get_data()  # an invite link opened before joining, if any
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
    await after_joining(bot, chat_id, conversation, wallet)
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


def _history_text(
    page: HistoryPage,
    view: CardView | None,
    settings: Settings,
    shops: dict[int, str] | None = None,
) -> str:
    """A page of purchases; in a chain (`shops`: branch id → name) each says where it was
    made."""
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
        if shops is not None and item.branch_id in shops:
            line += " · 📍 " + html.escape(shops[item.branch_id])
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
        "referral": _("invite bonus"),
        "campaign": _("special offer"),
    }.get(kind, kind)


async def _drop_buttons(cq: CallbackQuery) -> None:
    """Take the buttons off a message once they were used (a double tap finds none)."""
    if cq.message is not None and hasattr(cq.message, "edit_reply_markup"):
        with contextlib.suppress(TelegramBadRequest):  # already edited
            await cq.message.edit_reply_markup(reply_markup=None)
