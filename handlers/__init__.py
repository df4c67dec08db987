"""aiogram routers, one per feature, included in a fixed and visible order."""

from __future__ import annotations

from aiogram import Router

from handlers import (
    common,
    errors,
    fallback,
    membership,
    owner_reports,
    owner_tools,
    privacy,
    surveys,
    till,
    wallet,
)


def build_router() -> Router:
    """The order is the routing contract: the first router whose filters match wins."""
    routers = [
        errors.router,  # the one error handler
        common.router,  # /help, /cancel: any state, any role
        privacy.router,  # /privacy, /mydata, /deletemydata, /notifications: everyone
        owner_reports.router,  # owners: /stats, /digest, /export, /card N, /cards
        owner_tools.router,  # owners: /block, /unbind, /staff, /audit
        till.router,  # staff: card deep links and scans, /sale, /issue, /void, quotes
        surveys.router,  # NPS answers and comments, marketing opt-out buttons
        membership.router,  # my_chat_member: blocked / unblocked the bot
        wallet.router,  # customers: /start, consent, binding, /card, /history, /offers, ...
        fallback.router,  # the private-chat catch-all: keep last
    ]
    root = Router(name="handlers")
    for router in routers:
        # Feature routers are module singletons; a process that builds a second dispatcher
        # (the test suite, a webhook worker) must detach them from the previous root first.
        router._parent_router = None
    root.include_routers(*routers)
    return root
