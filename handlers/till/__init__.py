"""The till: staff identify a card, enter the amount, see the discount and confirm exactly once.

Works in a private chat with the bot and in every open branch's staff group: a sale made in a
group is that branch's; in a private chat it is for the shop the cashier works in, asked once
when they work in several (`branch.py`; `/branch` switches, in a chain only).

A card is identified by the QR deep link (`/start <payload>`), by the link or payload typed by
a scanner or pasted, by a photo of the QR, by `/sale 100045`, or (staff group only) by the
bare number. The QR is the card
image's static one or the Mini App's live one (fresh only); which ways a card is accepted by
is the sales service's rule (`SalesService.identify_payload`, STATIC_QR). The amount prompt is a
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

from aiogram import F, Router
from aiogram.filters import Command, CommandStart, StateFilter

from handlers.filters import InChain, Match
from handlers.photos import IMAGE
from handlers.roles import IsStaff
from handlers.till import refusals  # noqa: F401 - registers the refusals' texts
from handlers.till.base import (
    NUMBER_TEXT,
    AmountAnswer,
    InStaffGroup,
    TillCb,
    TillChat,
    TillStates,
    payload_candidate,
)
from handlers.till.branch import SellForCb
from handlers.till.callbacks import cancel_sale, confirm_sale, refuse_callback, void_sale
from handlers.till.commands import issue_card, void_command
from handlers.till.identify import sale_by_number, scan_deep_link, scan_photo, scan_text
from handlers.till.quote import number_in_staff_group, take_amount
from handlers.till.receipts import ReceiptLocks
from handlers.till.shops import branch_command, choose_shop, refuse_choice
from handlers.till.views import sale_line
from services import qr_payload

__all__ = ["ReceiptLocks", "payload_candidate", "sale_line", "setup"]


def setup() -> Router:
    """This feature's router, built anew for each dispatcher (handlers in routing order)."""
    router = Router(name=__name__)
    router.message.filter(TillChat(), IsStaff())
    router.message.register(
        scan_deep_link,
        CommandStart(deep_link=True, magic=F.args.func(qr_payload.starts_like_payload)),
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
        number_in_staff_group, InStaffGroup(), Match(F.text.regexp(NUMBER_TEXT.pattern))
    )
    router.message.register(issue_card, Command("issue"))
    router.message.register(void_command, Command("void"))
    router.message.register(branch_command, Command("branch"), InChain())
    router.callback_query.register(confirm_sale, TillCb.filter(F.action == "ok"), IsStaff())
    router.callback_query.register(cancel_sale, TillCb.filter(F.action == "no"), IsStaff())
    router.callback_query.register(void_sale, TillCb.filter(F.action == "void"), IsStaff())
    router.callback_query.register(
        refuse_callback, Match(F.data.startswith(TillCb.__prefix__ + ":"))
    )
    router.callback_query.register(choose_shop, SellForCb.filter(), IsStaff())
    router.callback_query.register(
        refuse_choice, Match(F.data.startswith(SellForCb.__prefix__ + ":"))
    )
    return router
