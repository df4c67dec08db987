"""The Mini App page's own words, in the caller's language (the bot's words, such as the
till's quote and receipt, come from the same views the chat uses)."""

from __future__ import annotations

from aiogram.utils.i18n import gettext as _


def page_texts() -> dict[str, str]:
    """Every label the page shows, translated for the current locale."""
    return {
        "tab_card": _("My card"),
        "tab_till": _("Till"),
        "tab_dashboard": _("Dashboard"),
        "card_number": _("Card"),
        "discount": _("discount"),
        "saved": _("Saved so far"),
        "next_tier": _("Spend {amount} more to reach {pct}."),
        "top_tier": _("You have the highest discount."),
        "offers": _("Personal offers"),
        "offer_until": _("{pct} until {date}"),
        "recent": _("Recent purchases"),
        "no_purchases": _("No purchases yet."),
        "cancelled": _("(cancelled)"),
        "purchase_line": _("{when}: {amount}, saved {saved}"),
        "live_hint": _(
            "Show this code at the till. It changes every {sec} s, so a screenshot will not work."
        ),
        "brightness": _("Turn your screen brightness up for the scanner."),
        "home_screen": _("Add to home screen"),
        "scan": _("Scan QR code"),
        "scan_hint": _("Point the camera at the customer's live card"),
        "number_placeholder": _("Card number or scanned code"),
        "find": _("Find"),
        "amount": _("Amount"),
        "quote": _("Quote"),
        "confirm": _("✅ Confirm"),
        "cancel": _("❌ Cancel"),
        "void": _("↩️ Void"),
        "next_customer": _("Next customer"),
        "period_7": _("7 days"),
        "period_30": _("30 days"),
        "period_90": _("90 days"),
        "vs_previous": _("vs the previous period"),
        "branch": _("Branch"),  # the dashboard's branch switch (a chain only)
        "closed_branch": _("{name} (closed)"),
        "export": _("Download XLSX export"),
        "unauthorized": _("Open this page from the bot's menu in Telegram."),
        "forbidden": _("This is not available to you."),
        "offline": _("The store's server is not answering. Check the connection and try again."),
    }
