"""The settings in sections: what each part of the bot reads.

`Settings` is built once from the validated environment (`config.env`) and is immutable. Each
section is a small frozen dataclass in the units the code works in — money in minor units,
time zones as `ZoneInfo`, quiet hours as times — so that nothing downstream converts again:

    settings.store.tz, settings.store.currency_exponent
    settings.pricing.amount_tiers            # [(threshold in minor units, pct), ...]
    settings.delivery.quiet_window           # (start, end) in store time, or None

A service takes the sections it uses (`SalesService(db, settings.pricing, …)`). Tests build
settings with `load_settings(env_file=None, flood_limit=1000, …)` and vary them with
`settings.with_changes(flood_limit=…)`: both take the environment's variable names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.numbers import get_currency_precision
from pydantic import SecretStr

from config.env import LANGUAGES, EnvSettings, read_env


@dataclass(frozen=True, slots=True)
class TelegramSettings:
    """Who the bot is and who works with it."""

    bot_token: SecretStr
    api_url: str | None  # a Bot API server other than api.telegram.org (self-hosted, tests)
    owner_ids: tuple[int, ...]
    staff_chat_id: int | None  # the staff group: its members are the cashiers
    secret_key: SecretStr  # signs the cards' QR payloads
    staff_cache_sec: int
    flood_limit: int  # updates per person per 10 s before they are ignored for a while

    def is_owner(self, user_id: int) -> bool:
        return user_id in self.owner_ids


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """The store: how it is presented, its time zone, currency and default language."""

    name: str
    address: str
    latitude: float | None
    longitude: float | None
    hours: str
    phone: str
    timezone: str
    tz: ZoneInfo
    currency: str
    currency_exponent: int  # digits of the minor unit: 2 for RUB/EUR, 0 for JPY
    default_language: str
    languages: tuple[str, ...] = LANGUAGES

    def to_minor(self, major: Decimal) -> int:
        return int((major * (10**self.currency_exponent)).to_integral_value())


@dataclass(frozen=True, slots=True)
class PricingSettings:
    """The till's prices (money in minor units)."""

    amount_tiers: tuple[tuple[int, int], ...]  # (threshold of one purchase, pct), ascending
    cumulative_tiers: tuple[tuple[int, int], ...]  # (spend so far, pct); empty when disabled
    cumulative_tiers_enabled: bool
    discount_max_pct: int
    max_purchase: int
    draft_ttl_min: int  # minutes a quote waits for ✅
    void_window_min: int  # minutes a cashier may void their own sale


@dataclass(frozen=True, slots=True)
class CardSettings:
    """Digital cards and the guards on linking a card."""

    digital: bool
    digital_from: int
    digital_to: int
    digital_pct: int
    bind_user_max_failures: int
    bind_card_max_failures: int


@dataclass(frozen=True, slots=True)
class EngagementSettings:
    """Scheduled jobs: surveys, win-back, birthdays, the welcome offer, the digest."""

    scheduler_enabled: bool
    survey_delay_min: int
    survey_cooldown_days: int
    survey_answer_days: int
    winback_hour: int
    winback_min_days: int
    winback_factor: float
    winback_cooldown_days: int
    winback_holdout_pct: int
    winback_bonus_pct: int
    winback_valid_days: int
    birthday_bonus_pct: int
    birthday_days_before: int
    birthday_valid_days: int
    birthday_holdout_pct: int
    welcome_bonus_pct: int
    welcome_valid_days: int
    digest_hour: int


@dataclass(frozen=True, slots=True)
class GrowthSettings:
    """Referrals (services.referrals) and the owner's campaigns (services.campaigns)."""

    referral_bonus_pct: int  # the reward offer each side gets at the friend's first purchase
    referral_valid_days: int
    referral_max_per_month: int  # rewarded referrals per ambassador per calendar month (UTC)
    campaign_holdout_pct: int  # the wizard's default hold-out share


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Proactive messages: Telegram's rate limits, retries and the store's quiet hours."""

    quiet_window: tuple[time, time] | None  # (start, end) in store time; None: no quiet hours
    rate_global: float
    rate_chat: float
    rate_group_per_min: int
    max_attempts: int


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """KPIs, the digest and exports (costs in major units, as the owner writes them)."""

    gross_margin_pct: Decimal
    program_cost_monthly: Decimal
    card_unit_cost: Decimal
    anomaly_daily_uses: int
    export_include_contacts: bool


@dataclass(frozen=True, slots=True)
class PrivacySettings:
    policy_version: str
    retention_months: int | None


@dataclass(frozen=True, slots=True)
class BackupSettings:
    dir: Path
    keep: int
    hour: int


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str | None
    secret: SecretStr | None
    host: str
    port: int
    path: str
    max_connections: int
    request_timeout: float


@dataclass(frozen=True, slots=True)
class MiniAppSettings:
    """The Mini App (bot/miniapp): where Telegram opens it and where the bot serves it."""

    url: str | None  # the public HTTPS address (ends with /); None: no menu button, no links
    host: str  # polling mode: the small web server's address (webhook mode: the webhook's)
    port: int
    auth_ttl_sec: int  # how old a Mini App's initData may be (its auth_date)
    qr_rotate_sec: int  # the live card's QR changes this often
    static_qr: bool  # False: the till refuses a bound card's static QR, wants the live one


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str
    redis_url: str | None  # shared conversation state (and more) for several workers


@dataclass(frozen=True, slots=True)
class Settings:
    telegram: TelegramSettings
    store: StoreSettings
    pricing: PricingSettings
    cards: CardSettings
    engagement: EngagementSettings
    growth: GrowthSettings
    delivery: DeliverySettings
    reports: ReportSettings
    privacy: PrivacySettings
    backup: BackupSettings
    webhook: WebhookSettings
    miniapp: MiniAppSettings
    database: DatabaseSettings
    log_level: str
    env: EnvSettings = field(repr=False, compare=False)  # what it was built from

    @classmethod
    def from_env(cls, env: EnvSettings) -> Settings:
        exponent = get_currency_precision(env.currency)

        def minor(major: Decimal) -> int:
            return int((major * (10**exponent)).to_integral_value())

        store = StoreSettings(
            name=env.store_name,
            address=env.store_address,
            latitude=env.store_latitude,
            longitude=env.store_longitude,
            hours=env.store_hours,
            phone=env.store_phone,
            timezone=env.timezone,
            tz=ZoneInfo(env.timezone),
            currency=env.currency,
            currency_exponent=exponent,
            default_language=env.default_language,
        )
        cumulative = tuple((minor(t), pct) for t, pct in env.cumulative_tiers)
        return cls(
            telegram=TelegramSettings(
                bot_token=env.bot_token,
                api_url=env.telegram_api_url,
                owner_ids=tuple(env.owner_ids),
                staff_chat_id=env.staff_chat_id,
                secret_key=env.secret_key,
                staff_cache_sec=env.staff_cache_sec,
                flood_limit=env.flood_limit,
            ),
            store=store,
            pricing=PricingSettings(
                amount_tiers=tuple((minor(t), pct) for t, pct in env.amount_tiers),
                cumulative_tiers=cumulative if env.cumulative_tiers_enabled else (),
                cumulative_tiers_enabled=env.cumulative_tiers_enabled,
                discount_max_pct=env.discount_max_pct,
                max_purchase=minor(env.max_purchase),
                draft_ttl_min=env.draft_ttl_min,
                void_window_min=env.void_window_min,
            ),
            cards=CardSettings(
                digital=env.digital_cards,
                digital_from=env.digital_card_from,
                digital_to=env.digital_card_to,
                digital_pct=env.digital_card_pct,
                bind_user_max_failures=env.bind_user_max_failures,
                bind_card_max_failures=env.bind_card_max_failures,
            ),
            engagement=EngagementSettings(
                scheduler_enabled=env.scheduler_enabled,
                survey_delay_min=env.survey_delay_min,
                survey_cooldown_days=env.survey_cooldown_days,
                survey_answer_days=env.survey_answer_days,
                winback_hour=env.winback_hour,
                winback_min_days=env.winback_min_days,
                winback_factor=env.winback_factor,
                winback_cooldown_days=env.winback_cooldown_days,
                winback_holdout_pct=env.winback_holdout_pct,
                winback_bonus_pct=env.winback_bonus_pct,
                winback_valid_days=env.winback_valid_days,
                birthday_bonus_pct=env.birthday_bonus_pct,
                birthday_days_before=env.birthday_days_before,
                birthday_valid_days=env.birthday_valid_days,
                birthday_holdout_pct=env.birthday_holdout_pct,
                welcome_bonus_pct=env.welcome_bonus_pct,
                welcome_valid_days=env.welcome_valid_days,
                digest_hour=env.digest_hour,
            ),
            growth=GrowthSettings(
                referral_bonus_pct=env.referral_bonus_pct,
                referral_valid_days=env.referral_valid_days,
                referral_max_per_month=env.referral_max_per_month,
                campaign_holdout_pct=env.campaign_holdout_pct,
            ),
            delivery=DeliverySettings(
                quiet_window=_quiet_window(env.quiet_hours),
                rate_global=env.delivery_rate_global,
                rate_chat=env.delivery_rate_chat,
                rate_group_per_min=env.delivery_rate_group_per_min,
                max_attempts=env.delivery_max_attempts,
            ),
            reports=ReportSettings(
                gross_margin_pct=env.gross_margin_pct,
                program_cost_monthly=env.program_cost_monthly,
                card_unit_cost=env.card_unit_cost,
                anomaly_daily_uses=env.anomaly_daily_uses,
                export_include_contacts=env.export_include_contacts,
            ),
            privacy=PrivacySettings(
                policy_version=env.privacy_policy_version,
                retention_months=env.retention_months,
            ),
            backup=BackupSettings(dir=env.backup_dir, keep=env.backup_keep, hour=env.backup_hour),
            webhook=WebhookSettings(
                url=env.webhook_url,
                secret=env.webhook_secret,
                host=env.webhook_host,
                port=env.webhook_port,
                path=env.webhook_path,
                max_connections=env.webhook_max_connections,
                request_timeout=env.webhook_request_timeout,
            ),
            miniapp=MiniAppSettings(
                url=env.miniapp_url,
                host=env.web_host,
                port=env.web_port,
                auth_ttl_sec=env.miniapp_auth_ttl_sec,
                qr_rotate_sec=env.qr_rotate_sec,
                static_qr=env.static_qr,
            ),
            database=DatabaseSettings(url=env.database_url, redis_url=env.redis_url),
            log_level=env.log_level,
            env=env,
        )

    def with_changes(self, **variables: Any) -> Settings:
        """The same settings with some variables changed (lower-case names, as in the
        environment: `settings.with_changes(flood_limit=1000)`), validated again."""
        values = {name: getattr(self.env, name) for name in EnvSettings.model_fields}
        values.update(variables)
        return Settings.from_env(EnvSettings.model_validate(values))

    def require_bot(self) -> None:
        """Refuse to start the bot without the settings it cannot run without (all at once)."""
        self.env.require_bot()


def load_settings(
    *, require_bot: bool = False, env_file: str | None = ".env", **variables: Any
) -> Settings:
    """Read the environment (and `env_file`; None: only the environment and `variables`),
    validate every variable — `SettingsError` lists every problem at once — and build the
    sections. `variables` replace environment variables (lower-case names)."""
    return Settings.from_env(read_env(require_bot=require_bot, _env_file=env_file, **variables))


def _quiet_window(text: str) -> tuple[time, time] | None:
    if not text:
        return None
    start, end = (part.strip() for part in text.split("-"))
    return _hhmm(start), _hhmm(end)


def _hhmm(text: str) -> time:
    hours, _, minutes = text.partition(":")
    return time(int(hours) % 24, int(minutes or 0))
