"""A Telegram Bot API emulator: the real aiogram ``Bot`` talks to it over HTTP exactly as it
would talk to api.telegram.org.

Two users of one implementation:

* the end-to-end tests, which play users through it (``FakeUser.send``/``press``/…) and assert
  on what the bot sent, so they exercise the production code's request building,
  (de)serialisation and error handling instead of a mocked ``Bot``;
* ``python -m bot demo`` (`bot.demo.page`), which lets a person play those users in a browser.

Typical use::

    async with FakeTelegram() as tg:
        session = AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url))
        bot = Bot(token=tg.token, session=session)
        ...  # start polling
        alice = tg.user(1001, "Alice")
        await alice.send("/start")
        reply = await alice.wait_message("Welcome")
        await alice.press(reply, "Balance")

Deliberate simplifications:

* only ``parse_mode="HTML"`` is rendered (tags stripped, entities computed); other parse
  modes keep the raw text;
* one photo size per photo, one queue of updates per server (several ``Bot`` objects with
  the same token share it, as they would with real Telegram);
* chats that were never registered via :meth:`FakeTelegram.user`/:meth:`FakeTelegram.group`
  are auto-created on first use unless ``strict_chats=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import itertools
import json
import logging
import mimetypes
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web

try:  # Pillow is optional: it only makes reported photo sizes realistic.
    from PIL import Image
except ImportError:  # pragma: no cover - Pillow is installed in the project venv
    Image = None  # type: ignore[assignment]

__all__ = [
    "Call",
    "FakeGroup",
    "FakeMessage",
    "FakeTelegram",
    "FakeUser",
    "FaultResponse",
    "UploadedFile",
]

logger = logging.getLogger(__name__)

# Form fields that are plain strings in the Bot API. Everything else is JSON-decoded when
# possible, because aiogram serialises ints, bools, lists and objects with json.dumps.
_STRING_FIELDS: Final = frozenset(
    (
        "action",
        "address",
        "animation",
        "audio",
        "business_connection_id",
        "callback_query_id",
        "caption",
        "custom_title",
        "description",
        "document",
        "emoji",
        "file_id",
        "file_name",
        "first_name",
        "foursquare_id",
        "foursquare_type",
        "google_place_id",
        "google_place_type",
        "inline_message_id",
        "ip_address",
        "language_code",
        "last_name",
        "message_effect_id",
        "name",
        "parse_mode",
        "phone_number",
        "photo",
        "query",
        "secret_token",
        "short_description",
        "sticker",
        "text",
        "thumbnail",
        "title",
        "url",
        "vcard",
        "video",
        "video_note",
        "voice",
    )
)

# Methods that create chat messages; they are what `sent()` and the rate limiter care about.
_MESSAGE_METHODS: Final = frozenset(
    {"sendMessage", "sendPhoto", "sendDocument", "sendVenue", "sendLocation", "sendMediaGroup"}
)
# Telegram does not deliver these unless explicitly listed in allowed_updates.
_OPT_IN_UPDATES: Final = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_MEMBER_STATUSES: Final[dict[str, str]] = {
    "creator": "creator",
    "owner": "creator",
    "administrator": "administrator",
    "admin": "administrator",
    "member": "member",
    "restricted": "restricted",
    "left": "left",
    "kicked": "kicked",
    "banned": "kicked",
}
_DEFAULT_DESCRIPTIONS: Final[dict[int, str]] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests: retry after {retry_after}",
    500: "Internal Server Error",
    502: "Bad Gateway",
}
_NOT_MODIFIED: Final = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_BAD_FILE_ID: Final = "Bad Request: wrong file identifier/HTTP URL specified"
_BOT_COMMAND_RE: Final = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]+)?")
_TEXT_LIMIT: Final = 4096
_CAPTION_LIMIT: Final = 1024
_MAX_POLL_TIMEOUT: Final = 50.0


# --------------------------------------------------------------------------- data objects


@dataclass(frozen=True, repr=False)
class UploadedFile:
    """A file the bot uploaded in a multipart request."""

    filename: str
    content_type: str
    data: bytes

    def __repr__(self) -> str:
        # Raw bytes would drown assertion messages, so only the size is shown.
        return f"UploadedFile({self.filename!r}, {self.content_type!r}, {len(self.data)} bytes)"


@dataclass(frozen=True)
class FaultResponse:
    """An error answer injected instead of the normal handler result."""

    error_code: int
    description: str = ""
    retry_after: int | None = None
    migrate_to_chat_id: int | None = None
    # What a broken proxy in front of Telegram answers: this text verbatim instead of the JSON
    # error (an HTML 502 page, a truncated JSON body), with this content type.
    raw_body: str | None = None
    content_type: str = "text/html"
    # The connection is dropped without any answer (a reset, a dying server).
    reset: bool = False

    def to_body(self) -> dict[str, Any]:
        description = self.description or _DEFAULT_DESCRIPTIONS.get(
            self.error_code, "Error"
        ).format(retry_after=self.retry_after)
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": description,
        }
        parameters = {
            key: value
            for key, value in (
                ("retry_after", self.retry_after),
                ("migrate_to_chat_id", self.migrate_to_chat_id),
            )
            if value is not None
        }
        if parameters:
            body["parameters"] = parameters
        return body


class _RawFault(Exception):
    """A fault that is not a Telegram JSON error: a raw body, or a dropped connection."""

    def __init__(self, fault: FaultResponse) -> None:
        super().__init__(fault.error_code)
        self.fault = fault


class _ApiError(Exception):
    """Raised by method handlers to answer with a Telegram-style error."""

    def __init__(self, error_code: int, description: str) -> None:
        super().__init__(description)
        self.fault = FaultResponse(error_code, description)


@dataclass(frozen=True)
class FakeMessage:
    """Snapshot of a bot message as the user would see it.

    ``text`` is the visible text or caption (HTML tags stripped, entities decoded), ``html``
    is the raw text/caption exactly as the bot sent it. ``photo``/``document`` hold the
    uploaded bytes, or the file_id/URL string when the bot re-sent an existing file
    (then ``reused`` is True). ``file_id`` is the id Telegram assigned to the media.
    """

    chat_id: int
    message_id: int
    text: str | None
    html: str | None
    reply_markup: dict[str, Any] | None
    method: str
    date: int
    photo: UploadedFile | str | None = None
    document: UploadedFile | str | None = None
    file_id: str | None = None
    reused: bool = False
    venue: dict[str, Any] | None = None
    location: dict[str, Any] | None = None
    edited: bool = False
    params: dict[str, Any] = field(default_factory=dict, repr=False)
    payload: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """Inline keyboard buttons, row by row, flattened."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]

    @property
    def reply_buttons(self) -> list[str]:
        """Texts of a reply (non-inline) keyboard, flattened."""
        rows = (self.reply_markup or {}).get("keyboard") or []
        return [b if isinstance(b, str) else b.get("text", "") for row in rows for b in row]

    def find_button(self, button: str | Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Find an inline button by exact text, then by text prefix, or by predicate."""
        buttons = self.buttons
        if callable(button):
            found = next((b for b in buttons if button(b)), None)
        else:
            found = next((b for b in buttons if b.get("text") == button), None) or next(
                (b for b in buttons if str(b.get("text", "")).startswith(button)), None
            )
        if found is None:
            texts = [b.get("text") for b in buttons]
            msg = f"no inline button {button!r} in message {self.message_id}; buttons: {texts}"
            raise AssertionError(msg)
        return found


@dataclass
class Call:
    """One request the bot made. ``at`` is ``time.monotonic()`` when it arrived.

    Calls are logged when answered, except getUpdates which is logged on arrival (its
    ``response`` stays None until the long poll returns).

    ``response`` is the full JSON body sent back (``{"ok": ..., "result"/"error_code": ...}``);
    ``files`` maps the parameter path (``"photo"``, ``"media[0].media"``) to uploads;
    ``messages`` are the message snapshots this call created or edited.
    """

    method: str
    params: dict[str, Any]
    files: dict[str, UploadedFile]
    at: float
    response: Any = None
    status: int = 200
    token: str = ""
    messages: list[FakeMessage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return isinstance(self.response, dict) and bool(self.response.get("ok"))

    @property
    def result(self) -> Any:
        return self.response.get("result") if isinstance(self.response, dict) else None

    @property
    def error_code(self) -> int | None:
        return None if self.ok else self.status

    @property
    def description(self) -> str | None:
        return self.response.get("description") if isinstance(self.response, dict) else None

    @property
    def chat_id(self) -> int | str | None:
        value = self.params.get("chat_id")
        return value if isinstance(value, int | str) else None

    @property
    def text(self) -> str | None:
        value = self.params.get("text", self.params.get("caption"))
        return value if isinstance(value, str) else None

    @property
    def message(self) -> FakeMessage | None:
        return self.messages[0] if self.messages else None


# ------------------------------------------------------------------------------- helpers


def _utf16_len(text: str) -> int:
    # Telegram entity offsets are measured in UTF-16 code units, not code points.
    return len(text.encode("utf-16-le")) // 2


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _json_default(value: Any) -> Any:
    # Responses never should contain uploads, but a readable fallback beats a 500 error.
    return repr(value)


def _json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _image_size(data: bytes) -> tuple[int, int]:
    if Image is None:
        return 100, 100
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # any undecodable payload just gets a stand-in size
        return 100, 100


def _is_inline_markup(markup: Any) -> bool:
    return isinstance(markup, dict) and "inline_keyboard" in markup


def _command_entities(text: str) -> list[dict[str, Any]]:
    entities = []
    for match in _BOT_COMMAND_RE.finditer(text):
        entities.append(
            {
                "type": "bot_command",
                "offset": _utf16_len(text[: match.start()]),
                "length": _utf16_len(match.group()),
            }
        )
    return entities


class _EntityParseError(ValueError):
    pass


class _HtmlRenderer(HTMLParser):
    """Turns Telegram-flavoured HTML into plain text + entities, rejecting what Telegram does.

    Validating here catches real production bugs (unescaped ``<`` in user names, ``<br>``)
    that a mock-based test would never see.
    """

    _SIMPLE: Final[dict[str, str]] = {
        "b": "bold",
        "strong": "bold",
        "i": "italic",
        "em": "italic",
        "u": "underline",
        "ins": "underline",
        "s": "strikethrough",
        "strike": "strikethrough",
        "del": "strikethrough",
        "tg-spoiler": "spoiler",
        "code": "code",
        "pre": "pre",
    }

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._source = source
        self._line_starts = [0] + [i + 1 for i, ch in enumerate(source) if ch == "\n"]
        self._parts: list[str] = []
        self._length = 0
        self._stack: list[tuple[str, int, dict[str, Any] | None]] = []
        self.entities: list[dict[str, Any]] = []

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def render(self) -> tuple[str, list[dict[str, Any]]]:
        self.feed(self._source)
        self.close()
        if self._stack:
            tag = self._stack[-1][0]
            msg = f'Can\'t find end tag corresponding to start tag "{tag}"'
            raise _EntityParseError(msg)
        entities = sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))
        return self.text, entities

    def _byte_offset(self) -> int:
        line, column = self.getpos()
        index = self._line_starts[line - 1] + column
        return len(self._source[:index].encode())

    def _unsupported(self, tag: str) -> _EntityParseError:
        offset = self._byte_offset()
        return _EntityParseError(f'Unsupported start tag "{tag}" at byte offset {offset}')

    def _entity_for(self, tag: str, attrs: dict[str, str | None]) -> dict[str, Any] | None:
        if tag in self._SIMPLE:
            return {"type": self._SIMPLE[tag]}
        if tag == "span" and attrs.get("class") == "tg-spoiler":
            return {"type": "spoiler"}
        if tag == "a":
            href = attrs.get("href")
            return {"type": "text_link", "url": href} if href else None
        if tag == "blockquote":
            kind = "expandable_blockquote" if "expandable" in attrs else "blockquote"
            return {"type": kind}
        if tag == "tg-emoji":
            return {"type": "custom_emoji", "custom_emoji_id": attrs.get("emoji-id") or ""}
        raise self._unsupported(tag)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "code" and self._stack and self._stack[-1][0] == "pre":
            # <pre><code class="language-x"> is one "pre" entity with a language.
            language = (attributes.get("class") or "").removeprefix("language-")
            pre_entity = self._stack[-1][2]
            if language and pre_entity is not None:
                pre_entity["language"] = language
            self._stack.append((tag, self._length, None))
            return
        self._stack.append((tag, self._length, self._entity_for(tag, attributes)))

    def handle_endtag(self, tag: str) -> None:
        offset = self._byte_offset()
        if not self._stack:
            msg = f'Unexpected end tag "{tag}" at byte offset {offset}'
            raise _EntityParseError(msg)
        open_tag, start, entity = self._stack.pop()
        if open_tag != tag:
            msg = (
                f"Unmatched end tag at byte offset {offset}, "
                f'expected "</{open_tag}>", found "</{tag}>"'
            )
            raise _EntityParseError(msg)
        length = self._length - start
        if entity is not None and length > 0:
            self.entities.append({**entity, "offset": start, "length": length})

    def handle_data(self, data: str) -> None:
        self._parts.append(data)
        self._length += _utf16_len(data)


def _render(
    source: str | None, parse_mode: Any, entities: Any
) -> tuple[str | None, list[dict[str, Any]] | None]:
    """Apply parse_mode like Telegram does; returns the visible text and its entities."""
    if source is None:
        return None, None
    if isinstance(entities, list) and entities:
        return source, entities
    if isinstance(parse_mode, str) and parse_mode.upper() == "HTML":
        try:
            text, parsed = _HtmlRenderer(source).render()
        except _EntityParseError as exc:
            raise _ApiError(400, f"Bad Request: can't parse entities: {exc}") from exc
        return text, parsed or None
    return source, None


def _decode_field(key: str, value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str) or key in _STRING_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _attach(
    value: Any,
    path: str,
    attachments: dict[str, UploadedFile],
    files: dict[str, UploadedFile],
) -> Any:
    """Replace ``attach://name`` references (top level or nested in media) with uploads."""
    if isinstance(value, str) and value.startswith("attach://"):
        upload = attachments.get(value.removeprefix("attach://"))
        if upload is None:
            return value
        files[path] = upload
        return upload
    if isinstance(value, dict):
        return {k: _attach(v, f"{path}.{k}", attachments, files) for k, v in value.items()}
    if isinstance(value, list):
        return [_attach(v, f"{path}[{i}]", attachments, files) for i, v in enumerate(value)]
    return value


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
    raw: dict[str, Any] = {key: _decode_field(key, v) for key, v in request.query.items()}
    attachments: dict[str, UploadedFile] = {}
    if request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                raw.update(body)  # JSON bodies are already typed
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    data = value.file.read()
                    attachments[key] = UploadedFile(value.filename, value.content_type, data)
                else:
                    raw[key] = _decode_field(key, value)
    files: dict[str, UploadedFile] = {}
    params = {key: _attach(value, key, attachments, files) for key, value in raw.items()}
    referenced = set(map(id, files.values()))
    for name, upload in attachments.items():
        # A file part not referenced via attach:// is a direct upload under its field name.
        if id(upload) not in referenced:
            params.setdefault(name, upload)
            files.setdefault(name, upload)
    return params, files


class _Pulse:
    """Wakes every waiter whenever something changes (new call, new update, shutdown)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> bool:
        event = self._event
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            return False
        return True


class _UpdateQueue:
    """getUpdates semantics: increasing ids, confirmation by offset, long polling."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []
        self._next_id = 1
        self._handed_out = 0
        self._pulse = _Pulse()
        self._closed = False

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def all_handed_out(self) -> bool:
        return all(u["update_id"] <= self._handed_out for u in self._pending)

    def put(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": self._next_id, kind: payload}
        self._next_id += 1
        self._pending.append(update)
        self.history.append(update)
        self._pulse.fire()
        return update

    def drop_pending(self) -> None:
        self._pending.clear()

    def open(self) -> None:
        self._closed = False

    def close(self) -> None:
        # Releases long-polling requests so server shutdown does not wait for their timeout.
        self._closed = True
        self._pulse.fire()

    async def take(self, poll_seconds: float) -> dict[str, Any] | None:
        """The oldest pending update, removed (webhook delivery); None after `poll_seconds`."""
        deadline = time.monotonic() + poll_seconds
        while not self._pending:
            remaining = deadline - time.monotonic()
            if self._closed or remaining <= 0:
                return None
            await self._pulse.wait(remaining)
        update = self._pending.pop(0)
        self._handed_out = max(self._handed_out, update["update_id"])
        return update

    def give_back(self, update: dict[str, Any]) -> None:
        """An update a webhook did not take (it was down): first in line again."""
        self._pending.insert(0, update)
        self._pulse.fire()

    def _confirm(self, offset: int | None) -> None:
        if offset is None:
            return
        if offset < 0:
            self._pending = self._pending[offset:]
        else:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]

    async def get(
        self, offset: int | None, limit: int, poll_seconds: float, allowed: list[str] | None
    ) -> list[dict[str, Any]]:
        self._confirm(offset)
        deadline = time.monotonic() + poll_seconds
        while True:
            # Telegram never stores update types the bot did not ask for, so drop them.
            self._pending = [u for u in self._pending if _update_allowed(u, allowed)]
            if self._pending:
                batch = self._pending[:limit]
                self._handed_out = max(self._handed_out, batch[-1]["update_id"])
                return batch
            remaining = deadline - time.monotonic()
            if self._closed or remaining <= 0:
                return []
            await self._pulse.wait(remaining)


def _update_allowed(update: dict[str, Any], allowed: list[str] | None) -> bool:
    kind = next(key for key in update if key != "update_id")
    if not allowed:
        return kind not in _OPT_IN_UPDATES
    return kind in allowed


class _TokenBucket:
    def __init__(self, per_second: float) -> None:
        self.rate = per_second
        self.capacity = max(1.0, per_second)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class _FailRule:
    method: str
    fault: FaultResponse
    chat_id: int | None
    remaining: int

    def matches(self, method: str, params: dict[str, Any]) -> bool:
        if self.method == "*":
            if method == "getUpdates":  # failing polling would just stall every test
                return False
        elif self.method.lower() != method.lower():
            return False
        return self.chat_id is None or _as_int(params.get("chat_id")) == self.chat_id


FaultHook = Callable[[str, dict[str, Any]], FaultResponse | None]


class _FaultInjector:
    """Decides whether a request is answered with an error instead of being handled."""

    def __init__(self) -> None:
        self.rules: list[_FailRule] = []
        self.hook: FaultHook | None = None
        self.blocked: set[int] = set()
        self.limiter: _TokenBucket | None = None
        # Telegram's cap on messages to one group: at most `group_limit` sends per minute
        # (per `group_window` seconds: a benchmark runs time faster).
        self.group_limit: int | None = None
        self.group_window = 60.0
        self.group_sends: dict[int, list[float]] = {}

    def check(self, method: str, params: dict[str, Any]) -> FaultResponse | None:
        if self.hook is not None and (fault := self.hook(method, params)) is not None:
            return fault
        for rule in self.rules:
            if rule.matches(method, params):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self.rules.remove(rule)
                return rule.fault
        is_send = method.startswith("send")
        if is_send and _as_int(params.get("chat_id")) in self.blocked:
            return FaultResponse(403, "Forbidden: bot was blocked by the user")
        if is_send and self.limiter is not None and not self.limiter.take():
            return FaultResponse(429, "Too Many Requests: retry after 1", retry_after=1)
        chat_id = _as_int(params.get("chat_id"))
        if is_send and self.group_limit is not None and chat_id is not None and chat_id < 0:
            now = time.monotonic()
            span = self.group_window
            window = [t for t in self.group_sends.get(chat_id, []) if t > now - span]
            if len(window) >= self.group_limit:
                self.group_sends[chat_id] = window
                wait = max(1, int(window[0] + span - now + 0.999))
                return FaultResponse(429, "", retry_after=wait)
            window.append(now)
            self.group_sends[chat_id] = window
        return None


@dataclass
class _StoredFile:
    kind: str
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes | None
    file_name: str | None = None
    mime_type: str | None = None
    width: int = 0
    height: int = 0

    @property
    def size(self) -> int:
        return len(self.data or b"")

    def photo_size(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "width": self.width,
            "height": self.height,
            "file_size": self.size,
        }

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.size,
        }
        if self.file_name:
            doc["file_name"] = self.file_name
        if self.mime_type:
            doc["mime_type"] = self.mime_type
        return doc

    def file(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.size,
            "file_path": self.file_path,
        }


class _FileStore:
    """Every file Telegram "knows": user uploads and bot uploads, addressable by id/path."""

    _PREFIXES: Final[dict[str, tuple[str, str, str]]] = {
        # kind: (file_id prefix like real ids, directory, default extension)
        "photo": ("AgAC", "photos", ".jpg"),
        "document": ("BQAC", "documents", ".bin"),
        "sticker": ("CAAC", "stickers", ".webp"),
    }

    def __init__(self) -> None:
        self._by_id: dict[str, _StoredFile] = {}
        self._by_path: dict[str, _StoredFile] = {}
        self._counter = itertools.count(1)

    def add(
        self,
        kind: str,
        data: bytes | None,
        file_name: str | None = None,
        mime_type: str | None = None,
    ) -> _StoredFile:
        prefix, directory, extension = self._PREFIXES[kind]
        number = next(self._counter)
        if file_name and "." in file_name:
            extension = "." + file_name.rsplit(".", 1)[1]
        width, height = _image_size(data) if kind == "photo" and data else (0, 0)
        if kind == "sticker":
            width = height = 512
        stored = _StoredFile(
            kind=kind,
            file_id=f"{prefix}{number:05d}{secrets.token_hex(6)}",
            file_unique_id=f"AQAD{number:05d}{secrets.token_hex(2)}",
            file_path=f"{directory}/file_{number}{extension}",
            data=data,
            file_name=file_name,
            mime_type=mime_type,
            width=width,
            height=height,
        )
        self._by_id[stored.file_id] = stored
        self._by_path[stored.file_path] = stored
        return stored

    def get(self, file_id: Any) -> _StoredFile | None:
        return self._by_id.get(file_id) if isinstance(file_id, str) else None

    def by_path(self, path: str) -> _StoredFile | None:
        return self._by_path.get(path)


# ----------------------------------------------------------------------------- chat views


MessagePredicate = Callable[[FakeMessage], bool] | str | None
ButtonSelector = str | Callable[[dict[str, Any]], bool]


def _message_matcher(predicate: MessagePredicate) -> Callable[[FakeMessage], bool]:
    if predicate is None:
        return lambda _message: True
    if isinstance(predicate, str):
        needle = predicate
        return lambda m: needle in (m.text or "") or needle in (m.html or "")
    return predicate


class _ChatView:
    """What one chat looks like from the user side; tracks "since the last user action"."""

    def __init__(self, tg: FakeTelegram, chat_id: int) -> None:
        self._tg = tg
        self.id = chat_id
        self._cursor = 0

    def _mark(self) -> None:
        # Bot output that appears after this point is the answer to the coming action.
        self._cursor = len(self._tg.calls)

    def messages(self) -> list[FakeMessage]:
        return self._tg.messages_in(self.id)

    def last_message(self) -> FakeMessage:
        messages = self._tg.messages_in(self.id)
        if not messages:
            msg = f"the bot has no messages in chat {self.id}\n{self._tg.dump()}"
            raise AssertionError(msg)
        return messages[-1]

    async def wait_message(
        self,
        predicate: MessagePredicate = None,
        # The public helpers take `timeout` so tests read naturally; it bounds a wait on the
        # fake's own state, so wrapping callers in asyncio.timeout() would add nothing.
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> FakeMessage:
        """Next bot message (or edit) in this chat after the last action, optionally matching.

        Each returned message advances the cursor, so consecutive calls walk the replies.
        A string predicate matches a substring of the visible text/caption or raw HTML.
        """
        match = _message_matcher(predicate)
        found: list[FakeMessage] = []

        def check(call: Call) -> bool:
            if not call.ok:
                return False
            for message in call.messages:
                if message.chat_id == self.id and match(message):
                    found.append(message)
                    return True
            return False

        what = f"a bot message in chat {self.id}" + (
            f" matching {predicate!r}" if predicate is not None else ""
        )
        index, _call = await self._tg._wait_call(check, self._cursor, timeout, what)
        self._cursor = index + 1
        return found[-1]

    def _resolve(self, message: FakeMessage | Call | int) -> FakeMessage:
        if isinstance(message, FakeMessage):
            return message
        if isinstance(message, Call):
            if message.message is None:
                msg = f"call {message.method} produced no message"
                raise AssertionError(msg)
            return message.message
        current = self._tg._bot_messages.get(self.id, {}).get(message)
        if current is None:
            msg = f"no bot message {message} in chat {self.id}"
            raise AssertionError(msg)
        return current

    async def _press(
        self,
        user: FakeUser,
        message: FakeMessage | Call | int,
        button: ButtonSelector,
        within: float,
    ) -> Call:
        snapshot = self._resolve(message)
        found = snapshot.find_button(button)
        data = found.get("callback_data")
        if data is None:
            msg = f"button {found.get('text')!r} has no callback_data: {found}"
            raise AssertionError(msg)
        return await self._callback(user, snapshot.chat_id, snapshot.message_id, data, within)

    async def _callback(
        self, user: FakeUser, chat_id: int, message_id: int, data: str, within: float
    ) -> Call:
        tg = self._tg
        query_id = tg._new_callback_id()
        current = tg._bot_messages.get(chat_id, {}).get(message_id)
        # Telegram sends an InaccessibleMessage (date 0) when the message is gone.
        message = (
            current.payload
            if current is not None
            else {"chat": tg._chat_payload(chat_id), "message_id": message_id, "date": 0}
        )
        self._mark()
        tg.push_update(
            "callback_query",
            {
                "id": query_id,
                "from": user.as_user(),
                "chat_instance": f"{chat_id * 7919 & 0xFFFFFFFFFFFF}",
                "data": data,
                "message": message,
            },
        )
        _index, call = await tg._wait_call(
            lambda c: (
                c.method == "answerCallbackQuery" and c.params.get("callback_query_id") == query_id
            ),
            len(tg.calls),
            within,
            f"answerCallbackQuery for callback data {data!r} (message {message_id})",
        )
        return call


class FakeUser(_ChatView):
    """A Telegram user in their private chat with the bot (chat id == user id)."""

    def __init__(
        self,
        tg: FakeTelegram,
        user_id: int,
        first_name: str = "Test",
        language_code: str | None = "ru",
        username: str | None = None,
        last_name: str | None = None,
    ) -> None:
        super().__init__(tg, user_id)
        self.first_name = first_name
        self.language_code = language_code
        self.username = username
        self.last_name = last_name

    def as_user(self) -> dict[str, Any]:
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if (value := getattr(self, key)) is not None:
                user[key] = value
        return user

    def as_chat(self) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": self.id, "type": "private", "first_name": self.first_name}
        for key in ("last_name", "username"):
            if (value := getattr(self, key)) is not None:
                chat[key] = value
        return chat

    async def send(self, text: str, reply_to: FakeMessage | int | None = None) -> dict[str, Any]:
        self._mark()
        entities = _command_entities(text)
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        return self._tg._user_message(self.id, self, content, reply_to)

    async def send_photo(self, data: bytes, caption: str | None = None) -> dict[str, Any]:
        self._mark()
        return self._tg._user_photo(self.id, self, data, caption)

    async def send_document(
        self,
        data: bytes,
        file_name: str,
        mime_type: str = "application/octet-stream",
        caption: str | None = None,
    ) -> dict[str, Any]:
        self._mark()
        return self._tg._user_document(self.id, self, data, file_name, mime_type, caption)

    async def send_contact(
        self, phone_number: str, user_id: int | None = None, first_name: str | None = None
    ) -> dict[str, Any]:
        """Share a contact; by default the user's own (what a request_contact button sends)."""
        self._mark()
        contact: dict[str, Any] = {
            "phone_number": phone_number,
            "first_name": first_name or self.first_name,
            "user_id": self.id if user_id is None else user_id,
        }
        if self.last_name and first_name is None:
            contact["last_name"] = self.last_name
        return self._tg._user_message(self.id, self, {"contact": contact}, None)

    async def send_location(self, latitude: float, longitude: float) -> dict[str, Any]:
        """Share a location (what a request_location button sends)."""
        self._mark()
        location = {"latitude": latitude, "longitude": longitude}
        return self._tg._user_message(self.id, self, {"location": location}, None)

    async def send_sticker(self, emoji: str = "👍") -> dict[str, Any]:
        self._mark()
        stored = self._tg._files.add("sticker", b"RIFF\x00\x00\x00\x00WEBP", mime_type="image/webp")
        sticker = {
            **stored.photo_size(),
            "type": "regular",
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
        }
        return self._tg._user_message(self.id, self, {"sticker": sticker}, None)

    async def press(
        self,
        message: FakeMessage | Call | int,
        button: ButtonSelector,
        timeout: float = 5.0,  # noqa: ASYNC109 - see _ChatView.wait_message
    ) -> Call:
        """Press an inline button; returns the bot's answerCallbackQuery call."""
        return await self._press(self, message, button, timeout)

    async def press_data(
        self,
        message_id: int,
        data: str,
        chat_id: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - see _ChatView.wait_message
    ) -> Call:
        """Send arbitrary (forged or replayed) callback data as if pressed on ``message_id``."""
        return await self._callback(
            self, self.id if chat_id is None else chat_id, message_id, data, timeout
        )

    async def block(self) -> dict[str, Any]:
        """The user blocks the bot: sends fail with 403 and a my_chat_member update arrives."""
        self._tg.block(self.id)
        return self._tg._my_chat_member(self, "member", "kicked")

    async def unblock(self) -> dict[str, Any]:
        self._tg.unblock(self.id)
        return self._tg._my_chat_member(self, "kicked", "member")


class FakeGroup(_ChatView):
    """A supergroup (negative id) where several users talk to the bot."""

    def __init__(self, tg: FakeTelegram, chat_id: int, title: str = "Staff") -> None:
        super().__init__(tg, chat_id)
        self.title = title

    def as_chat(self) -> dict[str, Any]:
        return {"id": self.id, "type": "supergroup", "title": self.title}

    def set_member(self, user: FakeUser | int, status: str = "member") -> None:
        self._tg.set_member(self.id, user if isinstance(user, int) else user.id, status)

    async def send(
        self, user: FakeUser, text: str, reply_to: FakeMessage | int | None = None
    ) -> dict[str, Any]:
        self._mark()
        entities = _command_entities(text)
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        return self._tg._user_message(self.id, user, content, reply_to)

    async def send_photo(
        self, user: FakeUser, data: bytes, caption: str | None = None
    ) -> dict[str, Any]:
        self._mark()
        return self._tg._user_photo(self.id, user, data, caption)

    async def press(
        self,
        user: FakeUser,
        message: FakeMessage | Call | int,
        button: ButtonSelector,
        timeout: float = 5.0,  # noqa: ASYNC109 - see _ChatView.wait_message
    ) -> Call:
        return await self._press(user, message, button, timeout)

    async def press_data(
        self,
        user: FakeUser,
        message_id: int,
        data: str,
        timeout: float = 5.0,  # noqa: ASYNC109 - see _ChatView.wait_message
    ) -> Call:
        return await self._callback(user, self.id, message_id, data, timeout)


# --------------------------------------------------------------------------------- server


Handler = Callable[[Call], Awaitable[Any]]


class FakeTelegram:
    """The fake Bot API server plus the world state (chats, messages, files, updates)."""

    def __init__(
        self,
        token: str = "123456:TEST",
        *,
        username: str = "loyalty_test_bot",
        first_name: str = "Loyalty Test Bot",
        strict_chats: bool = False,
    ) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.username = username
        self.first_name = first_name
        self.strict_chats = strict_chats
        self.calls: list[Call] = []
        self._queue = _UpdateQueue()
        self._faults = _FaultInjector()
        self._files = _FileStore()
        self._calls_pulse = _Pulse()
        self._chats_pulse = _Pulse()
        self._chats_version = 0
        self._users: dict[int, FakeUser] = {}
        self._groups: dict[int, FakeGroup] = {}
        self._members: dict[tuple[int, int], str] = {}
        self._bot_messages: dict[int, dict[int, FakeMessage]] = {}
        self._user_messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._open_callbacks: set[str] = set()
        self._callback_ids = itertools.count(1)
        self._media_groups = itertools.count(13_000_000_000)
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._menu_buttons: dict[int | None, dict[str, Any]] = {}  # None: every private chat
        self._webhook_url = ""
        self.latency = 0.0  # seconds each API call takes to reach the server (set_latency)
        self._inflight = 0
        self._last_activity = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._handlers: dict[str, tuple[str, Handler]] = {
            name.lower(): (name, handler)
            for name, handler in {
                "getMe": self._get_me,
                "getUpdates": self._get_updates,
                "setWebhook": self._set_webhook,
                "deleteWebhook": self._delete_webhook,
                "getWebhookInfo": self._get_webhook_info,
                "setMyCommands": self._set_my_commands,
                "deleteMyCommands": self._delete_my_commands,
                "getMyCommands": self._get_my_commands,
                "setChatMenuButton": self._set_chat_menu_button,
                "getChatMenuButton": self._get_chat_menu_button,
                "sendMessage": self._send_message,
                "sendPhoto": self._send_photo,
                "sendDocument": self._send_document,
                "sendVenue": self._send_venue,
                "sendLocation": self._send_location,
                "sendMediaGroup": self._send_media_group,
                "sendChatAction": self._send_chat_action,
                "editMessageText": self._edit_message_text,
                "editMessageCaption": self._edit_message_caption,
                "editMessageReplyMarkup": self._edit_message_reply_markup,
                "deleteMessage": self._delete_message,
                "answerCallbackQuery": self._answer_callback_query,
                "getChatMember": self._get_chat_member,
                "getChat": self._get_chat,
                "getFile": self._get_file,
                "close": self._true,
                "logOut": self._true,
            }.items()
        }

    # ---------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        if self._port is None:
            msg = "FakeTelegram is not started"
            raise RuntimeError(msg)
        return f"http://127.0.0.1:{self._port}"

    @property
    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }

    @property
    def updates(self) -> list[dict[str, Any]]:
        """Every update ever enqueued (delivered or not), for assertions and debugging."""
        return self._queue.history

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        routes: Callable[[web.Application], None] | None = None,
    ) -> None:
        """Serve the Bot API on host:port (0: a free port); `routes` adds more to the same
        server (the demo's page)."""
        if self._runner is not None:
            msg = "FakeTelegram is already started"
            raise RuntimeError(msg)
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/bot{token}/{method}", self._on_api_request)
        app.router.add_get("/file/bot{token}/{path:.+}", self._on_file_request)
        if routes is not None:
            routes(app)
        # A short shutdown timeout keeps test teardown fast even if a client hung up.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self._port = site.port  # the real port bound to 0, read from the server socket
        self._queue.open()

    # ------------------------------------------------------- webhook delivery

    def start_webhook_delivery(
        self, targets: list[str], secret: str, *, concurrency: int = 8
    ) -> None:
        """Push updates to webhooks instead of waiting for getUpdates, as Telegram does, and as
        a reverse proxy in front of several workers spreads them: update n goes to
        `targets[n % len(targets)]`, up to `concurrency` at a time. An update a worker does not
        answer with 200 (it is down, restarting) is retried on the next target."""
        self.stop_webhook_delivery()
        self._webhook_targets = list(targets)
        self._webhook_delivered: list[tuple[int, str, int]] = []  # (update id, target, status)
        self._webhook_task = asyncio.create_task(self._deliver_updates(secret, concurrency))

    def stop_webhook_delivery(self) -> None:
        task = getattr(self, "_webhook_task", None)
        if task is not None:
            task.cancel()
            self._webhook_task = None

    @property
    def webhook_deliveries(self) -> list[tuple[int, str, int]]:
        """(update id, target URL, HTTP status) of every delivery attempt, in order."""
        return list(getattr(self, "_webhook_delivered", []))

    async def _deliver_updates(self, secret: str, concurrency: int) -> None:
        import aiohttp

        slots = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task[None]] = set()
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
        counter = itertools.count()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

            async def deliver(update: dict[str, Any], first: int) -> None:
                try:
                    for attempt in range(len(self._webhook_targets) * 20):
                        target = self._webhook_targets[
                            (first + attempt) % len(self._webhook_targets)
                        ]
                        status = 0
                        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                            async with http.post(target, json=update, headers=headers) as answer:
                                status = answer.status
                        self._webhook_delivered.append((update["update_id"], target, status))
                        if status == 200:
                            self._last_activity = time.monotonic()
                            return
                        await asyncio.sleep(0.1)
                    self._queue.give_back(update)
                finally:
                    slots.release()

            try:
                while True:
                    await slots.acquire()
                    update = await self._queue.take(1.0)
                    if update is None:
                        slots.release()
                        continue
                    task = asyncio.create_task(deliver(update, next(counter)))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            finally:  # stopped: deliveries in flight end before their HTTP session closes
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        self.stop_webhook_delivery()
        if self._runner is None:
            return
        self._queue.close()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ world

    def user(
        self,
        user_id: int,
        first_name: str = "Test",
        language_code: str | None = "ru",
        username: str | None = None,
        last_name: str | None = None,
    ) -> FakeUser:
        """Register (or re-profile) a user; the same id always yields the same object."""
        if user_id <= 0:
            msg = f"user ids are positive, got {user_id}"
            raise ValueError(msg)
        existing = self._users.get(user_id)
        if existing is None:
            existing = self._users[user_id] = FakeUser(self, user_id)
        existing.first_name = first_name
        existing.language_code = language_code
        existing.username = username
        existing.last_name = last_name
        return existing

    def group(self, chat_id: int, title: str = "Staff") -> FakeGroup:
        if chat_id >= 0:
            msg = f"group chat ids are negative, got {chat_id}"
            raise ValueError(msg)
        existing = self._groups.get(chat_id)
        if existing is None:
            existing = self._groups[chat_id] = FakeGroup(self, chat_id, title)
        existing.title = title
        return existing

    def set_member(self, chat_id: int, user_id: int, status: str = "member") -> None:
        try:
            self._members[(chat_id, user_id)] = _MEMBER_STATUSES[status]
        except KeyError:
            msg = f"unknown member status {status!r}; use one of {sorted(_MEMBER_STATUSES)}"
            raise ValueError(msg) from None

    def push_update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Enqueue a raw update of any kind (escape hatch for update types without helpers)."""
        self._last_activity = time.monotonic()
        return self._queue.put(kind, payload)

    # ---------------------------------------------------------------- faults

    def fail_next(
        self,
        method: str,
        error_code: int,
        description: str = "",
        retry_after: int | None = None,
        chat_id: int | None = None,
        times: int = 1,
        *,
        raw_body: str | None = None,
        content_type: str = "text/html",
        reset: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with an error.

        ``method="*"`` matches any method except getUpdates; ``chat_id`` narrows the rule to
        one chat. An empty description gets Telegram's usual text for the code. ``raw_body``
        answers with that text instead of a JSON error (a proxy's HTML page, broken JSON);
        ``reset`` drops the connection without answering. The request is not carried out.
        """
        if times < 1:
            msg = f"times must be >= 1, got {times}"
            raise ValueError(msg)
        fault = FaultResponse(
            error_code,
            description,
            retry_after,
            raw_body=raw_body,
            content_type=content_type,
            reset=reset,
        )
        self._faults.rules.append(_FailRule(method, fault, chat_id, times))

    def clear_faults(self) -> None:
        """Forget every `fail_next` rule not used up yet."""
        self._faults.rules.clear()

    def set_fault_hook(self, hook: FaultHook | None) -> None:
        """Call ``hook(method, params)`` for every request (getUpdates too) before handling;
        a returned FaultResponse is sent instead of the normal result. ``None`` removes it."""
        self._faults.hook = hook

    def block(self, user_id: int) -> None:
        """Every send* to this chat now fails with 403 (no update; see FakeUser.block)."""
        self._faults.blocked.add(user_id)

    def unblock(self, user_id: int) -> None:
        self._faults.blocked.discard(user_id)

    @property
    def in_flight(self) -> int:
        """API calls (other than getUpdates) that arrived and are not answered yet."""
        return self._inflight

    def set_latency(self, seconds: float) -> None:
        """Every API call but getUpdates takes this long to reach the server (and take effect
        there): a far-away Bot API, for measuring what a person at the till waits."""
        self.latency = seconds

    def set_group_rate_limit(self, per_minute: int | None, *, window: float = 60.0) -> None:
        """Telegram's cap on one group: at most ``per_minute`` send* calls to a group chat
        (negative id) in any 60 s; more get 429 with the seconds until a slot frees up.
        ``window`` shortens the minute for a benchmark that runs time faster."""
        self._faults.group_limit = per_minute or None
        self._faults.group_window = window
        self._faults.group_sends.clear()

    def set_rate_limit(self, per_second: float | None) -> None:
        """Global token bucket (burst = one second's worth) on send* methods; requests over
        it get 429 with retry_after=1. ``None`` or 0 disables the limit."""
        self._faults.limiter = _TokenBucket(per_second) if per_second else None

    # ------------------------------------------------------------- inspection

    def sent(self, chat_id: int | None = None, method: str | None = None) -> list[Call]:
        """Successful message-producing calls (send*/edit*), optionally filtered."""
        return [
            call
            for call in self.calls
            if call.ok
            and (call.method in _MESSAGE_METHODS or call.method.startswith("edit"))
            and (chat_id is None or call.chat_id == chat_id)
            and (method is None or call.method.lower() == method.lower())
        ]

    def messages_in(self, chat_id: int) -> list[FakeMessage]:
        """Current (post-edit, non-deleted) bot messages in a chat, oldest first."""
        messages = self._bot_messages.get(chat_id, {})
        return [messages[mid] for mid in sorted(messages)]

    async def wait_for(
        self,
        predicate: Callable[[Call], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - see _ChatView.wait_message
        *,
        after: int = 0,
    ) -> Call:
        """First call, already recorded or future, that matches ``predicate`` (looking only at
        calls from index ``after`` of ``calls`` on: ``after=len(tg.calls)`` waits for a new one)."""
        _index, call = await self._wait_call(predicate, after, timeout, "a matching call")
        return call

    async def wait_for_idle(
        self,
        quiet: float = 0.2,
        timeout: float = 5.0,  # noqa: ASYNC109 - see _ChatView.wait_message
    ) -> None:
        """Wait until every update was fetched and the bot made no call for ``quiet`` s."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            silent_for = now - self._last_activity
            busy = self._inflight > 0 or not self._queue.all_handed_out
            if not busy and silent_for >= quiet:
                return
            if now >= deadline:
                msg = (
                    f"bot not idle after {timeout}s (in flight: {self._inflight}, "
                    f"undelivered updates: {not self._queue.all_handed_out})\n{self.dump()}"
                )
                raise AssertionError(msg)
            await asyncio.sleep(min(max(quiet - silent_for, 0.01), deadline - now))

    def dump(self, last: int = 20) -> str:
        """Human-readable tail of the call log (long-polling noise left out)."""
        calls = [c for c in self.calls if c.method != "getUpdates"][-last:]
        lines = [f"last {len(calls)} calls (of {len(self.calls)} incl. getUpdates):"]
        for call in calls:
            status = "ok" if call.ok else f"{call.status} {call.description}"
            text = (call.text or "")[:80]
            lines.append(f"  {call.method} chat={call.chat_id} {status} text={text!r}")
        return "\n".join(lines)

    async def _wait_call(
        self,
        predicate: Callable[[Call], bool],
        start: int,
        within: float,
        what: str,
    ) -> tuple[int, Call]:
        deadline = time.monotonic() + within
        index = start
        while True:
            # No await between scanning and waiting, so no call can slip through unseen.
            while index < len(self.calls):
                if predicate(self.calls[index]):
                    return index, self.calls[index]
                index += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                msg = f"timed out after {within}s waiting for {what}\n{self.dump()}"
                raise AssertionError(msg)
            await self._calls_pulse.wait(remaining)

    # ------------------------------------------------------------------- HTTP

    async def _on_api_request(self, request: web.Request) -> web.Response:
        params, files = await _read_params(request)
        name = request.match_info["method"]
        entry = self._handlers.get(name.lower())
        call = Call(
            method=entry[0] if entry else name,
            params=params,
            files=files,
            at=time.monotonic(),
            token=request.match_info["token"],
        )
        polling = call.method == "getUpdates"
        if polling:
            # Long polls are logged on arrival, so waiting for a getUpdates call means "polling
            # has started" rather than "a poll timed out"; the response is filled in later.
            self._record(call)
        else:
            self._inflight += 1
            if self.latency:  # the network between the bot and Telegram (set_latency)
                await asyncio.sleep(self.latency)
                call.at = time.monotonic()  # when it reached "Telegram" and took effect
        raw: FaultResponse | None = None
        try:
            call.status, call.response = await self._execute(call, entry)
        except _RawFault as exc:
            raw = exc.fault
            call.status = raw.error_code
            call.response = {"ok": False, "error_code": raw.error_code, "raw": raw.raw_body}
        finally:
            if not polling:
                self._inflight -= 1
        # Handing out updates counts as activity: the bot is about to react to them.
        if not polling or call.result:
            self._last_activity = time.monotonic()
        if not polling:
            self._record(call)
        if raw is not None and raw.reset:
            if request.transport is not None:
                request.transport.abort()  # the client sees the connection drop
            return web.Response(status=499)  # written nowhere
        if raw is not None:
            return web.Response(
                text=raw.raw_body or "", status=raw.error_code, content_type=raw.content_type
            )
        return web.json_response(call.response, status=call.status, dumps=_json_dumps)

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._calls_pulse.fire()

    async def _execute(
        self, call: Call, entry: tuple[str, Handler] | None
    ) -> tuple[int, dict[str, Any]]:
        if call.token != self.token:
            return 401, FaultResponse(401, "Unauthorized").to_body()
        if entry is None:
            body = {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
            return 404, body
        fault = self._faults.check(call.method, call.params)
        if fault is not None:
            if fault.raw_body is not None or fault.reset:
                raise _RawFault(fault)
            return fault.error_code, fault.to_body()
        try:
            result = await entry[1](call)
        except _ApiError as exc:
            call.messages.clear()
            return exc.fault.error_code, exc.fault.to_body()
        except Exception as exc:
            # A bug in the fake must be loud, not look like a flaky Telegram.
            logger.exception("FakeTelegram handler for %s crashed", call.method)
            body = {"ok": False, "error_code": 500, "description": f"Fake crashed: {exc!r}"}
            return 500, body
        return 200, {"ok": True, "result": result}

    async def _on_file_request(self, request: web.Request) -> web.Response:
        stored = self._files.by_path(request.match_info["path"])
        if request.match_info["token"] != self.token or stored is None or stored.data is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        content_type = stored.mime_type or "application/octet-stream"
        return web.Response(body=stored.data, content_type=content_type)

    # ------------------------------------------------------- what users see

    def note_chat_change(self) -> None:
        """Something a client shows changed (a message, a user's language): wake the pages
        waiting in `wait_chats_change`."""
        self._chats_version += 1
        self._chats_pulse.fire()

    @property
    def chats_version(self) -> int:
        """Grows whenever a message appears in a chat, is edited or is deleted."""
        return self._chats_version

    async def wait_chats_change(self, since: int, timeout: float) -> int:  # noqa: ASYNC109
        """The chats' version once it is past `since`, or the current one after `timeout`."""
        deadline = time.monotonic() + timeout
        while self._chats_version <= since:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await self._chats_pulse.wait(remaining):
                break
        return self._chats_version

    def chat_log(self, chat_id: int) -> list[tuple[dict[str, Any], FakeMessage | None]]:
        """What a chat shows, oldest first: each message's payload (edits applied, deleted
        ones gone) with the bot's snapshot of it, or None for a user's message."""
        entries: list[tuple[int, dict[str, Any], FakeMessage | None]] = [
            (message_id, message.payload, message)
            for message_id, message in self._bot_messages.get(chat_id, {}).items()
        ]
        entries += [
            (message_id, payload, None)
            for (chat, message_id), payload in self._user_messages.items()
            if chat == chat_id
        ]
        entries.sort(key=lambda entry: entry[0])
        return [(payload, snapshot) for _id, payload, snapshot in entries]

    def commands_for(self, chat_id: int, language: str | None) -> list[dict[str, Any]]:
        """The command menu a client shows in a chat, resolved as Telegram does: the chat's
        own scope, then all private chats or all groups, then the default; each first in the
        user's language, then for every language."""
        kind = "all_private_chats" if chat_id > 0 else "all_group_chats"
        scopes = [{"type": "chat", "chat_id": chat_id}, {"type": kind}, {"type": "default"}]
        for scope in scopes:
            for lang in (language or "", ""):
                commands = self._commands.get((json.dumps(scope, sort_keys=True), lang))
                if commands:
                    return commands
        return []

    def file_content(self, file_id: str) -> tuple[bytes, str, str | None] | None:
        """A stored file's bytes, MIME type and file name (documents), by file_id."""
        stored = self._files.get(file_id)
        if stored is None or stored.data is None:
            return None
        return stored.data, stored.mime_type or "application/octet-stream", stored.file_name

    # ------------------------------------------------------------ chat state

    def _chat_payload(self, chat_id: int) -> dict[str, Any]:
        if chat_id in self._users:
            return self._users[chat_id].as_chat()
        if chat_id in self._groups:
            return self._groups[chat_id].as_chat()
        if self.strict_chats or chat_id == 0:
            raise _ApiError(400, "Bad Request: chat not found")
        # Lenient default: proactive-delivery tests may target ids seeded only in the DB.
        if chat_id > 0:
            return self.user(chat_id, first_name=f"User{chat_id}").as_chat()
        return self.group(chat_id, title=f"Group {chat_id}").as_chat()

    def _target_chat(self, call: Call) -> int:
        raw = call.params.get("chat_id")
        if raw is None or raw == "":
            raise _ApiError(400, "Bad Request: chat_id is empty")
        chat_id = _as_int(raw)
        if chat_id is None:
            raise _ApiError(400, "Bad Request: chat not found")
        self._chat_payload(chat_id)
        return chat_id

    def _next_message_id(self, chat_id: int) -> int:
        # Ids are per chat and shared by user and bot messages, as in real private chats.
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _new_callback_id(self) -> str:
        query_id = f"{self.bot_id}{next(self._callback_ids):08d}"
        self._open_callbacks.add(query_id)
        return query_id

    def _message_payload(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        bot_message = self._bot_messages.get(chat_id, {}).get(message_id)
        if bot_message is not None:
            return bot_message.payload
        return self._user_messages.get((chat_id, message_id))

    def _reply_payload(self, chat_id: int, target: FakeMessage | int) -> dict[str, Any]:
        message_id = target.message_id if isinstance(target, FakeMessage) else target
        payload = self._message_payload(chat_id, message_id)
        if payload is None and isinstance(target, FakeMessage):
            payload = target.payload
        if payload is None:
            msg = f"no message {message_id} in chat {chat_id} to reply to"
            raise ValueError(msg)
        # Telegram nests only one level of reply_to_message.
        return {k: v for k, v in payload.items() if k != "reply_to_message"}

    def _user_message(
        self,
        chat_id: int,
        user: FakeUser,
        content: dict[str, Any],
        reply_to: FakeMessage | int | None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": self._chat_payload(chat_id),
            "from": user.as_user(),
            **content,
        }
        if reply_to is not None:
            message["reply_to_message"] = self._reply_payload(chat_id, reply_to)
        self._user_messages[(chat_id, message["message_id"])] = message
        self.note_chat_change()
        return self.push_update("message", message)

    def _user_photo(
        self, chat_id: int, user: FakeUser, data: bytes, caption: str | None
    ) -> dict[str, Any]:
        stored = self._files.add("photo", data, mime_type="image/jpeg")
        content: dict[str, Any] = {"photo": [stored.photo_size()]}
        if caption is not None:
            content["caption"] = caption
        return self._user_message(chat_id, user, content, None)

    def _user_document(
        self,
        chat_id: int,
        user: FakeUser,
        data: bytes,
        file_name: str,
        mime_type: str,
        caption: str | None,
    ) -> dict[str, Any]:
        stored = self._files.add("document", data, file_name=file_name, mime_type=mime_type)
        content: dict[str, Any] = {"document": stored.document()}
        if caption is not None:
            content["caption"] = caption
        return self._user_message(chat_id, user, content, None)

    def _my_chat_member(self, user: FakeUser, old: str, new: str) -> dict[str, Any]:
        def member(status: str) -> dict[str, Any]:
            data: dict[str, Any] = {"status": status, "user": self.bot_user}
            if status == "kicked":
                data["until_date"] = 0
            return data

        payload = {
            "chat": user.as_chat(),
            "from": user.as_user(),
            "date": int(time.time()),
            "old_chat_member": member(old),
            "new_chat_member": member(new),
        }
        return self.push_update("my_chat_member", payload)

    # ------------------------------------------------------ message building

    def _emit(
        self,
        call: Call,
        chat_id: int,
        content: dict[str, Any],
        **snapshot: Any,
    ) -> FakeMessage:
        """Create a bot message: allocate an id, build the API payload, store a snapshot."""
        params = call.params
        markup = params.get("reply_markup")
        reply = self._bot_reply_target(chat_id, params)
        payload: dict[str, Any] = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": self._chat_payload(chat_id),
            "from": self.bot_user,
            **{key: value for key, value in content.items() if value is not None},
        }
        if reply is not None:
            payload["reply_to_message"] = reply
        if _is_inline_markup(markup):  # reply keyboards are not echoed back by Telegram
            payload["reply_markup"] = markup
        snapshot.setdefault("text", None)
        snapshot.setdefault("html", None)
        message = FakeMessage(
            chat_id=chat_id,
            message_id=payload["message_id"],
            reply_markup=markup if isinstance(markup, dict) else None,
            method=call.method,
            date=payload["date"],
            params=params,
            payload=payload,
            **snapshot,
        )
        self._bot_messages.setdefault(chat_id, {})[message.message_id] = message
        call.messages.append(message)
        self.note_chat_change()
        return message

    def _bot_reply_target(self, chat_id: int, params: dict[str, Any]) -> dict[str, Any] | None:
        reply_parameters = params.get("reply_parameters")
        allow_missing = bool(params.get("allow_sending_without_reply"))
        if isinstance(reply_parameters, dict):
            message_id = _as_int(reply_parameters.get("message_id"))
            allow_missing = allow_missing or bool(
                reply_parameters.get("allow_sending_without_reply")
            )
        else:
            message_id = _as_int(params.get("reply_to_message_id"))
        if message_id is None:
            return None
        payload = self._message_payload(chat_id, message_id)
        if payload is None:
            if allow_missing:
                return None
            raise _ApiError(400, "Bad Request: message to be replied not found")
        return {k: v for k, v in payload.items() if k != "reply_to_message"}

    def _caption(self, params: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]] | None]:
        caption, entities = _render(
            params.get("caption"), params.get("parse_mode"), params.get("caption_entities")
        )
        if caption is not None and len(caption) > _CAPTION_LIMIT:
            raise _ApiError(400, "Bad Request: message caption is too long")
        return caption, entities

    def _media(self, value: Any, kind: str) -> tuple[_StoredFile, bool, UploadedFile | str]:
        """Resolve an upload, a known file_id (reuse) or a URL into a stored file."""
        if isinstance(value, UploadedFile):
            if kind == "document":
                mime = value.content_type
                if mime == "application/octet-stream":
                    mime = mimetypes.guess_type(value.filename)[0] or mime
                stored = self._files.add(kind, value.data, value.filename, mime)
            else:
                stored = self._files.add(kind, value.data, mime_type="image/jpeg")
            return stored, False, value
        if not value:
            raise _ApiError(400, f"Bad Request: there is no {kind} in the request")
        known = self._files.get(value)
        if known is not None:
            if known.kind != kind:
                raise _ApiError(400, "Bad Request: type of file mismatch")
            return known, True, value
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            file_name = value.rsplit("/", 1)[-1] or None
            return (
                self._files.add(kind, None, file_name if kind == "document" else None),
                False,
                value,
            )
        raise _ApiError(400, _BAD_FILE_ID)

    # ------------------------------------------------------------ handlers

    async def _true(self, call: Call) -> bool:
        return True

    async def _get_me(self, call: Call) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _get_updates(self, call: Call) -> list[dict[str, Any]]:
        if self._webhook_url:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        params = call.params
        limit = min(max(_as_int(params.get("limit")) or 100, 1), 100)
        timeout = min(float(_as_int(params.get("timeout")) or 0), _MAX_POLL_TIMEOUT)
        allowed = params.get("allowed_updates")
        allowed_list = allowed if isinstance(allowed, list) else None
        return await self._queue.get(_as_int(params.get("offset")), limit, timeout, allowed_list)

    async def _set_webhook(self, call: Call) -> bool:
        url = call.params.get("url")
        if not isinstance(url, str) or not url.startswith("https://"):
            raise _ApiError(400, "Bad Request: bad webhook: HTTPS url must be provided for webhook")
        self._webhook_url = url
        if call.params.get("drop_pending_updates"):
            self._queue.drop_pending()
        return True

    async def _delete_webhook(self, call: Call) -> bool:
        self._webhook_url = ""
        if call.params.get("drop_pending_updates"):
            self._queue.drop_pending()
        return True

    async def _get_webhook_info(self, call: Call) -> dict[str, Any]:
        return {
            "url": self._webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": self._queue.pending_count,
        }

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        language = params.get("language_code") or ""
        return json.dumps(scope, sort_keys=True), language

    async def _set_my_commands(self, call: Call) -> bool:
        commands = call.params.get("commands")
        if not isinstance(commands, list):
            raise _ApiError(400, 'Bad Request: parameter "commands" is required')
        self._commands[self._commands_key(call.params)] = commands
        return True

    async def _delete_my_commands(self, call: Call) -> bool:
        self._commands.pop(self._commands_key(call.params), None)
        return True

    async def _get_my_commands(self, call: Call) -> list[dict[str, Any]]:
        return self._commands.get(self._commands_key(call.params), [])

    async def _set_chat_menu_button(self, call: Call) -> bool:
        button = call.params.get("menu_button") or {"type": "default"}
        if not isinstance(button, dict) or button.get("type") not in (
            "default",
            "commands",
            "web_app",
        ):
            raise _ApiError(400, "Bad Request: unsupported menu button type")
        if button["type"] == "web_app":
            url = (button.get("web_app") or {}).get("url", "")
            # Telegram wants HTTPS; a local address is what this emulator's own demo serves.
            if not isinstance(url, str) or not url.startswith(("https://", "http://127.0.0.1")):
                raise _ApiError(400, "Bad Request: BUTTON_URL_INVALID")
        chat = call.params.get("chat_id")
        self._menu_buttons[None if chat in (None, "") else _as_int(chat)] = button
        self.note_chat_change()
        return True

    async def _get_chat_menu_button(self, call: Call) -> dict[str, Any]:
        return self.menu_button(_as_int(call.params.get("chat_id")))

    def menu_button(self, chat_id: int | None) -> dict[str, Any]:
        """The menu button a private chat shows: its own, else the bot's default one."""
        return (
            self._menu_buttons.get(chat_id) or self._menu_buttons.get(None) or {"type": "default"}
        )

    async def _send_message(self, call: Call) -> dict[str, Any]:
        chat_id = self._target_chat(call)
        source = call.params.get("text")
        text, entities = _render(
            source if isinstance(source, str) else None,
            call.params.get("parse_mode"),
            call.params.get("entities"),
        )
        if not text or not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if len(text) > _TEXT_LIMIT:
            raise _ApiError(400, "Bad Request: message is too long")
        content = {"text": text, "entities": entities}
        message = self._emit(call, chat_id, content, text=text, html=source)
        return message.payload

    async def _send_photo(self, call: Call) -> dict[str, Any]:
        chat_id = self._target_chat(call)
        stored, reused, shown = self._media(call.params.get("photo"), "photo")
        caption, entities = self._caption(call.params)
        content = {"photo": [stored.photo_size()], "caption": caption, "caption_entities": entities}
        message = self._emit(
            call,
            chat_id,
            content,
            text=caption,
            html=call.params.get("caption"),
            photo=shown,
            file_id=stored.file_id,
            reused=reused,
        )
        return message.payload

    async def _send_document(self, call: Call) -> dict[str, Any]:
        chat_id = self._target_chat(call)
        stored, reused, shown = self._media(call.params.get("document"), "document")
        caption, entities = self._caption(call.params)
        content = {"document": stored.document(), "caption": caption, "caption_entities": entities}
        message = self._emit(
            call,
            chat_id,
            content,
            text=caption,
            html=call.params.get("caption"),
            document=shown,
            file_id=stored.file_id,
            reused=reused,
        )
        return message.payload

    @staticmethod
    def _location(params: dict[str, Any]) -> dict[str, Any]:
        latitude, longitude = params.get("latitude"), params.get("longitude")
        if not isinstance(latitude, int | float) or not isinstance(longitude, int | float):
            raise _ApiError(400, "Bad Request: wrong latitude/longitude specified")
        return {"latitude": float(latitude), "longitude": float(longitude)}

    async def _send_venue(self, call: Call) -> dict[str, Any]:
        chat_id = self._target_chat(call)
        location = self._location(call.params)
        title, address = call.params.get("title"), call.params.get("address")
        if not title or not address:
            raise _ApiError(400, "Bad Request: venue title and address must be non-empty")
        venue: dict[str, Any] = {"location": location, "title": title, "address": address}
        for key in ("foursquare_id", "foursquare_type", "google_place_id", "google_place_type"):
            if call.params.get(key):
                venue[key] = call.params[key]
        content = {"venue": venue, "location": location}
        message = self._emit(call, chat_id, content, venue=venue, location=location)
        return message.payload

    async def _send_location(self, call: Call) -> dict[str, Any]:
        chat_id = self._target_chat(call)
        location = self._location(call.params)
        message = self._emit(call, chat_id, {"location": location}, location=location)
        return message.payload

    async def _send_media_group(self, call: Call) -> list[dict[str, Any]]:
        chat_id = self._target_chat(call)
        media = call.params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _ApiError(400, "Bad Request: wrong number of media in the media group")
        group_id = str(next(self._media_groups))
        prepared = []
        # Validate everything first so a bad item does not leave half a group behind.
        for item in media:
            kind = item.get("type") if isinstance(item, dict) else None
            if kind not in ("photo", "document"):
                raise _ApiError(400, f"Bad Request: unsupported media type {kind!r} in fake")
            stored, reused, shown = self._media(item.get("media"), kind)
            caption, entities = self._caption({"parse_mode": call.params.get("parse_mode"), **item})
            prepared.append((kind, stored, reused, shown, caption, entities, item))
        payloads = []
        for kind, stored, reused, shown, caption, entities, item in prepared:
            body = stored.photo_size() if kind == "photo" else stored.document()
            content = {
                kind: [body] if kind == "photo" else body,
                "media_group_id": group_id,
                "caption": caption,
                "caption_entities": entities,
            }
            message = self._emit(
                call,
                chat_id,
                content,
                text=caption,
                html=item.get("caption"),
                file_id=stored.file_id,
                reused=reused,
                **{kind: shown},
            )
            payloads.append(message.payload)
        return payloads

    async def _send_chat_action(self, call: Call) -> bool:
        self._target_chat(call)
        return True

    def _editable(self, call: Call) -> FakeMessage:
        if call.params.get("inline_message_id"):
            raise _ApiError(400, "Bad Request: inline messages are not supported by the fake")
        chat_id = self._target_chat(call)
        message_id = _as_int(call.params.get("message_id"))
        current = self._bot_messages.get(chat_id, {}).get(message_id or 0)
        if current is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        return current

    def _apply_edit(
        self, call: Call, current: FakeMessage, changes: dict[str, Any], **snapshot: Any
    ) -> dict[str, Any]:
        """Apply payload changes (None removes a key) or fail with 'not modified'."""
        payload = dict(current.payload)
        for key, value in changes.items():
            if value is None:
                payload.pop(key, None)
            else:
                payload[key] = value
        if {k: v for k, v in payload.items() if k != "edit_date"} == {
            k: v for k, v in current.payload.items() if k != "edit_date"
        }:
            raise _ApiError(400, _NOT_MODIFIED)
        payload["edit_date"] = int(time.time())
        markup = call.params.get("reply_markup")
        edited = dataclasses.replace(
            current,
            method=call.method,
            edited=True,
            params=call.params,
            payload=payload,
            reply_markup=markup if isinstance(markup, dict) else None,
            **snapshot,
        )
        self._bot_messages[current.chat_id][current.message_id] = edited
        call.messages.append(edited)
        self.note_chat_change()
        return payload

    def _new_markup(self, call: Call) -> dict[str, Any] | None:
        # Omitting reply_markup in an edit removes the inline keyboard, like Telegram does.
        markup = call.params.get("reply_markup")
        return markup if _is_inline_markup(markup) else None

    async def _edit_message_text(self, call: Call) -> dict[str, Any]:
        current = self._editable(call)
        if "text" not in current.payload:
            raise _ApiError(400, "Bad Request: there is no text in the message to edit")
        source = call.params.get("text")
        text, entities = _render(
            source if isinstance(source, str) else None,
            call.params.get("parse_mode"),
            call.params.get("entities"),
        )
        if not text or not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if len(text) > _TEXT_LIMIT:
            raise _ApiError(400, "Bad Request: message is too long")
        changes = {"text": text, "entities": entities, "reply_markup": self._new_markup(call)}
        return self._apply_edit(call, current, changes, text=text, html=source)

    async def _edit_message_caption(self, call: Call) -> dict[str, Any]:
        current = self._editable(call)
        if not any(key in current.payload for key in ("photo", "document")):
            raise _ApiError(400, "Bad Request: there is no caption in the message to edit")
        caption, entities = self._caption(call.params)
        changes = {
            "caption": caption,
            "caption_entities": entities,
            "reply_markup": self._new_markup(call),
        }
        html = call.params.get("caption")
        return self._apply_edit(call, current, changes, text=caption, html=html)

    async def _edit_message_reply_markup(self, call: Call) -> dict[str, Any]:
        current = self._editable(call)
        return self._apply_edit(call, current, {"reply_markup": self._new_markup(call)})

    async def _delete_message(self, call: Call) -> bool:
        chat_id = self._target_chat(call)
        message_id = _as_int(call.params.get("message_id")) or 0
        if (
            self._bot_messages.get(chat_id, {}).pop(message_id, None) is not None
            or self._user_messages.pop((chat_id, message_id), None) is not None
        ):
            self.note_chat_change()
            return True
        raise _ApiError(400, "Bad Request: message to delete not found")

    async def _answer_callback_query(self, call: Call) -> bool:
        query_id = call.params.get("callback_query_id")
        if query_id not in self._open_callbacks:
            raise _ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        self._open_callbacks.discard(query_id)
        return True

    def _member_status(self, chat_id: int, user_id: int) -> str:
        explicit = self._members.get((chat_id, user_id))
        if explicit is not None:
            return explicit
        if chat_id > 0:  # private chat: both sides are "members" of it
            return "member" if user_id in (chat_id, self.bot_id) else "left"
        # The bot sees group messages, so it is assumed to be an admin there.
        return "administrator" if user_id == self.bot_id else "left"

    async def _get_chat_member(self, call: Call) -> dict[str, Any]:
        chat_id = self._target_chat(call)
        user_id = _as_int(call.params.get("user_id"))
        if user_id is None:
            raise _ApiError(400, "Bad Request: invalid user_id specified")
        if user_id == self.bot_id:
            user = self.bot_user
        elif user_id in self._users:
            user = self._users[user_id].as_user()
        else:
            user = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        return _chat_member(self._member_status(chat_id, user_id), user)

    async def _get_chat(self, call: Call) -> dict[str, Any]:
        chat_id = self._target_chat(call)
        return {
            **self._chat_payload(chat_id),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    async def _get_file(self, call: Call) -> dict[str, Any]:
        stored = self._files.get(call.params.get("file_id"))
        if stored is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        return stored.file()


_ADMIN_RIGHTS: Final = (
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_change_info",
    "can_invite_users",
    "can_send_welcome_messages",
    "can_pin_messages",
)
_ADMIN_FLAGS_OFF: Final = (
    "can_be_edited",
    "is_anonymous",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_promote_members",
)
_RESTRICTED_FLAGS: Final = (
    "can_send_messages",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
    "can_send_polls",
    "can_send_other_messages",
    "can_add_web_page_previews",
    "can_react_to_messages",
    "can_edit_tag",
    "can_change_info",
    "can_invite_users",
    "can_pin_messages",
    "can_manage_topics",
)


def _chat_member(status: str, user: dict[str, Any]) -> dict[str, Any]:
    """A ChatMember object with every field aiogram requires for that status."""
    member: dict[str, Any] = {"status": status, "user": user}
    if status == "creator":
        member["is_anonymous"] = False
    elif status == "administrator":
        member.update(dict.fromkeys(_ADMIN_FLAGS_OFF, False))
        member.update(dict.fromkeys(_ADMIN_RIGHTS, True))
    elif status == "restricted":
        # A restricted user who may not do anything: the interesting case for permission tests.
        member.update(dict.fromkeys(_RESTRICTED_FLAGS, False))
        member.update(is_member=True, until_date=0)
    elif status == "kicked":
        member["until_date"] = 0
    return member
