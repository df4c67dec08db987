"""The signed card payload carried by the QR deep link `https://t.me/<bot>?start=<payload>`.

Format: `c<number>_<mac>` where mac = first 12 bytes of HMAC-SHA256(SECRET_KEY, "card:<number>")
in base64url (16 chars). At most 1 + 19 + 1 + 16 = 37 characters of `[A-Za-z0-9_-]`, well under
Telegram's 64. Without the key nobody can make a valid payload for a number (no forging, no
enumerating); changing any character breaks the MAC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from urllib.parse import parse_qs, urlparse

from services.errors import DomainError

_PAYLOAD = re.compile(r"c(\d{4,19})_([A-Za-z0-9_-]{16})")
_MAC_BYTES = 12


class InvalidPayload(DomainError):
    """A scanned or pasted payload is malformed or its signature does not match."""


def _mac(secret: str, number: str) -> str:
    digest = hmac.new(secret.encode(), f"card:{number}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).decode().rstrip("=")


def sign(secret: str, number: str) -> str:
    return f"c{number}_{_mac(secret, number)}"


def deep_link(bot_username: str, payload: str) -> str:
    return f"https://t.me/{bot_username}?start={payload}"


def verify(secret: str, payload: str) -> str:
    """Return the card number a valid payload carries, or raise `InvalidPayload`."""
    match = _PAYLOAD.fullmatch(payload.strip()) if isinstance(payload, str) else None
    if match is None:
        raise InvalidPayload("not a card payload")
    number, mac = match.groups()
    if not hmac.compare_digest(mac, _mac(secret, number)):
        raise InvalidPayload("signature mismatch")
    return number


def extract(text: str) -> str | None:
    """Find a payload in what a scanner typed or a person pasted: the link or the bare payload."""
    if not isinstance(text, str) or len(text) > 512:
        return None
    text = text.strip()
    if "start=" in text:
        try:
            values = parse_qs(urlparse(text).query).get("start")
        except ValueError:
            return None
        return values[0] if values else None
    if text.startswith("/start "):
        return text.removeprefix("/start ").strip() or None
    return text if _PAYLOAD.fullmatch(text) else None


def looks_like_payload(text: str) -> bool:
    candidate = extract(text)
    return candidate is not None and candidate.startswith("c")
