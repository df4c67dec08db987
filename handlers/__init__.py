"""aiogram routers, one per feature, included in a fixed and visible order."""

from __future__ import annotations

from aiogram import Router

from handlers import common, errors, fallback


def build_router() -> Router:
    """Deep-link /start first, /help and /cancel (any state), features, the catch-all last."""
    routers = [
        errors.router,
        common.router,
        fallback.router,  # keep last
    ]
    root = Router(name="handlers")
    for router in routers:
        # Feature routers are module singletons; a process that builds a second dispatcher
        # (the test suite, a webhook worker) must detach them from the previous root first.
        router._parent_router = None
    root.include_routers(*routers)
    return root
