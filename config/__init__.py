"""The bot's settings: read once from the environment and `.env`, used in sections.

This package is the ground floor: it imports nothing of the project's, and every layer
(`bot`, `handlers`, `services`, `db`) may read it. `load_settings()` reads and validates the
environment (`config.env`: one variable per field, every one documented in `.env.example`,
every problem reported at once, naming the variable); `Settings` hands it out in sections
(`config.sections`) so that a service takes only the part it needs: the till its `pricing`,
the delivery sender its `delivery`, and so on.
"""

from config.env import LANGUAGES, PROJECT_ROOT, SettingsError
from config.sections import (
    BackupSettings,
    CardSettings,
    DatabaseSettings,
    DeliverySettings,
    EngagementSettings,
    PricingSettings,
    PrivacySettings,
    ReportSettings,
    Settings,
    StoreSettings,
    TelegramSettings,
    WebhookSettings,
    load_settings,
)

__all__ = [
    "LANGUAGES",
    "PROJECT_ROOT",
    "BackupSettings",
    "CardSettings",
    "DatabaseSettings",
    "DeliverySettings",
    "EngagementSettings",
    "PricingSettings",
    "PrivacySettings",
    "ReportSettings",
    "Settings",
    "SettingsError",
    "StoreSettings",
    "TelegramSettings",
    "WebhookSettings",
    "load_settings",
]
