"""What the cashier sees: the card, the quote, the receipt, the staff-log line, the keyboards."""

from __future__ import annotations

import html
from typing import Any

from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
)
from aiogram.utils.i18n import gettext as _

from config import Settings
from db.models import CardKind, CardStatus, OfferKind
from handlers import formatting
from handlers.till.base import PROMPT, TillCb
from services.cards import group_number
from services.sales import (
    Confirmation,
    DraftView,
    TillCard,
    VoidResult,
)


def _pct_or_dash(value: int) -> str:
    return formatting.pct(value) if value else "—"


def _offer_kind(kind: str | None) -> str:
    names = {
        OfferKind.WINBACK: _("we miss you"),
        OfferKind.BIRTHDAY: _("birthday"),
        OfferKind.WELCOME: _("welcome"),
        OfferKind.REFERRAL: _("invite"),
        OfferKind.CAMPAIGN: _("campaign"),
    }
    return names.get(kind, kind or "")  # type: ignore[call-overload]


def _shop_line(shop: str | None) -> list[str]:
    """The shop a sale is for, named in a private chat of a chain only (None: not named)."""
    return [] if shop is None else [_("🏪 Shop: {shop}").format(shop=html.escape(shop))]


def render_card(card: TillCard, settings: Settings, shop: str | None = None) -> str:
    kind = _("digital") if card.kind == CardKind.DIGITAL else _("printed")
    lines = [
        _("💳 Card <b>{number}</b> · {pct} · {segment} · {kind}").format(
            number=group_number(card.number),
            pct=formatting.pct(card.base_pct),
            segment=card.segment.upper(),
            kind=kind,
        )
    ]
    if card.status == CardStatus.IN_STOCK:
        lines.append(_("New card: not issued yet."))
    if card.client_id is not None:
        lines.append(_("Client: {name}").format(name=html.escape(card.client_name or "—")))
    else:
        lines.append(_("Not bound to a Telegram account."))
    if card.visits:
        lines.append(
            _("Visits: {count}, last {when}").format(
                count=formatting.number(card.visits),
                when=formatting.when(card.last_visit, settings),
            )
            if card.last_visit
            else _("Visits: {count}").format(count=formatting.number(card.visits))
        )
        lines.append(
            _("Total spend: {amount}").format(amount=formatting.money(card.spend, settings))
        )
    else:
        lines.append(_("No purchases yet."))
    if card.tier_pct > card.base_pct:
        lines.append(_("Tier by total spend: {pct}").format(pct=formatting.pct(card.tier_pct)))
    for offer in card.offers:
        lines.append(
            _("🎁 Offer: +{pct} ({kind}) until {day}").format(
                pct=formatting.pct(offer.bonus_pct),
                kind=_offer_kind(offer.kind),
                day=formatting.day(offer.valid_until, settings),
            )
        )
    lines += _shop_line(shop)
    lines += ["", str(PROMPT)]
    return "\n".join(lines)


def render_quote(draft: DraftView, settings: Settings, shop: str | None = None) -> str:
    money = formatting.money
    lines = [
        _("🧾 Card <b>{number}</b>").format(number=group_number(draft.card_number)),
        _("Amount: {amount}").format(amount=money(draft.amount, settings)),
        _("Printed card: {pct}").format(pct=formatting.pct(draft.base_pct)),
    ]
    if settings.pricing.amount_tiers:
        lines.append(
            _("Tier by purchase amount: {pct}").format(pct=_pct_or_dash(draft.amount_tier_pct))
        )
    if settings.pricing.cumulative_tiers:
        lines.append(
            _("Tier by total spend: {pct}").format(pct=_pct_or_dash(draft.cumulative_tier_pct))
        )
    if draft.offer_pct:
        lines.append(
            _("Personal offer ({kind}): +{pct}").format(
                kind=_offer_kind(draft.offer_kind), pct=formatting.pct(draft.offer_pct)
            )
        )
    if draft.promo_pct:
        lines.append(
            _("Happy hour ({name}): +{pct}").format(
                name=html.escape(draft.promo_name or ""), pct=formatting.pct(draft.promo_pct)
            )
        )
    if draft.capped:
        lines.append(
            _("Capped at the maximum of {pct}").format(
                pct=formatting.pct(settings.pricing.discount_max_pct)
            )
        )
    lines += [
        _("<b>Discount: {pct} = {amount}</b>").format(
            pct=formatting.pct(draft.discount_pct), amount=money(draft.discount_amount, settings)
        ),
        _("<b>To pay: {amount}</b>").format(amount=money(draft.paid_amount, settings)),
    ]
    if draft.hand_out_pct is not None:
        lines.append(
            _("🎁 New customer: hand out a printed {pct} card.").format(
                pct=formatting.pct(draft.hand_out_pct)
            )
        )
    lines += _shop_line(shop)
    lines.append(
        _("The quote is valid for {minutes} min.").format(minutes=settings.pricing.draft_ttl_min)
    )
    return "\n".join(lines)


def quote_keyboard(draft_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("✅ Confirm"), callback_data=TillCb(action="ok", ref=draft_id).pack()
                ),
                InlineKeyboardButton(
                    text=_("❌ Cancel"), callback_data=TillCb(action="no", ref=draft_id).pack()
                ),
            ]
        ]
    )


def void_keyboard(purchase_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("↩️ Void"),
                    callback_data=TillCb(action="void", ref=str(purchase_id)).pack(),
                )
            ]
        ]
    )


def sale_line(
    number: str,
    amount: int,
    settings: Settings,
    *,
    pct: int | None = None,
    discount: int = 0,
    paid: int = 0,
) -> str:
    """A sale in one line, as the receipt and the staff log show it; without `pct` only the
    card and the amount (a void)."""
    money = formatting.money
    if pct is None:
        return _("Card {number} · {amount}").format(
            number=group_number(number), amount=money(amount, settings)
        )
    return _("Card {number} · {amount} − {pct} ({discount}) = {paid}").format(
        number=group_number(number),
        amount=money(amount, settings),
        pct=formatting.pct(pct),
        discount=money(discount, settings),
        paid=money(paid, settings),
    )


def _sale_line(done: Confirmation | VoidResult, pct: int | None, settings: Settings) -> str:
    return sale_line(
        done.card_number,
        done.amount,
        settings,
        pct=pct,
        discount=done.discount_amount,
        paid=done.paid_amount,
    )


def render_receipt(done: Confirmation, settings: Settings, shop: str | None = None) -> str:
    lines = [
        _("✅ Purchase #{id} recorded").format(id=done.purchase_id),
        _sale_line(done, done.discount_pct, settings),
    ]
    if done.card_issued_now:
        lines.append(_("The card is now issued."))
    lines += _shop_line(shop)
    return "\n".join(lines)


def render_voided(result: VoidResult | Confirmation, settings: Settings) -> str:
    return "\n".join(
        [
            _("↩️ Purchase #{id} voided").format(id=result.purchase_id),
            _sale_line(result, None, settings),
        ]
    )


def _who(user: Any) -> str:
    """The cashier as the staff log names them (escaped when it is shown)."""
    return getattr(user, "full_name", None) or str(getattr(user, "id", "?"))
