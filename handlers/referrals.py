"""Invite a friend: /invite, the share button under the card, the invite link's welcome and
its outcome after joining, the reward messages, and the owner's referral lines (/stats, digest).

The invite code a friend opened waits in the conversation state (`INVITE_KEY`, with the moment
it was opened) from `/start r<code>` through consent to the card: the friend has no client row
before consent, and nothing else about them is stored. `after_joining` hands it to the service
once they hold a card; a refusal is quiet unless the friend should know why.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from urllib.parse import quote

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from config import Settings
from db.database import Database
from handlers import formatting
from handlers.filters import Match
from services import referrals
from services.clock import store_day_bounds
from services.delivery import Outgoing, Rendered
from services.kpi import Kpis
from services.referrals import ReferralService
from services.reports import ReportService, digest_week
from services.wallet import WalletService

INVITE_KEY = "invite"  # conversation data: the code opened, and when (`INVITE_AT_KEY`)
INVITE_AT_KEY = "invite_at"
TOP_AMBASSADORS = 5


def _service(wallet: WalletService) -> ReferralService:
    return ReferralService(wallet.db, wallet.settings, wallet.clock)


async def _link(bot: Bot, code: str) -> str:
    me = await bot.me()
    return referrals.invite_link(me.username or "", code)


def _reward_sentence(settings: Settings) -> str:
    growth = settings.growth
    days = growth.referral_valid_days
    return ngettext(
        "When a friend joins through it and makes their first purchase, you both get "
        "<b>+{pct}</b> off your next purchase (valid {days} day).",
        "When a friend joins through it and makes their first purchase, you both get "
        "<b>+{pct}</b> off your next purchase (valid {days} days).",
        days,
    ).format(pct=formatting.pct(growth.referral_bonus_pct), days=formatting.number(days))


def share_button(link: str, settings: Settings) -> InlineKeyboardButton:
    """Opens Telegram's share sheet with the link and a short line."""
    text = _("Join the loyalty program of {store} with my invite: we both get a bonus.").format(
        store=settings.store.name
    )
    url = f"https://t.me/share/url?url={quote(link, safe='')}&text={quote(text, safe='')}"
    return InlineKeyboardButton(text=_("📣 Invite a friend"), url=url)


async def card_share_button(
    bot: Bot, client_id: int, wallet: WalletService
) -> InlineKeyboardButton:
    """The share button under the member's card (their code is made on first use)."""
    code = await _service(wallet).code(client_id)
    return share_button(await _link(bot, code), wallet.settings)


# ---------------------------------------------------------------------------- /invite


async def invite(message: Message, wallet: WalletService, settings: Settings, bot: Bot) -> None:
    assert message.from_user is not None
    member = await wallet.require_client(message.from_user.id)
    mine = await _service(wallet).invitations(member.id)
    link = await _link(bot, mine.code)
    lines = [
        _("<b>Invite friends</b> to {store}! Your personal link:").format(
            store=html.escape(settings.store.name)
        ),
        link,
        "",
        _reward_sentence(settings),
    ]
    cap = settings.growth.referral_max_per_month
    if cap > 0:
        lines.append(
            ngettext(
                "You can be rewarded for up to {count} friend a month.",
                "You can be rewarded for up to {count} friends a month.",
                cap,
            ).format(count=formatting.number(cap))
        )
    if mine.joined:
        lines += [
            "",
            _("Friends who joined: {joined}, of them rewarded: {rewarded}.").format(
                joined=formatting.number(mine.joined), rewarded=formatting.number(mine.rewarded)
            ),
        ]
    keyboard = InlineKeyboardMarkup(inline_keyboard=[[share_button(link, settings)]])
    await message.answer("\n".join(lines), reply_markup=keyboard)


# ------------------------------------------------------------------ the friend's side


async def opened_invite(
    message: Message, code: str, state: FSMContext, wallet: WalletService
) -> None:
    """`/start r<code>`: greet a newcomer with the inviter's first name and keep the code for
    after joining; tell a member that invite links are for new members; a code nobody has
    joins normally, without a word about it."""
    assert message.from_user is not None
    opened = await _service(wallet).opened(message.from_user.id, code)
    if not opened.valid:
        return
    if opened.own_link:
        await message.answer(
            _("This is your own invite link: send it to friends (/invite shows it again).")
        )
        return
    if opened.member:
        await message.answer(_("You are already a member: invite links are for new members."))
        return
    await state.update_data({INVITE_KEY: code, INVITE_AT_KEY: wallet.clock().isoformat()})
    name = html.escape(opened.ambassador_name or "")
    text = _("🎁 {name} invited you!").format(name=name) if name else _("🎁 A friend invited you!")
    await message.answer(
        text
        + " "
        + _(
            "Join now: after your first purchase you both get <b>+{pct}</b> off your next one."
        ).format(pct=formatting.pct(wallet.settings.growth.referral_bonus_pct))
    )


async def after_joining(
    bot: Bot, chat_id: int, conversation: dict[str, Any], wallet: WalletService
) -> None:
    """The friend holds a card now: record the referral (if the conversation kept a code) and
    say what it means."""
    code, opened_at = conversation.get(INVITE_KEY), conversation.get(INVITE_AT_KEY)
    if not code or not opened_at:
        return
    outcome = await _service(wallet).join(chat_id, str(code), datetime.fromisoformat(opened_at))
    pct = formatting.pct(wallet.settings.growth.referral_bonus_pct)
    if outcome.referral_id is not None:
        name = html.escape(outcome.ambassador_name or "")
        text = (
            _(
                "🤝 You joined through {name}'s invite: after your first purchase you both get "
                "<b>+{pct}</b> off your next purchase."
            ).format(name=name, pct=pct)
            if name
            else _(
                "🤝 You joined through a friend's invite: after your first purchase you both "
                "get <b>+{pct}</b> off your next purchase."
            ).format(pct=pct)
        )
    elif outcome.refused == referrals.HAS_PURCHASES:
        text = _(
            "Invite links are for new customers: this card has been used at our till before, "
            "so the invite brings no bonus. Your card works as usual."
        )
    elif outcome.refused in (referrals.MEMBER, referrals.ALREADY_REFERRED):
        text = _("You are already a member: invite links are for new members.")
    else:
        return
    await bot.send_message(chat_id, text)


# ------------------------------------------------------------------ reward messages


async def reward_message(
    db: Database, item: Outgoing, settings: Settings, now: datetime
) -> Rendered | None:
    """`referrals.REWARD_KIND`: the friend's or the ambassador's reward (or the capped note),
    read when sent; dropped when the reward was taken back meanwhile."""
    side = str(item.payload["side"])
    note = await db.read(
        referrals.reward_note, settings, int(item.payload["referral_id"]), side, now
    )
    if note is None:
        return None
    store = html.escape(settings.store.name)
    friend = html.escape(note.friend_name or "")
    if side == referrals.CAPPED:
        text = ngettext(
            "🎉 {name} made their first purchase at {store} thanks to your invite. You have "
            "reached this month's limit of {cap} rewarded friend, so this one brings no bonus; "
            "next month's friends count again.",
            "🎉 {name} made their first purchase at {store} thanks to your invite. You have "
            "reached this month's limit of {cap} rewarded friends, so this one brings no bonus; "
            "next month's friends count again.",
            note.cap,
        )
        name = friend or _("Your friend")
        return Rendered(text.format(name=name, store=store, cap=formatting.number(note.cap)))
    if not note.usable or note.bonus_pct is None or note.valid_until is None:
        return None
    pct, until = formatting.pct(note.bonus_pct), formatting.day(note.valid_until, settings)
    if side == referrals.FRIEND:
        text = _(
            "🎁 Thank you for your first purchase at {store}! As an invited friend you get "
            "<b>+{pct}</b> off your next purchase, until {until}. The till applies it by itself."
        )
        return Rendered(text.format(store=store, pct=pct, until=until))
    text = _(
        "🎉 {name} made their first purchase at {store} thanks to your invite! Your bonus: "
        "<b>+{pct}</b> off your next purchase, until {until}. The till applies it by itself."
    )
    return Rendered(text.format(name=friend or _("Your friend"), store=store, pct=pct, until=until))


# ------------------------------------------------------------------ the owner's figures


def stats_lines(kpis: Kpis, settings: Settings) -> list[str]:
    """The referrals line of /stats, when there is anything to say."""
    figures = kpis.referrals
    if not (figures.joined or figures.first_purchases or figures.revenue or figures.ambassadors):
        return []
    return [
        _(
            "Referrals: {joined} friends joined, {first} first purchases, their purchases "
            "{revenue}; members rewarded for inviting: {ambassadors}"
        ).format(
            joined=formatting.number(figures.joined),
            first=formatting.number(figures.first_purchases),
            revenue=formatting.money(figures.revenue, settings),
            ambassadors=formatting.number(figures.ambassadors),
        )
    ]


async def ambassador_section(
    reports: ReportService, now: datetime
) -> tuple[str, list[str], str | None] | None:
    """The digest's top ambassadors of its week (first names only), or None without any."""
    settings = reports.settings
    first, last = digest_week(now, settings)
    start, end = store_day_bounds(first, last, settings.store.tz)
    top = await reports.db.report(referrals.top_ambassadors, start, end, TOP_AMBASSADORS)
    if not top:
        return None
    items = [
        _("• {name}: friends joined {joined}, rewarded {rewarded}").format(
            name=html.escape(person.first_name or _("(data erased)")),
            joined=formatting.number(person.joined),
            rewarded=formatting.number(person.rewarded),
        )
        for person in top
    ]
    return _("<b>Top ambassadors</b> (inviting friends)"), items, None


def setup() -> Router:
    """This feature's router, built anew for each dispatcher."""
    router = Router(name=__name__)
    router.message.filter(Match(F.chat.type == "private"))
    router.message.register(invite, Command("invite"))
    return router
