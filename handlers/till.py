"""The till: staff identify a card, enter the amount, see the discount and confirm exactly once.

Works in a private chat with the bot and in the staff group. A card is identified by the QR
deep link (`/start <payload>`), by the link or payload typed by a scanner or pasted, by a photo
of the QR, by `/sale 100045`, or (staff group only) by the bare number. The amount prompt is a
ForceReply so that it also works in a group with privacy mode on: there the amount must be a
reply to the bot; in a private chat the FSM state is enough.

What a sale (or a void) tells outside the till's chat — the customer's receipt, the line in
the staff chat — is queued by the sales service as facts and written out by the delivery
sender when it goes (`handlers/outbox.py`); here the till only says where to log and who sold.

Messages are filtered to staff on the router. Callbacks are not: each till callback handler
checks `IsStaff()` itself and a last handler refuses every other press with the till prefix
(replayed or forged data included), so a non-staff press gets a refusal and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from aiogram import Bot, F, Router
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramServerError,
)
from aiogram.filters import Command, CommandObject, CommandStart, Filter, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __

from config import Settings
from db.models import CardKind, CardStatus, OfferKind
from handlers import formatting
from handlers.errors import render_error, renders
from handlers.filters import Match
from handlers.photos import IMAGE, qr_texts
from handlers.roles import IsStaff, Role
from services import qr_payload
from services.cards import group_number
from services.delivery import Outbox
from services.errors import CardNotFound, InvalidAmount, InvalidCardNumber
from services.money import parse_amount
from services.qr_decode import ImageRejected, QrReader
from services.qr_payload import InvalidPayload
from services.sales import (
    AlreadyVoided,
    CardAlreadyIssued,
    CardBlockedAtTill,
    Confirmation,
    DraftGone,
    DraftView,
    NotYourDraft,
    PurchaseNotFound,
    SalesService,
    TillCard,
    VoidNotAllowed,
    VoidResult,
)

log = logging.getLogger(__name__)

_NUMBER_TEXT = re.compile(r"\s*\d[\d \-]{3,30}\s*")
# What a cashier types as an amount: digits and separators, maybe a currency word or sign.
_CURRENCY_WORDS = re.compile(r"(?i)₽|€|\$|руб\.?|р\.?|rub|eur")
_AMOUNT_TEXT = re.compile(r"[\d\s.,'’\u00a0\u202f]*\d[\d\s.,'’\u00a0\u202f]*")
# A scanner that dropped or changed characters still produced something payload-shaped.
_LOOSE_PAYLOAD = re.compile(r"c\d{1,25}_\S{0,40}")

PROMPT = __("Enter the purchase amount in reply to this message.")


class TillStates(StatesGroup):
    amount = State()


class TillCb(CallbackData, prefix="till"):
    action: str  # ok | no | void
    ref: str  # draft id or purchase id: a lookup key, re-validated by the service


class TillChat(Filter):
    """A private chat with the bot or the staff group; other groups are not a till."""

    async def __call__(self, message: Message, settings: Settings) -> bool:
        return message.chat.type == "private" or message.chat.id == settings.telegram.staff_chat_id


class InStaffGroup(Filter):
    async def __call__(self, message: Message, settings: Settings) -> bool:
        return (
            settings.telegram.staff_chat_id is not None
            and message.chat.id == settings.telegram.staff_chat_id
        )


class AmountAnswer(Filter):
    """In a private chat any text in the amount state. In a group a reply to the bot, or —
    from the cashier the bot is waiting for (the state is theirs in this chat) — a bare amount:
    on a desktop ForceReply does not force, and `1500` typed under the prompt is the amount."""

    async def __call__(self, message: Message, bot: Bot) -> bool:
        if message.chat.type == "private" or _is_reply_to_bot(message, bot):
            return True
        text = message.text or ""
        return len(text) <= 32 and bool(_AMOUNT_TEXT.fullmatch(_CURRENCY_WORDS.sub("", text)))


def _is_reply_to_bot(message: Message, bot: Bot) -> bool:
    reply = message.reply_to_message
    return reply is not None and reply.from_user is not None and reply.from_user.id == bot.id


def payload_candidate(text: str | None) -> str | None:
    """What looks like a card payload in scanned or pasted text (valid or not)."""
    if not text or len(text) > 512:
        return None
    candidate = qr_payload.extract(text)
    if candidate is None and _LOOSE_PAYLOAD.fullmatch(text.strip()):
        candidate = text.strip()
    return candidate if candidate and candidate.startswith("c") else None


# ------------------------------------------------------------------- error texts
@renders(InvalidPayload)
def _invalid_payload(exc: Exception, settings: Settings) -> str:
    return _("This QR code is not a valid card of our store.")


@renders(ImageRejected)
def _image_rejected(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, ImageRejected)
    if exc.reason == "too_big":
        return _("The photo is too large. Send a smaller photo of the QR code.")
    return _("I cannot read this picture. Send a photo of the QR code.")


@renders(DraftGone)
def _draft_gone(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, DraftGone)
    texts = {
        "expired": _("This quote has expired. Scan the card again."),
        "cancelled": _("This quote was cancelled."),
        "replaced": _("This quote was replaced by a newer one for the same card."),
        "confirmed": _("This purchase is already recorded; use ↩️ Void to undo it."),
        "offer_used": _("The personal offer was used meanwhile. Scan the card again."),
    }
    return texts.get(exc.reason, _("This quote no longer exists. Scan the card again."))


@renders(CardBlockedAtTill)
def _blocked_at_till(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, CardBlockedAtTill)
    reasons = {
        "lost": _("reported lost or stolen"),
        "replaced": _("replaced by the holder's new card"),
        "erased": _("its holder left the program"),
    }
    reason = reasons.get(exc.reason or "")
    number = group_number(exc.number)
    if reason is None:
        return _("⛔ Card {number} is blocked: do not give its discount.").format(number=number)
    return _("⛔ Card {number} is blocked ({reason}): do not give its discount.").format(
        number=number, reason=reason
    )


@renders(NotYourDraft)
def _not_your_draft(exc: Exception, settings: Settings) -> str:
    return _("Only the cashier who made this quote or an owner can do that.")


@renders(PurchaseNotFound)
def _purchase_not_found(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, PurchaseNotFound)
    return _("Purchase #{id} not found.").format(id=exc.purchase_id)


@renders(AlreadyVoided)
def _already_voided(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, AlreadyVoided)
    return _("Purchase #{id} is already voided.").format(id=exc.purchase_id)


@renders(VoidNotAllowed)
def _void_not_allowed(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, VoidNotAllowed)
    if exc.reason == "not_yours":
        return _("You can void only your own purchases. Ask an owner.")
    return _("A cashier can void a purchase within {minutes} min. Ask an owner.").format(
        minutes=exc.window_min
    )


@renders(CardAlreadyIssued)
def _card_already_issued(exc: Exception, settings: Settings) -> str:
    assert isinstance(exc, CardAlreadyIssued)
    return _("Card {number} is already issued.").format(number=group_number(exc.number))


# ---------------------------------------------------------------------- rendering
def _pct_or_dash(value: int) -> str:
    return formatting.pct(value) if value else "—"


def _offer_kind(kind: str | None) -> str:
    names = {
        OfferKind.WINBACK: _("we miss you"),
        OfferKind.BIRTHDAY: _("birthday"),
        OfferKind.WELCOME: _("welcome"),
    }
    return names.get(kind, kind or "")  # type: ignore[call-overload]


def render_card(card: TillCard, settings: Settings) -> str:
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
    lines += ["", str(PROMPT)]
    return "\n".join(lines)


def render_quote(draft: DraftView, settings: Settings) -> str:
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


def render_receipt(done: Confirmation, settings: Settings) -> str:
    lines = [
        _("✅ Purchase #{id} recorded").format(id=done.purchase_id),
        _sale_line(done, done.discount_pct, settings),
    ]
    if done.card_issued_now:
        lines.append(_("The card is now issued."))
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


# ------------------------------------------------------ the receipt after the commit
class ReceiptLocks:
    """One lock per receipt message (chat, message id), held while a ✅ or a void decides what
    the message shows and edits it: a late ✅ racing a ↩️ then edits either before the void
    (and the void's edit comes last) or after it (and reads the purchase as voided). Per
    process, the locks vanishing with their last holder; with several workers (`shared`: a
    lock by name in Redis, see bot/app.py) a cashier's ✅ and an owner's ↩️ may land on two
    workers, so the lock is theirs in common."""

    def __init__(
        self, shared: Callable[[str], contextlib.AbstractAsyncContextManager[None]] | None = None
    ) -> None:
        self.shared = shared
        self._locks: weakref.WeakValueDictionary[tuple[int, int], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @contextlib.asynccontextmanager
    async def hold(self, chat_id: int | None, message_id: int | None) -> AsyncIterator[None]:
        if chat_id is None or message_id is None:
            yield
            return
        if self.shared is not None:
            async with self.shared(f"receipt:{chat_id}:{message_id}"):
                yield
            return
        key = (chat_id, message_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            yield


# Telegram failing after the sale is committed (5xx, a dropped connection, a proxy's HTML page)
# must not read as "something went wrong": the cashier would ring the sale up again.
_TRANSIENT = (TelegramServerError, TelegramNetworkError, ClientDecodeError, TimeoutError)
AFTER_COMMIT_RETRIES = (0.5, 1.5)


async def after_commit(call: Callable[[], Awaitable[Any]], what: str) -> bool:
    """A Telegram call that reports something already recorded: retried on transient failures,
    never raised. False when it did not go through."""
    for delay in (0.0, *AFTER_COMMIT_RETRIES):
        if delay:
            await asyncio.sleep(delay)
        try:
            await call()
            return True
        except TelegramBadRequest as exc:
            if "not modified" in str(exc):  # a repeat that changes nothing: already shown
                return True
            log.warning("%s after the commit was refused: %s", what, exc)
            return False
        except _TRANSIENT as exc:
            log.info("%s after the commit failed (%r); retrying", what, exc)
        except TelegramAPIError as exc:
            log.warning("%s after the commit failed: %s", what, exc)
            return False
    log.warning("%s after the commit kept failing; giving up", what)
    return False


async def show_receipt(
    bot: Bot, message: Message, text: str, markup: InlineKeyboardMarkup | None
) -> None:
    """Turn the quote into the receipt; if Telegram keeps failing at that, send it anew."""
    if not await after_commit(
        lambda: message.edit_text(text, reply_markup=markup), "editing the receipt"
    ):
        await after_commit(
            lambda: bot.send_message(message.chat.id, text, reply_markup=markup),
            "sending the receipt anew",
        )


# ------------------------------------------------------------ identifying the card
async def _show_card(
    message: Message, card: TillCard, state: FSMContext, settings: Settings
) -> None:
    # The step is kept before the prompt goes out: a worker that dies right after sending it
    # leaves a conversation another worker can continue (the amount may land anywhere).
    await state.set_data({"card_id": card.card_id})  # an id only; quote() re-reads the card
    await state.set_state(TillStates.amount)
    markup = ForceReply(selective=True, input_field_placeholder="2500")
    text = render_card(card, settings)
    if message.chat.type == "private":
        await message.answer(text, reply_markup=markup)
    else:  # selective ForceReply targets the sender of the replied-to message
        await message.reply(text, reply_markup=markup)


async def scan_deep_link(
    message: Message,
    command: CommandObject,
    sales: SalesService,
    state: FSMContext,
    settings: Settings,
) -> None:
    card = await sales.identify_payload(command.args or "")
    await _show_card(message, card, state, settings)


async def sale_by_number(
    message: Message,
    command: CommandObject,
    sales: SalesService,
    state: FSMContext,
    settings: Settings,
) -> None:
    if not command.args:
        await message.answer(_("Send the card number: /sale 100045"))
        return
    card = await sales.identify_number(command.args)
    await _show_card(message, card, state, settings)


async def scan_text(
    message: Message, sales: SalesService, state: FSMContext, settings: Settings
) -> None:
    card = await sales.identify_payload(payload_candidate(message.text) or "")
    await _show_card(message, card, state, settings)


async def scan_photo(
    message: Message,
    bot: Bot,
    sales: SalesService,
    qr_reader: QrReader,
    state: FSMContext,
    settings: Settings,
) -> None:
    in_group = message.chat.type != "private"
    try:
        texts = await qr_texts(message, bot, qr_reader)
    except ImageRejected:
        if in_group:
            return  # any picture posted in the staff chat: not necessarily meant for the till
        raise
    candidate = next((c for t in texts if (c := payload_candidate(t))), None)
    if candidate is None:
        if not in_group:
            await message.answer(
                _("No card QR code found in the photo. Try again closer, or type /sale 100045.")
            )
        return
    card = await sales.identify_payload(candidate)
    await _show_card(message, card, state, settings)


# ----------------------------------------------------------------- amount → quote
async def take_amount(
    message: Message,
    bot: Bot,
    sales: SalesService,
    state: FSMContext,
    settings: Settings,
    now: datetime,
) -> None:
    assert message.text is not None and message.from_user is not None
    if message.chat.type != "private" and not _is_reply_to_bot(message, bot):
        # A bare number in the staff group stays what it always was there, a card, when it is
        # one (the cashier moved on to the next customer); anything else is the amount.
        with contextlib.suppress(CardNotFound, InvalidCardNumber):
            card = await sales.identify_number(message.text.strip())
            await _show_card(message, card, state, settings)
            return
    data = await state.get_data()
    try:
        amount = parse_amount(
            message.text, settings.store.currency_exponent, settings.pricing.max_purchase
        )
    except InvalidAmount as exc:
        # The reason and a fresh prompt: in a group the next answer must reply to a prompt.
        reason = render_error(exc, settings) or ""
        markup = ForceReply(selective=True, input_field_placeholder="2500")
        if message.chat.type == "private":
            await message.answer(f"{reason}\n{PROMPT}", reply_markup=markup)
        else:
            await message.reply(f"{reason}\n{PROMPT}", reply_markup=markup)
        return
    draft = await sales.quote(
        int(data["card_id"]), amount, message.from_user.id, message.chat.id, now
    )
    await state.clear()
    await message.answer(render_quote(draft, settings), reply_markup=quote_keyboard(draft.id))


async def number_in_staff_group(
    message: Message, bot: Bot, sales: SalesService, state: FSMContext, settings: Settings
) -> None:
    if _is_reply_to_bot(message, bot):
        return  # an answer to someone else's prompt, not a card number
    assert message.text is not None
    try:
        card = await sales.identify_number(message.text.strip())
    except CardNotFound as exc:
        # A bare number in the staff chat is as likely an amount typed before any card was
        # scanned as a mistyped card: say how a sale goes.
        await message.reply(
            _(
                "No card {number} in our program. To record a sale, first scan the card's QR "
                "or send its number; then answer my message with the amount."
            ).format(number=group_number(exc.number))
        )
        return
    await _show_card(message, card, state, settings)


# -------------------------------------------------------------------- /issue, /void
async def issue_card(
    message: Message, command: CommandObject, sales: SalesService, now: datetime
) -> None:
    assert message.from_user is not None
    parts = (command.args or "").split()
    segment = None
    if parts and parts[-1].lower() in ("b2b", "b2c"):
        segment = parts.pop().lower()
    if not parts:
        await message.answer(_("Usage: /issue 100045 [b2b]"))
        return
    result = await sales.issue(" ".join(parts), segment, message.from_user.id, now)
    await message.answer(
        _("Card {number} ({pct}, {segment}) is now issued.").format(
            number=group_number(result.number),
            pct=formatting.pct(result.base_pct),
            segment=result.segment.upper(),
        )
    )


async def void_command(
    message: Message,
    command: CommandObject,
    bot: Bot,
    outbox: Outbox,
    sales: SalesService,
    receipt_locks: ReceiptLocks,
    role: Role,
    settings: Settings,
    now: datetime,
) -> None:
    assert message.from_user is not None
    ref = (command.args or "").strip().lstrip("#")
    if not ref.isdigit() or len(ref) > 12:
        await message.answer(_("Usage: /void purchase number, e.g. /void 123"))
        return
    result = await sales.void(
        int(ref),
        message.from_user.id,
        role >= Role.OWNER,
        now,
        log_chat_id=_log_chat(message.chat.type, settings),
        cashier_name=_who(message.from_user),
    )
    outbox.notify()
    text = render_voided(result, settings)
    await after_commit(lambda: message.answer(text), "answering /void")
    if result.chat_id is not None and result.message_id is not None:
        # The receipt's edit comes after the void's commit, under the receipt's lock: a ✅
        # pressed meanwhile has either shown its receipt already or will read the void.
        async with receipt_locks.hold(result.chat_id, result.message_id):
            await after_commit(
                lambda: bot.edit_message_text(
                    text, chat_id=result.chat_id, message_id=result.message_id
                ),
                "marking the receipt voided",
            )


def _log_chat(chat_type: str, settings: Settings) -> int | None:
    """Where a sale (or a void) made in this chat is logged: the staff chat, unless the
    cashier works there already (then the receipt is the log)."""
    return settings.telegram.staff_chat_id if chat_type == "private" else None


# ----------------------------------------------------------------------- callbacks
async def confirm_sale(
    cq: CallbackQuery,
    callback_data: TillCb,
    bot: Bot,
    outbox: Outbox,
    sales: SalesService,
    receipt_locks: ReceiptLocks,
    role: Role,
    settings: Settings,
    now: datetime,
) -> None:
    message = cq.message if isinstance(cq.message, Message) else None
    where = (message.chat.id, message.message_id) if message else (None, None)
    async with receipt_locks.hold(*where):
        await _confirm(cq, callback_data, bot, message, outbox, sales, role, settings, now)


async def _confirm(
    cq: CallbackQuery,
    callback_data: TillCb,
    bot: Bot,
    message: Message | None,
    outbox: Outbox,
    sales: SalesService,
    role: Role,
    settings: Settings,
    now: datetime,
) -> None:
    done = await sales.confirm(
        callback_data.ref,
        cq.from_user.id,
        role >= Role.OWNER,
        now,
        message_id=message.message_id if message else None,
        log_chat_id=_log_chat(message.chat.type if message else "private", settings),
        cashier_name=_who(cq.from_user),
    )
    if not done.already:
        outbox.notify()
    # From here on the sale is recorded: whatever Telegram does, the cashier is told so.
    if done.voided:  # a late tap on a purchase voided since: show what the ledger says
        note, text, markup = _("This purchase was voided."), render_voided(done, settings), None
    else:
        note = _("Already confirmed.") if done.already else _("Recorded.")
        text, markup = render_receipt(done, settings), void_keyboard(done.purchase_id)
    # The answer and the receipt go out at once: the cashier waits one Bot API round trip.
    answering = after_commit(lambda: cq.answer(note), "answering ✅")
    if message is None:
        await answering
    else:
        await asyncio.gather(answering, show_receipt(bot, message, text, markup))


async def cancel_sale(
    cq: CallbackQuery, callback_data: TillCb, sales: SalesService, role: Role, now: datetime
) -> None:
    number = await sales.cancel(callback_data.ref, cq.from_user.id, role >= Role.OWNER, now)
    await cq.answer(_("Cancelled."))
    if isinstance(cq.message, Message):
        with contextlib.suppress(TelegramBadRequest):
            await cq.message.edit_text(
                _("❌ Quote cancelled: card {number}.").format(number=group_number(number))
            )


async def void_sale(
    cq: CallbackQuery,
    callback_data: TillCb,
    outbox: Outbox,
    sales: SalesService,
    receipt_locks: ReceiptLocks,
    role: Role,
    settings: Settings,
    now: datetime,
) -> None:
    if not callback_data.ref.isdigit() or len(callback_data.ref) > 12:
        await cq.answer(_("Not allowed."), show_alert=True)
        return
    message = cq.message if isinstance(cq.message, Message) else None
    chat_type = message.chat.type if message is not None else "private"
    where = (message.chat.id, message.message_id) if message else (None, None)
    async with receipt_locks.hold(*where):
        result = await sales.void(
            int(callback_data.ref),
            cq.from_user.id,
            role >= Role.OWNER,
            now,
            log_chat_id=_log_chat(chat_type, settings),
            cashier_name=_who(cq.from_user),
        )
        outbox.notify()
        await after_commit(lambda: cq.answer(_("Voided.")), "answering ↩️")
        if message is not None:
            text = render_voided(result, settings)
            await after_commit(lambda: message.edit_text(text), "marking the receipt voided")


async def refuse_callback(cq: CallbackQuery) -> None:
    """Anyone else pressing (or forging) a till button: refused, nothing changes."""
    await cq.answer(_("Not allowed."), show_alert=True)


def setup() -> Router:
    """This feature's router, built anew for each dispatcher (handlers in routing order)."""
    router = Router(name=__name__)
    router.message.filter(TillChat(), IsStaff())
    router.message.register(
        scan_deep_link, CommandStart(deep_link=True, magic=F.args.startswith("c"))
    )
    router.message.register(sale_by_number, Command("sale"))
    router.message.register(scan_text, Match(F.text.func(payload_candidate)))
    router.message.register(scan_photo, IMAGE)
    router.message.register(
        take_amount,
        StateFilter(TillStates.amount),
        Match(F.text),
        ~Match(F.text.startswith("/")),
        AmountAnswer(),
    )
    router.message.register(
        number_in_staff_group, InStaffGroup(), Match(F.text.regexp(_NUMBER_TEXT.pattern))
    )
    router.message.register(issue_card, Command("issue"))
    router.message.register(void_command, Command("void"))
    router.callback_query.register(confirm_sale, TillCb.filter(F.action == "ok"), IsStaff())
    router.callback_query.register(cancel_sale, TillCb.filter(F.action == "no"), IsStaff())
    router.callback_query.register(void_sale, TillCb.filter(F.action == "void"), IsStaff())
    router.callback_query.register(
        refuse_callback, Match(F.data.startswith(TillCb.__prefix__ + ":"))
    )
    return router
