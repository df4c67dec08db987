"""The Mini App: one page (webapp/) for the three roles, and its JSON API under /app/api/.

Every API call carries Telegram's signed initData (`bot.miniapp.auth`): without a valid, fresh
one the answer is 401 and nothing is read or written. Roles are the chat's: a customer sees
their live card; a cashier (a member of the staff group), a branch manager and an owner use the
till; an owner sees the dashboard, and in a chain a manager sees it too, for the branches they
manage only (`handlers.owner_reports.reader_scope`, the rule /stats follows). The till calls
the same `SalesService` as the chat till, so a sale is recorded exactly once whichever way it
was rung up, and its receipt reaches the customer and the staff group of the sale's branch
through the same outbox. The till sells for the caller's
shop as the chat's till does (handlers/till/branch.py): the one they work in, else the one they
chose with /branch in the chat (else the page says to choose it there). Texts come from the same
catalogs, in the caller's language (their stored one, else their Telegram app's).

    GET  /app/                       the page;   GET /app/static/{name}  its script and style
    GET  /app/api/me                 role, language, the page's words, the store
    GET  /app/api/card               the customer's card, offers, recent purchases
    GET  /app/api/card/qr            the live QR (SVG) for this time step, and when it changes
    POST /app/api/till/identify      {"text": payload or number} → the card as the till shows it
    POST /app/api/till/quote         {"card_id": …, "amount": "2500"} → the quote
    POST /app/api/till/confirm       {"draft_id": …} → the receipt (once, however often pressed)
    POST /app/api/till/void          {"purchase_id": …}
    POST /app/api/till/cancel        {"draft_id": …}
    GET  /app/api/dashboard?days=7   the owner's figures (period, change, 12 weeks, NPS, RFM)
         &branch=ID                  in a chain: one branch's (absent or 0: the whole chain, for
                                     owners; a manager's first branch when absent)
    GET  /app/api/export             the XLSX export of the owner's history (owners only)

In a chain the dashboard also says what the reader may pick, `"branches": [{"id", "name",
"closed"}]` (owners: first `{"id": 0, "name": "All branches"}`, then every branch with figures;
managers: their open branches), and what is shown, `"branch": id` (null: the whole chain). A
branch the reader may not see is refused (403, or 400 for a malformed id) before anything is
computed. A one-shop install's dashboard has neither key: the word "branch" never shows.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import qrcode
import qrcode.image.svg
from aiogram.utils.i18n import gettext as _
from aiohttp import web

import handlers.till.refusals  # noqa: F401 - registers how the till's refusals read
from bot.i18n import language_from_telegram, stored_language
from bot.miniapp.auth import Caller, NotAuthenticated, authenticate
from bot.miniapp.dashboard import dashboard
from bot.miniapp.texts import page_texts
from bot.services import build_services
from bot.static_files import static_file
from config import LANGUAGES, PROJECT_ROOT, Settings
from db.database import Database
from handlers import formatting
from handlers.errors import render_error
from handlers.owner_reports import ALL_SHOPS, BranchRefused, Scope, export_labels, reader_scope
from handlers.roles import Role, StaffDirectory
from handlers.till.branch import choices, log_groups, oversight, shop_name
from handlers.till.views import render_card, render_quote, render_receipt, render_voided
from services import qr_payload
from services.branches import BranchInfo, BranchService
from services.cards import group_number
from services.clock import Clock
from services.delivery import Outbox
from services.errors import DomainError
from services.money import parse_amount
from services.reports import ReportService
from services.sales import SalesService
from services.wallet import CardView, ConsentRequired, NoActiveCard, WalletService

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.utils.i18n import I18n

log = logging.getLogger(__name__)

STATIC: Final = PROJECT_ROOT / "webapp"
PERIODS: Final = (7, 30, 90)  # the dashboard's periods, days ending yesterday
WEEKS: Final = 12
Handler = Callable[[web.Request, "Visit"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Visit:
    """An authenticated API call: who, in which role and language, at what time."""

    caller: Caller
    role: Role
    language: str
    now: datetime


class MiniApp:
    """The Mini App's routes, over the same services the chat handlers use."""

    def __init__(
        self,
        bot: Bot,
        db: Database,
        settings: Settings,
        i18n: I18n,
        staff: StaffDirectory,
        outbox: Outbox,
        clock: Clock,
    ) -> None:
        self.bot = bot
        self.db = db
        self.settings = settings
        self.i18n = i18n
        self.staff = staff
        self.outbox = outbox
        self.clock = clock
        self.branches = staff.branches or BranchService(db, settings, clock)
        services = build_services(db, settings, clock)  # the ones the chat handlers get
        self.sales: SalesService = services["sales"]
        self.wallet: WalletService = services["wallet"]
        self.reports: ReportService = services["reports"]

    def install(self, app: web.Application, prefix: str = "/app") -> None:
        app.router.add_get(f"{prefix}/", self._index)
        app.router.add_get(prefix, self._to_index)
        app.router.add_get(f"{prefix}/static/{{name}}", self._static)
        routes: list[tuple[str, str, Handler, Role]] = [
            ("GET", "me", self._me, Role.CUSTOMER),
            ("GET", "card", self._card, Role.CUSTOMER),
            ("GET", "card/qr", self._qr, Role.CUSTOMER),
            ("POST", "till/identify", self._identify, Role.CASHIER),
            ("POST", "till/quote", self._quote, Role.CASHIER),
            ("POST", "till/confirm", self._confirm, Role.CASHIER),
            ("POST", "till/cancel", self._cancel, Role.CASHIER),
            ("POST", "till/void", self._void, Role.CASHIER),
            ("GET", "dashboard", self._dashboard, Role.MANAGER),  # their branches only
            ("GET", "export", self._export, Role.OWNER),
        ]
        for method, path, handler, minimum in routes:
            app.router.add_route(method, f"{prefix}/api/{path}", self._guarded(handler, minimum))

    # ------------------------------------------------------------------ the page

    async def _index(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _to_index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(request.path + "/")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        return static_file(STATIC, request.match_info["name"])

    # ------------------------------------------------------------------ the guard

    def _guarded(self, handler: Handler, minimum: Role) -> Callable[[web.Request], Awaitable[Any]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            now = self.clock()
            try:
                caller = authenticate(
                    request.headers.get("Authorization"),
                    self.settings.telegram.bot_token.get_secret_value(),
                    now,
                    self.settings.miniapp.auth_ttl_sec,
                )
            except NotAuthenticated as exc:
                log.info("Mini App call refused (401): %s", exc.reason)
                # Nobody known to ask: the browser's language, for the page to show.
                with (
                    self.i18n.context(),
                    self.i18n.use_locale(
                        _browser_language(request, self.settings.store.default_language)
                    ),
                ):
                    message = _("Open this page from the bot's menu in Telegram.")
                return _json({"error": "unauthorized", "message": message}, status=401)
            role = await self.staff.role(self.bot, caller.user_id)
            language = await self._language(caller)
            visit = Visit(caller, role, language, now)
            with self.i18n.context(), self.i18n.use_locale(language):
                if role < minimum:
                    message = _("This is not available to you.")
                    return _json({"error": "forbidden", "message": message}, status=403)
                try:
                    return await handler(request, visit)
                except DomainError as exc:
                    text = render_error(exc, self.settings)
                    if text is None:
                        raise
                    return _json({"error": "refused", "message": text}, status=409)

        return guarded

    async def _language(self, caller: Caller) -> str:
        stored = await self.db.read(stored_language, caller.user_id)
        return stored or language_from_telegram(
            caller.language_code, self.settings.store.default_language
        )

    # ------------------------------------------------------------------ everyone

    async def _me(self, _request: web.Request, visit: Visit) -> web.StreamResponse:
        role = {
            Role.CUSTOMER: "customer",
            Role.CASHIER: "cashier",
            Role.MANAGER: "manager",  # the till, and their branches' dashboard
            Role.OWNER: "owner",
        }
        return _json(
            {
                "role": role[visit.role],
                "language": visit.language,
                "name": visit.caller.first_name,
                "store": self.settings.store.name,
                "rotate_sec": self.settings.miniapp.qr_rotate_sec,
                "texts": page_texts(),
            }
        )

    # ------------------------------------------------------------------ customer

    async def _card(self, _request: web.Request, visit: Visit) -> web.StreamResponse:
        view = await self._card_view(visit)
        if view is None:
            return _json(
                {
                    "error": "no_card",
                    "message": _("You have no card yet: send /start to the bot in the chat."),
                },
                status=404,
            )
        offers = await self.wallet.offers(visit.caller.user_id)
        history = await self.wallet.history(visit.caller.user_id)
        # In a chain each purchase names its shop, as the chat's history does.
        shops = await self.branches.names() if await self.branches.is_chain() else {}
        money = formatting.money
        return _json(
            {
                "number": group_number(view.number),
                "tier": formatting.pct(view.tier_pct),
                "segment": view.segment,
                "saved": money(view.total_saved, self.settings),
                "purchases": view.purchases,
                "next_tier": None
                if view.next_tier is None
                else {
                    "pct": formatting.pct(view.next_tier.pct),
                    "remaining": money(view.next_tier.remaining, self.settings),
                    "progress": _progress(view.total_spend, view.next_tier.remaining),
                },
                "offers": [
                    {
                        "pct": f"+{formatting.pct(offer.bonus_pct)}",
                        "until": formatting.day(offer.valid_until, self.settings),
                    }
                    for offer in offers
                ],
                "recent": [
                    {
                        "when": formatting.when(item.at, self.settings),
                        "amount": money(item.amount, self.settings),
                        "saved": money(item.discount_amount, self.settings),
                        "voided": item.voided,
                        "shop": shops.get(item.branch_id),
                    }
                    for item in history.items[:5]
                ],
            }
        )

    async def _qr(self, _request: web.Request, visit: Visit) -> web.StreamResponse:
        view = await self._card_view(visit)
        if view is None:
            return _json({"error": "no_card"}, status=404)
        rotate = self.settings.miniapp.qr_rotate_sec
        step = qr_payload.time_step(visit.now, rotate)
        secret = self.settings.telegram.secret_key.get_secret_value()
        payload = qr_payload.sign_live(secret, view.number, step)
        me = await self.bot.me()
        link = qr_payload.deep_link(me.username or "", payload)
        svg = await asyncio.to_thread(_qr_svg, link)
        next_step = (step + 1) * rotate
        expires_in = max(0.0, next_step - visit.now.timestamp())
        return _json({"payload": payload, "svg": svg, "step": step, "expires_in": expires_in})

    async def _card_view(self, visit: Visit) -> CardView | None:
        member = await self.wallet.client(visit.caller.user_id)
        if member is None:
            return None
        try:
            return await self.wallet.card_view(member)
        except (NoActiveCard, ConsentRequired):
            return None

    # ------------------------------------------------------------------ till

    async def _shop(self, visit: Visit) -> BranchInfo | None:
        """The shop the caller sells for: the one they work in, else the one they chose with
        /branch in the chat; None when they work in several and chose none of them."""
        user_id = visit.caller.user_id
        found = await choices(self.bot, user_id, visit.role, self.staff, self.branches)
        if len(found) == 1:
            return found[0]
        chosen = await self.branches.chosen(user_id)
        return next((b for b in found if b.id == chosen), None)

    def _no_shop(self) -> web.Response:
        message = _(
            "You sell in several shops: send /branch to the bot in the chat, choose the shop, "
            "then come back here."
        )
        return _json({"error": "no_shop", "message": message}, status=409)

    async def _identify(self, request: web.Request, visit: Visit) -> web.StreamResponse:
        body = await _body(request)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > 512:
            return _bad("text")
        if await self._shop(visit) is None:  # said before the card, not after the amount
            return self._no_shop()
        payload = qr_payload.extract(text)
        if payload is not None:
            card = await self.sales.identify_payload(payload)
        else:
            card = await self.sales.identify_number(text.strip())
        return _json({"card_id": card.card_id, "html": render_card(card, self.settings)})

    async def _quote(self, request: web.Request, visit: Visit) -> web.StreamResponse:
        body = await _body(request)
        card_id, amount = body.get("card_id"), body.get("amount")
        if not _is_id(card_id) or not isinstance(amount, str):
            return _bad("card_id, amount")
        minor = parse_amount(
            amount, self.settings.store.currency_exponent, self.settings.pricing.max_purchase
        )
        shop = await self._shop(visit)
        if shop is None:
            return self._no_shop()
        user_id = visit.caller.user_id
        draft = await self.sales.quote(
            card_id, minor, user_id, user_id, visit.now, branch_id=shop.id
        )
        name = await shop_name(self.branches, shop.id, private=True)
        return _json({"draft_id": draft.id, "html": render_quote(draft, self.settings, name)})

    async def _confirm(self, request: web.Request, visit: Visit) -> web.StreamResponse:
        draft_id = _draft_id(await _body(request))
        if draft_id is None:
            return _bad("draft_id")
        done = await self.sales.confirm(
            draft_id,
            visit.caller.user_id,
            await oversight(visit.role, visit.caller.user_id, self.staff),
            visit.now,
            log_chats=await log_groups(self.branches),  # as a sale in a private chat
            cashier_name=visit.caller.first_name,
        )
        if not done.already:
            self.outbox.notify()
        if done.voided:
            note, html = _("This purchase was voided."), render_voided(done, self.settings)
        else:
            note = _("Already confirmed.") if done.already else _("Recorded.")
            name = await shop_name(self.branches, done.branch_id, private=True)
            html = render_receipt(done, self.settings, name)
        return _json(
            {
                "purchase_id": done.purchase_id,
                "already": done.already,
                "voided": done.voided,
                "note": note,
                "html": html,
            }
        )

    async def _cancel(self, request: web.Request, visit: Visit) -> web.StreamResponse:
        draft_id = _draft_id(await _body(request))
        if draft_id is None:
            return _bad("draft_id")
        allowed = await oversight(visit.role, visit.caller.user_id, self.staff)
        await self.sales.cancel(draft_id, visit.caller.user_id, allowed, visit.now)
        return _json({"ok": True})

    async def _void(self, request: web.Request, visit: Visit) -> web.StreamResponse:
        body = await _body(request)
        purchase_id = body.get("purchase_id")
        if not _is_id(purchase_id):
            return _bad("purchase_id")
        result = await self.sales.void(
            purchase_id,
            visit.caller.user_id,
            await oversight(visit.role, visit.caller.user_id, self.staff),
            visit.now,
            log_chats=await log_groups(self.branches),  # the purchase's branch's group
            cashier_name=visit.caller.first_name,
        )
        self.outbox.notify()
        return _json({"note": _("Voided."), "html": render_voided(result, self.settings)})

    # ------------------------------------------------------------------ owner

    async def _dashboard(self, request: web.Request, visit: Visit) -> web.StreamResponse:
        try:
            days = int(request.query.get("days", "7"))
        except ValueError:
            return _bad("days")
        if days not in PERIODS:
            return _bad("days")
        scope = await reader_scope(
            visit.role, visit.caller.user_id, self.reports, self.branches, self.staff
        )
        if not scope.chain and not scope.branches:  # a manager whose branches closed meanwhile
            return _json({"error": "forbidden", "message": self._not_yours()}, status=403)
        branch: BranchInfo | None = None
        if scope.branches:  # a chain (one shop: as before there were branches, the shop)
            chosen = _branch_param(request.query.get("branch"))
            if chosen is None:
                message = self._not_yours()
                return _json(
                    {"error": "bad_request", "field": "branch", "message": message}, status=400
                )
            if chosen == _DEFAULT:
                chosen = ALL_SHOPS if scope.chain else scope.branches[0].id
            if chosen != ALL_SHOPS or not scope.chain:
                branch = scope.find(chosen)
                if branch is None:  # another's branch, the chain for a manager, no such id
                    return _json({"error": "forbidden", "message": self._not_yours()}, status=403)
        today = visit.now.astimezone(self.settings.store.tz).date()
        last = today - timedelta(days=1)
        first = last - timedelta(days=days - 1)
        data = await dashboard(
            self.reports, self.settings, first, last, WEEKS, None if branch is None else branch.id
        )
        if scope.branches:
            data["branches"] = _branch_choices(scope)
            data["branch"] = None if branch is None else branch.id
        return _json(data)

    def _not_yours(self) -> str:
        """What /stats answers for a branch the reader may not see, in their language."""
        text = render_error(BranchRefused("unknown"), self.settings)
        assert text is not None
        return text

    async def _export(self, _request: web.Request, visit: Visit) -> web.StreamResponse:
        today = visit.now.astimezone(self.settings.store.tz).date()
        first, last = await self.reports.export_span(today)
        people = await self.staff.names(self.bot, await self.reports.cashier_ids(first, last))
        labels = export_labels(visit.language, people)
        path: Path = await self.reports.export_xlsx(first, last, labels)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        finally:
            await asyncio.to_thread(path.unlink, True)
        name = f"loyalty-{first.isoformat()}-{last.isoformat()}.xlsx"
        return web.Response(
            body=data,
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )


_DEFAULT: Final = -1  # no `branch` asked for: the whole chain (owners), else the first branch


def _branch_param(value: str | None) -> int | None:
    """The dashboard's `branch` query parameter: `_DEFAULT` when absent or empty, a branch id
    (`ALL_SHOPS`, 0, is the whole chain), or None when malformed."""
    if value is None or value == "":
        return _DEFAULT
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


def _branch_choices(scope: Scope) -> list[dict[str, Any]]:
    """What the dashboard's branch switch offers this reader: the whole chain first (owners
    only), then each branch they may see."""
    choices: list[dict[str, Any]] = []
    if scope.chain:
        choices.append({"id": ALL_SHOPS, "name": _("All branches"), "closed": False})
    choices += [{"id": b.id, "name": b.name, "closed": not b.is_open} for b in scope.branches]
    return choices


def _browser_language(request: web.Request, default: str) -> str:
    """The first of our languages the browser asks for (Accept-Language), else `default`."""
    for part in request.headers.get("Accept-Language", "").split(","):
        code = part.split(";")[0].strip().split("-")[0].lower()
        if code in LANGUAGES:
            return code
    return default


def _progress(spent: int, remaining: int) -> float:
    """How far along to the next tier, 0..1."""
    total = spent + remaining
    return 0.0 if total <= 0 else round(spent / total, 3)


def _qr_svg(link: str) -> str:
    image = qrcode.make(link, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    out = io.BytesIO()
    image.save(out)
    return out.getvalue().decode()


def _draft_id(body: dict[str, Any]) -> str | None:
    draft_id = body.get("draft_id")
    return draft_id if isinstance(draft_id, str) and 0 < len(draft_id) <= 64 else None


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**62


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "bad_request", "field": "body"}),
            content_type="application/json",
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "bad_request", "field": "body"}),
            content_type="application/json",
        )
    return body


def _bad(field: str) -> web.Response:
    return _json({"error": "bad_request", "field": field}, status=400)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})
