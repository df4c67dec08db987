"""How each kind of proactive message reads: the renderers the delivery service calls.

An outbox row holds facts (its kind, ids and numbers: `services.delivery`); the renderer of its
kind turns them into the message when it is sent. `create_renderer(i18n, default_language)`
returns the `services.delivery.Renderer` the bot injects into the sender. Each renderer runs
in the recipient's language (the client's stored language, else the store default), reads the
database only through units of work (`db.read`), builds buttons as plain data
(`services.delivery.Button`), and returns `None` when the message is no longer wanted (a
survey answered in the meantime, an offer already used).
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from config import LANGUAGES, Settings
from db.database import Database
from db.models import OfferKind
from handlers import formatting
from handlers import referrals as referral_messages
from handlers.campaigns import campaign_message
from handlers.motivation import question_keyboard
from handlers.surveys import MarketingCb, NpsCb
from handlers.till import sale_line
from services import campaigns, motivation, offers, referrals, sales, surveys, wallet
from services.cards import group_number
from services.delivery import Button, Outgoing, Rendered, Renderer
from services.jobs import DIGEST_BRANCHES_KIND, DIGEST_CHART_KIND, DIGEST_KIND

KindRenderer = Callable[[Database, Outgoing, Settings, datetime], Awaitable[Rendered | None]]
RENDERERS: dict[str, KindRenderer] = {}

# A note to a card's holder after an owner's /block, /unblock or /unbind: the card's number
# and what happened to it (`change`: blocked | unblocked | unbound).
CARD_NOTE_KIND = "card_note"


def renders(kind: str) -> Callable[[KindRenderer], KindRenderer]:
    def register(func: KindRenderer) -> KindRenderer:
        RENDERERS[kind] = func
        return func

    return register


def nps_keyboard(survey_id: int) -> tuple[tuple[Button, ...], ...]:
    buttons = tuple(
        Button(str(score), NpsCb(action="s", survey=survey_id, score=score).pack())
        for score in range(11)
    )
    return (buttons[:6], buttons[6:])


def opt_out_keyboard() -> tuple[tuple[Button, ...], ...]:
    return ((Button(_("🔕 No more offers"), MarketingCb(action="out").pack()),),)


@renders(surveys.SURVEY_KIND)
async def _survey(
    db: Database, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    survey = await db.read(surveys.view, settings, int(item.payload["survey_id"]), now)
    if survey is None or not survey.open:
        return None
    text = _(
        "Thank you for shopping at {store}!\n\n"
        "How likely are you to recommend us to a friend? "
        "Tap a number: 0 = not at all, 10 = definitely."
    ).format(store=html.escape(settings.store.name))
    return Rendered(text, nps_keyboard(survey.id))


@renders(motivation.MOTIVATION_KIND)
async def _motivation(
    db: Database, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    """Why the member takes part: four buttons (`handlers.motivation`); dropped once
    answered (a forged press before it went out) or when the member's row is gone."""
    if item.client_id is None:
        return None
    question = await db.read(motivation.view, item.client_id)
    if question is None or question.answered:
        return None
    text = _(
        "Thank you for being a regular at {store}! One quick question: what keeps you in our "
        "loyalty program?"
    ).format(store=html.escape(settings.store.name))
    return Rendered(text, question_keyboard())


@renders(surveys.DETRACTOR_KIND)
async def _detractor(
    db: Database, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    survey = await db.read(surveys.view, settings, int(item.payload["survey_id"]), now)
    if survey is None or survey.score is None:
        return None
    name = html.escape(survey.client_name or _("client"))
    client = (
        f'<a href="tg://user?id={survey.client_tg_id}">{name}</a>'
        if survey.client_tg_id
        else _("(data erased)")
    )
    comment = html.escape(survey.comment) if survey.comment else _("<i>no comment</i>")
    text = _(
        "⚠️ <b>Unhappy customer</b>: rated us {score} of 10.\nComment: {comment}\nClient: {client}"
    ).format(score=survey.score, comment=comment, client=client)
    return Rendered(text)


@renders(offers.OFFER_KIND)
async def _offer(
    db: Database, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    offer = await db.read(offers.view, int(item.payload["offer_id"]), now)
    if offer is None or not offer.usable:
        return None
    until = formatting.day(offer.valid_until, settings)
    store = html.escape(settings.store.name)
    if offer.kind == OfferKind.BIRTHDAY:
        name = html.escape(offer.first_name or "")
        text = _(
            "🎂 Happy birthday{name}! {store} has a gift for you: <b>+{pct}</b> off your next "
            "purchase, valid until {until}. Just show your card at the till."
        ).format(
            name=f", {name}" if name else "",
            store=store,
            pct=formatting.pct(offer.bonus_pct),
            until=until,
        )
    else:
        text = _(
            "We miss you at {store}! Here is <b>+{pct}</b> off your next purchase, valid until "
            "{until}. Just show your card at the till — the discount applies automatically."
        ).format(store=store, pct=formatting.pct(offer.bonus_pct), until=until)
    return await _naming_usual_shop(db, item, settings, Rendered(text, opt_out_keyboard()))


async def _naming_usual_shop(
    db: Database, item: Outgoing, settings: Settings, rendered: Rendered | None
) -> Rendered | None:
    """An offer's message in a chain of shops names the recipient's usual branch (the one they
    buy in most), read when it is sent; outside a chain it is left as it is."""
    if rendered is None or item.client_id is None:
        return rendered
    shop = await db.read(offers.usual_branch, settings, item.client_id)
    if shop is None:
        return rendered
    usual = _("(usual shop: {name})").format(name=html.escape(shop))
    return replace(rendered, text=f"{rendered.text} {usual}")


@renders(wallet.BIND_LOCK_ALERT)
async def _bind_lock_alert(
    db: Database, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    number = str(item.payload["number"])
    failures = int(item.payload["failures"])
    text = ngettext(
        "⚠️ Linking of card {number} is locked after {failures} failed attempt "
        "(someone may be guessing). See /card {plain}.",
        "⚠️ Linking of card {number} is locked after {failures} failed attempts "
        "(someone may be guessing). See /card {plain}.",
        failures,
    ).format(number=group_number(number), failures=formatting.number(failures), plain=number)
    return Rendered(text)


@renders(DIGEST_KIND)
async def _digest(
    db: Database, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    """The weekly digest's text (an owner's, or a branch manager's: `branch_id` in the
    payload); its charts are rows of their own (`DIGEST_CHART_KIND`, `DIGEST_BRANCHES_KIND`)."""
    from handlers import owner_reports  # the KPI feature's renderer

    return await owner_reports.scheduled_digest(db, item, settings, now)


@renders(DIGEST_CHART_KIND)
async def _digest_chart(
    db: Database, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    from handlers import owner_reports

    return await owner_reports.scheduled_chart(db, item, settings, now)


@renders(DIGEST_BRANCHES_KIND)
async def _digest_branches(
    db: Database, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    from handlers import owner_reports

    return await owner_reports.scheduled_branch_chart(db, item, settings, now)


@renders(referrals.REWARD_KIND)
async def _referral_reward(
    db: Database, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    """A friend's first purchase: the friend's or the ambassador's reward (handlers.referrals)."""
    rendered = await referral_messages.reward_message(db, item, settings, now)
    if item.payload.get("side") == referrals.CAPPED:  # no reward, no offer to use anywhere
        return rendered
    return await _naming_usual_shop(db, item, settings, rendered)


@renders(campaigns.CAMPAIGN_KIND)
async def _campaign(
    db: Database, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    """The owner's campaign (`handlers.campaigns`): their text in the client's language (else
    the common one) and the offer's line; dropped once the offer is used or gone."""
    campaign_id, offer_id = int(item.payload["campaign_id"]), int(item.payload["offer_id"])
    facts = await db.read(campaigns.message_facts, campaign_id, offer_id, now)
    if facts is None:
        return None
    texts, offer = facts
    language = formatting.current_locale()  # the recipient's, as `create_renderer` set it
    text = campaign_message(texts, language, offer.bonus_pct, offer.valid_until, settings)
    return await _naming_usual_shop(db, item, settings, Rendered(text, opt_out_keyboard()))


# ------------------------------------------------------------------------------ the till


@renders(sales.RECEIPT_KIND)
async def _receipt(db: Database, item: Outgoing, settings: Settings, now: datetime) -> Rendered:
    """The customer's note about a purchase (this purchase's discount, whatever gave it: the
    printed card, the amount, a personal offer; with cumulative tiers where their card
    stands) or about its void."""
    facts = item.payload
    if "text" in facts:
        return _queued_text(facts)
    amount = formatting.money(int(facts["amount"]), settings)
    if facts["event"] == "void":
        when = formatting.when(datetime.fromisoformat(facts["created_at"]), settings)
        return Rendered(
            _("Your purchase of {amount} on {when} was cancelled by the store.").format(
                amount=amount, when=when
            )
        )
    text = _("Purchase {amount}: discount {pct}, you saved {saved}.").format(
        amount=amount,
        pct=formatting.pct(int(facts["discount_pct"])),
        saved=formatting.money(int(facts["discount_amount"]), settings),
    )
    if facts.get("tier_pct") is not None:
        text += " " + _("Your card's level: {pct}.").format(
            pct=formatting.pct(int(facts["tier_pct"]))
        )
        if facts.get("next_tier_pct") is not None:
            text += " " + _("{remaining} more to {pct}.").format(
                remaining=formatting.money(int(facts["next_tier_remaining"]), settings),
                pct=formatting.pct(int(facts["next_tier_pct"])),
            )
    return Rendered(text)


@renders(sales.STAFF_LOG_KIND)
async def _staff_log(db: Database, item: Outgoing, settings: Settings, now: datetime) -> Rendered:
    """A sale's (or a void's) line in the staff chat, naming the cashier."""
    facts = item.payload
    if "text" in facts:
        return _queued_text(facts)
    who = html.escape(str(facts.get("cashier") or "?"))
    number, amount = str(facts["number"]), int(facts["amount"])
    if facts["event"] == "void":
        return Rendered(
            _("↩️ #{id} voided · {sale} · {who}").format(
                id=facts["purchase_id"], sale=sale_line(number, amount, settings), who=who
            )
        )
    sale = sale_line(
        number,
        amount,
        settings,
        pct=int(facts["discount_pct"]),
        discount=int(facts["discount_amount"]),
        paid=int(facts["paid_amount"]),
    )
    return Rendered(
        _("🧾 #{id} · {sale} · {who}").format(id=facts["purchase_id"], sale=sale, who=who)
    )


# ------------------------------------------------------------------------- owner tools


@renders(CARD_NOTE_KIND)
async def _card_note(db: Database, item: Outgoing, settings: Settings, now: datetime) -> Rendered:
    change = item.payload["change"]
    if change == "blocked":
        text = _(
            "Your loyalty card {number} was blocked by the store. If you did not ask for "
            "this, please contact the store."
        )
    elif change == "unblocked":
        text = _(
            "Your loyalty card {number} works again: the store has unblocked it. Show it "
            "at the till as usual."
        )
    else:
        text = _(
            "Your loyalty card {number} was unlinked from your Telegram account by the "
            "store. Send /start to link a card again."
        )
    return Rendered(text.format(number=group_number(str(item.payload["number"]))))


@renders("text")
async def _text(db: Database, item: Outgoing, settings: Settings, now: datetime) -> Rendered:
    return _queued_text(item.payload)


def _queued_text(payload: dict[str, Any]) -> Rendered:
    """A row queued as finished text by a version before facts (still pending when the bot
    was upgraded): sent as it is."""
    return Rendered(str(payload["text"]))


def create_renderer(i18n: I18n, default_language: str) -> Renderer:
    """The renderer for `services.delivery`: kind → message, in the recipient's language."""

    async def render(
        db: Database, item: Outgoing, settings: Settings, now: datetime
    ) -> Rendered | None:
        func = RENDERERS.get(item.kind)
        if func is None:
            raise LookupError(f"no renderer for delivery kind {item.kind!r}")
        language = item.language
        if language not in LANGUAGES:
            language = default_language
        with i18n.context(), i18n.use_locale(language):
            return await func(db, item, settings, now)

    return render
