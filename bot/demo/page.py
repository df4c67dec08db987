"""The demo's web page: three chats with the bot, played in a browser against the emulator.

A customer's private chat, the cashiers' staff group (the cashier types there) and the owner's
private chat, side by side. The page polls `GET /api/chats?since=N`, which answers as soon as a
message appears, changes or goes (or after 25 s with nothing new), with each chat as a client
would draw it: the messages (text with its formatting entities, photos, documents, contacts,
locations, inline buttons), the reply keyboard in force, a pending ForceReply and the command
menu. What a person does goes through the emulator's users, exactly as the tests' users do:

    POST /api/chats/{role}/send      {"text": "…", "reply_to": id or null}
    POST /api/chats/{role}/photo     multipart, field "photo"
    POST /api/chats/{role}/press     {"message_id": id, "data": "…"} → the bot's answer
    POST /api/chats/{role}/contact   the user's own phone number (a request_contact button)
    POST /api/chats/{role}/location  {"latitude": …, "longitude": …}
    POST /api/chats/{role}/language  {"language": "ru" | "en" | "et"}: the Telegram app's language
    POST /api/chats/{role}/webapp    {"url": a Mini App button's URL} → where the page's frame
                                     opens it, with initData signed for the pane's person
    *    /app/…                      passed through to the bot's Mini App server (a reverse proxy)
    GET  /api/files/{file_id}        a photo or a document the bot sent
    GET  /api/texts?lang=xx          the page's own words
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from aiohttp import web

from bot.demo.emulator import FakeGroup, FakeMessage, FakeTelegram, FakeUser
from bot.miniapp.auth import sign_init_data
from bot.static_files import static_file
from config import LANGUAGES

if TYPE_CHECKING:
    from aiogram.utils.i18n import I18n

# The demo's three people (ids below 10,000,000: the seeded history's customers are above).
OWNER_ID: Final = 1
CASHIER_ID: Final = 2
CUSTOMER_ID: Final = 501
STAFF_CHAT_ID: Final = -1001000000001

STATIC: Final = Path(__file__).with_name("static")
ROLES: Final = ("customer", "staff", "owner")
POLL_SECONDS: Final = 25.0
PRESS_SECONDS: Final = 10.0
# Telegram's own limits: 4096 characters of text, photos up to 10 MB.
TEXT_LIMIT: Final = 4096
PHOTO_LIMIT: Final = 10 * 1024 * 1024


@dataclass(frozen=True)
class Pane:
    """One chat on the page and the person who types in it."""

    role: str
    user: FakeUser
    group: FakeGroup | None = None  # the staff group; None for a private chat

    @property
    def chat_id(self) -> int:
        return self.group.id if self.group is not None else self.user.id

    @property
    def title(self) -> str:
        return self.group.title if self.group is not None else self.user.first_name


def cast(tg: FakeTelegram, *, language: str, staff_title: str) -> dict[str, Pane]:
    """The demo's people in the emulator: Anna the customer, Kate the cashier in the staff
    group, and Oleg the owner (also the group's creator)."""
    customer = tg.user(CUSTOMER_ID, "Anna", language_code=language)
    cashier = tg.user(CASHIER_ID, "Kate", language_code=language)
    owner = tg.user(OWNER_ID, "Oleg", language_code=language)
    staff = tg.group(STAFF_CHAT_ID, title=staff_title)
    staff.set_member(owner, "creator")
    staff.set_member(cashier, "member")
    return {
        "customer": Pane("customer", customer),
        "staff": Pane("staff", cashier, staff),
        "owner": Pane("owner", owner),
    }


class DemoPage:
    """The page's routes over one emulator and its three panes."""

    def __init__(
        self,
        tg: FakeTelegram,
        panes: dict[str, Pane],
        i18n: I18n,
        *,
        hint_card: str = "",
        token: str = "",
        miniapp: str | None = None,
    ) -> None:
        self.tg = tg
        self.panes = panes
        self.i18n = i18n
        self.hint_card = hint_card
        self.token = token  # signs the initData a Mini App opened from the page gets
        self.miniapp = miniapp  # where the bot serves its Mini App: /app/ is passed through
        self._http: aiohttp.ClientSession | None = None

    def install(self, app: web.Application) -> None:
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/texts", self._texts)
        app.router.add_get("/api/chats", self._chats)
        app.router.add_post("/api/chats/{role}/{action}", self._act)
        app.router.add_get("/api/files/{file_id}", self._file)
        if self.miniapp is not None:
            app.router.add_route("*", "/app/{tail:.*}", self._to_miniapp)
            app.on_cleanup.append(self._close_http)

    # ------------------------------------------------------------------ reading

    async def _index(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _static(self, request: web.Request) -> web.StreamResponse:
        return static_file(STATIC, request.match_info["name"])

    async def _texts(self, request: web.Request) -> web.Response:
        language = request.query.get("lang", "")
        if language not in LANGUAGES:
            language = self.i18n.default_locale
        return web.json_response(page_texts(self.i18n, language, self.hint_card))

    async def _chats(self, request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "-1"))
        except ValueError:
            raise _bad_request("since must be a whole number") from None
        version = await self.tg.wait_chats_change(since, POLL_SECONDS)
        chats = [self._chat_view(pane) for pane in self.panes.values()]
        return web.json_response(
            {"version": version, "bot_username": self.tg.username, "chats": chats}
        )

    def _chat_view(self, pane: Pane) -> dict[str, Any]:
        log = self.tg.chat_log(pane.chat_id)
        return {
            "role": pane.role,
            "title": pane.title,
            "group": pane.group is not None,
            "language": pane.user.language_code,
            "user": pane.user.first_name,
            "messages": [message_view(payload, snapshot) for payload, snapshot in log],
            "keyboard": reply_keyboard(log),
            "force_reply": force_reply(log),
            "commands": self.tg.commands_for(pane.chat_id, pane.user.language_code),
            "menu_button": None if pane.group is not None else _web_app(self.tg, pane.chat_id),
        }

    async def _file(self, request: web.Request) -> web.Response:
        found = self.tg.file_content(request.match_info["file_id"])
        if found is None:
            raise web.HTTPNotFound
        data, mime, name = found
        headers = {"Cache-Control": "private, max-age=3600"}
        if name:
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{_quote(name)}"
        return web.Response(body=data, content_type=mime, headers=headers)

    async def _to_miniapp(self, request: web.Request) -> web.StreamResponse:
        """Pass /app/… through to the bot's Mini App server, as nginx does in production."""
        assert self.miniapp is not None
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in ("authorization", "content-type", "accept-language")
        }
        try:
            async with self._http.request(
                request.method,
                self.miniapp + request.rel_url.path_qs,
                headers=headers,
                data=await request.read(),
                allow_redirects=False,
            ) as answer:
                body = await answer.read()
                passed = {
                    name: value
                    for name, value in answer.headers.items()
                    if name.lower()
                    in ("content-type", "content-disposition", "cache-control", "location")
                }
                return web.Response(body=body, status=answer.status, headers=passed)
        except aiohttp.ClientError:
            raise web.HTTPBadGateway(text="the bot's Mini App is not answering") from None

    async def _close_http(self, _app: web.Application) -> None:
        if self._http is not None:
            await self._http.close()

    # ------------------------------------------------------------------ acting

    async def _act(self, request: web.Request) -> web.Response:
        pane = self.panes.get(request.match_info["role"])
        if pane is None:
            raise _not_found("no such chat on the page")
        action = request.match_info["action"]
        if action == "photo":
            return await self._photo(request, pane)
        body = await _json_body(request)
        if action == "send":
            text = body.get("text")
            if not isinstance(text, str) or not text.strip():
                raise _bad_request("text is empty")
            if len(text) > TEXT_LIMIT:
                raise _bad_request(f"text is longer than {TEXT_LIMIT} characters")
            reply_to = body.get("reply_to")
            if reply_to is not None and not self._has_message(pane, reply_to):
                reply_to = None  # the message went meanwhile: send without the reply
            if pane.group is not None:
                await pane.group.send(pane.user, text, reply_to=reply_to)
            else:
                await pane.user.send(text, reply_to=reply_to)
            return web.json_response({"ok": True})
        if action == "press":
            return await self._press(pane, body)
        if action == "contact" and pane.group is None:
            await pane.user.send_contact(DEMO_PHONE)
            return web.json_response({"ok": True})
        if action == "location" and pane.group is None:
            latitude, longitude = body.get("latitude"), body.get("longitude")
            if not _is_coordinate(latitude, 90) or not _is_coordinate(longitude, 180):
                raise _bad_request("latitude and longitude must be numbers")
            await pane.user.send_location(float(latitude), float(longitude))
            return web.json_response({"ok": True})
        if action in ("contact", "location"):
            raise _not_found(f"{action} is shared from a private chat only")
        if action == "webapp" and pane.group is None:
            return self._open_webapp(pane, body)
        if action == "language":
            language = body.get("language")
            if language not in LANGUAGES:
                raise _bad_request(f"language must be one of {', '.join(LANGUAGES)}")
            pane.user.language_code = language
            # Not a chat message, but the page shows the pane's language: let pollers know.
            self.tg.note_chat_change()
            return web.json_response({"ok": True})
        raise _not_found(f"no action {action!r}")

    def _open_webapp(self, pane: Pane, body: dict[str, Any]) -> web.Response:
        """Where the page's frame opens a Mini App button's URL: on the page's own address,
        with the launch parameters Telegram adds (initData signed for this pane's person)."""
        url = body.get("url")
        if self.miniapp is None or not isinstance(url, str) or "/app/" not in url:
            raise _bad_request("not a Mini App of this bot")
        user = pane.user
        init_data = sign_init_data(
            self.token,
            {"id": user.id, "first_name": user.first_name, "language_code": user.language_code},
            datetime.now(UTC),
        )
        launch = _query(
            {"tgWebAppData": init_data, "tgWebAppVersion": "8.0", "tgWebAppPlatform": "web"}
        )
        path = url[url.index("/app/") :]
        return web.json_response({"ok": True, "src": f"{path}#{launch}"})

    def _has_message(self, pane: Pane, message_id: Any) -> bool:
        return isinstance(message_id, int) and any(
            payload["message_id"] == message_id for payload, _ in self.tg.chat_log(pane.chat_id)
        )

    async def _photo(self, request: web.Request, pane: Pane) -> web.Response:
        if request.content_length is not None and request.content_length > PHOTO_LIMIT + 65536:
            raise _too_large()
        try:
            form = await request.post()
        except ValueError:  # aiohttp's own limit on the body
            raise _too_large() from None
        field = form.get("photo")
        if not isinstance(field, web.FileField):
            raise _bad_request("no photo in the form")
        data = field.file.read(PHOTO_LIMIT + 1)
        if len(data) > PHOTO_LIMIT:
            raise _too_large()
        if not data:
            raise _bad_request("the photo is empty")
        if pane.group is not None:
            await pane.group.send_photo(pane.user, data)
        else:
            await pane.user.send_photo(data)
        return web.json_response({"ok": True})

    async def _press(self, pane: Pane, body: dict[str, Any]) -> web.Response:
        message_id, data = body.get("message_id"), body.get("data")
        if not isinstance(message_id, int) or not isinstance(data, str):
            raise _bad_request("message_id and data are required")
        try:
            if pane.group is not None:
                call = await pane.group.press_data(pane.user, message_id, data, PRESS_SECONDS)
            else:
                call = await pane.user.press_data(message_id, data, timeout=PRESS_SECONDS)
        except AssertionError:  # the bot did not answer the press in time
            return web.json_response({"ok": True, "text": None, "alert": False})
        text = call.params.get("text")
        return web.json_response(
            {"ok": True, "text": text or None, "alert": bool(call.params.get("show_alert"))}
        )


DEMO_PHONE: Final = "+7 900 555-01-23"


def page_texts(i18n: I18n, language: str, hint_card: str) -> dict[str, Any]:
    """The page's own words in one language (the bot's words come from the bot)."""
    _ = partial(i18n.gettext, locale=language)
    return {
        "language": language,
        "title": _("Loyalty Wallet Bot: demo"),
        "intro": _(
            "The real bot runs on this computer against a built-in copy of Telegram. "
            "Play all three people: the customer, the cashier and the owner."
        ),
        "steps": [
            _("Customer: send /start, agree to the privacy policy and bind card {card}.").format(
                card=hint_card or "100000"
            ),
            _("Drag the card image the customer got into the staff group: that scans it."),
            _("Staff group: type the amount, e.g. 2500, and confirm with ✅."),
            _("Owner: /stats, /digest or /export show the program's figures."),
        ],
        "roles": {
            "customer": _("Customer"),
            "staff": _("Staff group"),
            "owner": _("Owner"),
        },
        "typing_as": _("You type as {name}"),
        "placeholder": _("Message"),
        "send": _("Send"),
        "photo": _("Send a photo"),
        "menu": _("Commands"),
        "replying_to": _("Reply to"),
        "cancel_reply": _("Cancel reply"),
        "download": _("Download"),
        "edited": _("edited"),
        "app_language": _("Telegram language"),
        "language_hint": _(
            "The language of this person's Telegram app; someone who has already joined "
            "changes the bot's language with /language."
        ),
        "empty_chat": _("No messages yet"),
        "error": _("Could not send: {reason}"),
        "too_large": _("The photo is larger than Telegram's 10 MB"),
        "close": _("Close"),
        "scanner": _("The phone's QR scanner"),
        "scan_live": _("Scan the customer's live card"),
        "scan_no_card": _("Open the customer's live card first: the button under their chat."),
        "scan_paste": _("Or paste a code and press Enter"),
        "offline": _("The demo server is not answering; is `make demo` still running?"),
    }


def message_view(payload: dict[str, Any], snapshot: FakeMessage | None) -> dict[str, Any]:
    """One message as the page draws it."""
    sender = payload.get("from") or {}
    view: dict[str, Any] = {
        "id": payload["message_id"],
        "from_bot": snapshot is not None,
        "sender": sender.get("first_name", ""),
        "date": payload.get("date", 0),
        "edited": "edit_date" in payload,
        "text": payload.get("text") or payload.get("caption") or "",
        "entities": payload.get("entities") or payload.get("caption_entities") or [],
    }
    if payload.get("photo"):
        view["photo"] = f"/api/files/{payload['photo'][-1]['file_id']}"
    if document := payload.get("document"):
        view["document"] = {
            "url": f"/api/files/{document['file_id']}",
            "name": document.get("file_name") or "file",
            "size": document.get("file_size", 0),
        }
    if contact := payload.get("contact"):
        view["contact"] = {
            "name": " ".join(
                part for part in (contact.get("first_name"), contact.get("last_name")) if part
            ),
            "phone": contact.get("phone_number", ""),
        }
    if venue := payload.get("venue"):
        view["venue"] = {"title": venue.get("title", ""), "address": venue.get("address", "")}
    if location := payload.get("location"):
        view["location"] = location
    if sticker := payload.get("sticker"):
        view["text"] = sticker.get("emoji", "")
    if reply := payload.get("reply_to_message"):
        quoted = reply.get("text") or reply.get("caption") or ""
        view["reply_to"] = {"id": reply.get("message_id"), "text": quoted[:80]}
    markup = payload.get("reply_markup") or {}
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if rows:
        view["buttons"] = [[_inline_button(button) for button in row] for row in rows]
    return view


def _web_app(tg: FakeTelegram, chat_id: int) -> dict[str, str] | None:
    """The chat's menu button when it opens a Mini App: its text and URL."""
    button = tg.menu_button(chat_id)
    if button.get("type") != "web_app":
        return None
    return {"text": button.get("text", ""), "url": (button.get("web_app") or {}).get("url", "")}


def _inline_button(button: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {"text": button.get("text", "")}
    for key in ("callback_data", "url"):
        if button.get(key):
            shown[key] = button[key]
    if web_app := button.get("web_app"):
        shown["web_app"] = web_app.get("url", "")
    if (switch := button.get("switch_inline_query")) is not None:
        shown["url"] = "https://t.me/share/url?" + _query({"text": switch})
    if copy := button.get("copy_text"):
        shown["copy"] = copy.get("text", "")
    return shown


def reply_keyboard(log: list[tuple[dict[str, Any], FakeMessage | None]]) -> dict[str, Any] | None:
    """The reply keyboard a client shows under the input: the last one the bot sent, until a
    ReplyKeyboardRemove, or until the user answers a one-time keyboard."""
    keyboard: dict[str, Any] | None = None
    for _payload, snapshot in log:
        if snapshot is None:  # the user's message: a one-time keyboard hides after it
            if keyboard is not None and keyboard["one_time"]:
                keyboard = None
            continue
        markup = snapshot.params.get("reply_markup")
        if not isinstance(markup, dict):
            continue
        if markup.get("remove_keyboard"):
            keyboard = None
        elif "keyboard" in markup:
            keyboard = {
                "rows": [
                    [
                        {
                            "text": button.get("text", ""),
                            "contact": bool(button.get("request_contact")),
                            "location": bool(button.get("request_location")),
                        }
                        if isinstance(button, dict)
                        else {"text": str(button), "contact": False, "location": False}
                        for button in row
                    ]
                    for row in markup["keyboard"]
                ],
                "one_time": bool(markup.get("one_time_keyboard")),
                "placeholder": markup.get("input_field_placeholder") or "",
            }
    return keyboard


def force_reply(log: list[tuple[dict[str, Any], FakeMessage | None]]) -> dict[str, Any] | None:
    """The bot's last ForceReply prompt the user has not answered yet: the client opens a reply
    to it, so what the user types next answers it."""
    pending: dict[str, Any] | None = None
    for payload, snapshot in log:
        if snapshot is None:
            pending = None
            continue
        markup = snapshot.params.get("reply_markup")
        if isinstance(markup, dict) and markup.get("force_reply"):
            pending = {
                "id": payload["message_id"],
                "text": (payload.get("text") or payload.get("caption") or "")[:80],
                "placeholder": markup.get("input_field_placeholder") or "",
            }
    return pending


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _bad_request("the body is not JSON") from None
    if not isinstance(body, dict):
        raise _bad_request("the body must be a JSON object")
    return body


def _is_coordinate(value: Any, bound: float) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and -bound <= value <= bound


def _bad_request(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=json.dumps({"ok": False, "error": reason}), content_type="application/json"
    )


def _not_found(reason: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(
        text=json.dumps({"ok": False, "error": reason}), content_type="application/json"
    )


def _too_large() -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        max_size=PHOTO_LIMIT,
        actual_size=0,
        text=json.dumps({"ok": False, "error": "too_large"}),
        content_type="application/json",
    )


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _query(params: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(params)
