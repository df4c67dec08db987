"""The signed card payloads carried by the QR deep link `https://t.me/<bot>?start=<payload>`.

Static (the card image in the chat, a printed card): `c<number>_<mac>` where mac = first 12
bytes of HMAC-SHA256(SECRET_KEY, "card:<number>") in base64url (16 chars). At most
1 + 19 + 1 + 16 = 37 characters.

Live (the Mini App's card, redrawn every QR_ROTATE_SEC): `l<number>_<step>_<mac>` where step =
UTC epoch seconds // QR_ROTATE_SEC and mac = first 12 bytes of HMAC-SHA256(SECRET_KEY,
"live:<number>:<step>") in base64url. At most 1 + 19 + 1 + 12 + 1 + 16 = 50 characters. The
till takes the current step and the previous one (a QR shown just before it changed): a
screenshot is useless two steps later.

Both use `[A-Za-z0-9_-]` only, under Telegram's 64 for a deep link. Without the key nobody can
make a valid payload for a number or a step (no forging, no enumerating); changing any character
breaks the MAC. The two messages differ ("card:" / "live:"), so neither signs the other.

Usage::

    payload = sign_live(secret, "100045", time_step(now, 30))    # the Mini App's QR
    scanned = read(secret, payload, now, 30)                     # Scanned("100045", live=True)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

from services.errors import DomainError

_PAYLOAD = re.compile(r"c(\d{4,19})_([A-Za-z0-9_-]{16})")
# The step is written canonically (no leading zeros): one step, one text, one MAC.
_LIVE_PAYLOAD = re.compile(r"l([0-9]{4,19})_(0|[1-9][0-9]{0,11})_([A-Za-z0-9_-]{16})", re.ASCII)
# How a card payload starts (`c…` static, `l<digit>…` live): anything else is another link.
_PAYLOAD_START = re.compile(r"c|l[0-9]")
_MAC_BYTES = 12
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidPayload(DomainError):
    """A scanned or pasted payload is malformed or its signature does not match."""


class ExpiredPayload(InvalidPayload):
    """A correctly signed live payload of another time step than the current or the previous
    one: a screenshot, or a QR kept open too long. `number` is the card it names."""

    def __init__(self, number: str, step: int, current: int) -> None:
        super().__init__(f"live payload of step {step}, now {current}")
        self.number = number
        self.step = step
        self.current = current


@dataclass(frozen=True)
class Scanned:
    """A payload the till may accept: the card's number and whether it was a live one."""

    number: str
    live: bool


def _digest(secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).decode().rstrip("=")


def _mac(secret: str, number: str) -> str:
    return _digest(secret, f"card:{number}")


def _live_mac(secret: str, number: str, step: int) -> str:
    return _digest(secret, f"live:{number}:{step}")


def sign(secret: str, number: str) -> str:
    """The static payload of a card (its image in the chat, its printed QR)."""
    return f"c{number}_{_mac(secret, number)}"


def time_step(now: datetime, rotate_sec: int) -> int:
    """The live QR's time step at `now` (aware): UTC epoch seconds // rotate_sec."""
    if now.tzinfo is None:
        raise ValueError("time_step needs an aware datetime")
    if rotate_sec <= 0:
        raise ValueError("rotate_sec must be positive")
    return (now - _EPOCH) // timedelta(seconds=rotate_sec)


def sign_live(secret: str, number: str, step: int) -> str:
    """The live payload of a card for one time step (`time_step`)."""
    if step < 0:
        raise ValueError("a time step is not negative")
    return f"l{number}_{step}_{_live_mac(secret, number, step)}"


def deep_link(bot_username: str, payload: str) -> str:
    return f"https://t.me/{bot_username}?start={payload}"


def verify(secret: str, payload: str) -> str:
    """Return the card number a valid static payload carries, or raise `InvalidPayload`."""
    match = _PAYLOAD.fullmatch(payload.strip()) if isinstance(payload, str) else None
    if match is None:
        raise InvalidPayload("not a card payload")
    number, mac = match.groups()
    if not hmac.compare_digest(mac, _mac(secret, number)):
        raise InvalidPayload("signature mismatch")
    return number


def read(secret: str, payload: str, now: datetime, rotate_sec: int) -> Scanned:
    """What a scanned payload names: a static one, or a live one of the current or the
    previous step. `InvalidPayload` when forged or mangled, `ExpiredPayload` when correctly
    signed for another step."""
    text = payload.strip() if isinstance(payload, str) else ""
    match = _LIVE_PAYLOAD.fullmatch(text)
    if match is None:
        return Scanned(verify(secret, text), live=False)
    number, step_text, mac = match.groups()
    step = int(step_text)
    if not hmac.compare_digest(mac, _live_mac(secret, number, step)):
        raise InvalidPayload("signature mismatch")
    current = time_step(now, rotate_sec)
    if step not in (current, current - 1):
        raise ExpiredPayload(number, step, current)
    return Scanned(number, live=True)


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
    return text if _PAYLOAD.fullmatch(text) or _LIVE_PAYLOAD.fullmatch(text) else None


def starts_like_payload(text: str) -> bool:
    """Whether `text` begins as a card payload does (`c…`, `l<digit>…`), valid or not."""
    return isinstance(text, str) and _PAYLOAD_START.match(text) is not None


def looks_like_payload(text: str) -> bool:
    candidate = extract(text)
    return candidate is not None and starts_like_payload(candidate)
