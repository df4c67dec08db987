"""aiogram routers, one per feature, included in a fixed and visible order."""

from __future__ import annotations

from aiogram import Router

from handlers import (
    campaigns,
    common,
    errors,
    fallback,
    membership,
    motivation,
    owner_reports,
    owner_tools,
    privacy,
    promotions,
    referrals,
    surveys,
    till,
    wallet,
)


def feature_routers() -> list[Router]:
    """The feature routers in routing order, for `Dispatcher.include_routers`: the order is
    the routing contract (the first router whose filters match wins). They hang directly off
    the dispatcher: each router level an update passes costs aiogram about a quarter of a
    millisecond, so the busiest router comes early and nothing wraps them. Each call builds
    new routers (`setup()` of each feature), so every dispatcher gets its own."""
    return [
        common.setup(),  # /help, /cancel: any state, any role
        # The till matches no command of the routers after it, and in the amount state it
        # leaves every "/…" text to them.
        till.setup(),  # staff: card deep links and scans, /sale, /issue, /void, quotes
        privacy.setup(),  # /privacy, /mydata, /deletemydata, /notifications: everyone
        owner_reports.setup(),  # owners: /stats, /digest, /export, /card N, /cards
        owner_tools.setup(),  # owners: /block, /unbind, /staff, /audit
        promotions.setup(),  # owners: /promos (happy hours)
        campaigns.setup(),  # owners: /campaign (the wizard), /campaigns (results)
        surveys.setup(),  # NPS answers and comments, marketing opt-out buttons
        motivation.setup(),  # why members take part: answer buttons and the free text
        membership.setup(),  # my_chat_member: blocked / unblocked the bot
        referrals.setup(),  # customers: /invite (the invite link's /start is the wallet's)
        wallet.setup(),  # customers: /start, consent, binding, /card, /history, /offers, ...
        fallback.setup(),  # the private-chat catch-all: keep last of the updates
        errors.setup(),  # the one error handler (error events reach every router)
    ]
