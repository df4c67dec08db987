"""Who is calling the Mini App's API: Telegram's signed `initData`, checked on every call.

Telegram hands the Mini App `initData`, a query string signed with a key derived from the bot's
token (HMAC-SHA256, `aiogram.utils.web_app`). The page sends it back in the `Authorization:
tma <initData>` header; a missing, malformed or forged one, or one older than
`MINIAPP_AUTH_TTL_SEC` (its `auth_date`), is refused before anything is read or written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from aiogram.utils.web_app import safe_parse_webapp_init_data

# A phone's clock a little ahead of ours is not a forgery.
CLOCK_SKEW = timedelta(minutes=2)


class NotAuthenticated(Exception):
    """The request does not carry a valid, fresh initData; `reason` is for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Caller:
    """The Telegram user a valid initData names."""

    user_id: int
    first_name: str
    language_code: str | None


def authenticate(header: str | None, token: str, now: datetime, ttl_sec: int) -> Caller:
    """The caller of an API request from its Authorization header, or `NotAuthenticated`."""
    if not header:
        raise NotAuthenticated("no initData")
    scheme, _, init_data = header.partition(" ")
    if scheme.lower() != "tma" or not init_data or len(init_data) > 8192:
        raise NotAuthenticated("not a tma header")
    try:
        data = safe_parse_webapp_init_data(token, init_data)
    except ValueError:
        raise NotAuthenticated("signature mismatch") from None
    signed_at = data.auth_date
    if now - signed_at > timedelta(seconds=ttl_sec) or signed_at - now > CLOCK_SKEW:
        raise NotAuthenticated("stale initData")
    if data.user is None:
        raise NotAuthenticated("no user in initData")
    return Caller(data.user.id, data.user.first_name, data.user.language_code)


def sign_init_data(token: str, user: dict[str, object], auth_date: datetime) -> str:
    """initData as Telegram signs it for `user` (the demo opens the Mini App with it, as a
    Telegram client would; the tests sign theirs)."""
    fields = {
        "auth_date": str(int(auth_date.timestamp())),
        "query_id": "AAH-demo",
        "user": json.dumps(user, separators=(",", ":"), ensure_ascii=False),
    }
    check = "\n".join(f"{key}={value}" for key, value in sorted(fields.items()))
    secret = hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()
    fields["hash"] = hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()
    return urlencode(fields)
