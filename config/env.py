"""The environment, read and validated: one field per variable (pydantic-settings).

Every variable is documented in `.env.example`; its name here is its name there. A wrong value
raises `SettingsError` whose lines name each variable and the form it expects (all problems at
once). The bot does not use this flat view: `config.sections.Settings` hands it out in sections.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.numbers import UnknownCurrencyError, get_currency_precision, get_currency_symbol
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LANGUAGES = ("ru", "en", "et")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(Exception):
    """Settings are missing or malformed: one line per problem for the operator.

    `problems` holds every line (all of them are reported at once, so that one edit of `.env`
    can fix them all); `str()` joins them with newlines.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems: tuple[str, ...] = problems


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, int):
        return [value]
    return value


def _parse_tiers(value: Any) -> Any:
    """`"5000:7, 10000:10"` → `[(Decimal("5000"), 7), (Decimal("10000"), 10)]` (major units)."""
    if not isinstance(value, str):
        return value
    tiers: list[tuple[Decimal, int]] = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        threshold, sep, pct = part.partition(":")
        if not sep:
            raise ValueError("expected THRESHOLD:PCT pairs, e.g. 5000:7,10000:10")
        try:
            tiers.append((Decimal(threshold.strip()), int(pct.strip())))
        except (InvalidOperation, ValueError) as exc:
            raise ValueError("expected THRESHOLD:PCT pairs, e.g. 5000:7,10000:10") from exc
    return tiers


class EnvSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- Telegram -------------------------------------------------------------------------
    bot_token: SecretStr = SecretStr("")
    telegram_api_url: str | None = None
    owner_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    staff_chat_id: int | None = None
    secret_key: SecretStr = SecretStr("")

    # --- Storage, locale ------------------------------------------------------------------
    database_url: str = "sqlite+aiosqlite:///data/loyalty.db"
    redis_url: str | None = None
    timezone: str = "Europe/Moscow"
    currency: str = "RUB"
    default_language: str = "ru"
    log_level: str = "INFO"

    # --- Store info -----------------------------------------------------------------------
    store_name: str = "Our Store"
    store_address: str = ""
    store_latitude: float | None = None
    store_longitude: float | None = None
    store_hours: str = ""
    store_phone: str = ""

    # --- Pricing (money in major units; converted to minor units by the properties) -------
    amount_tiers: Annotated[list[tuple[Decimal, int]], NoDecode] = Field(default_factory=list)
    cumulative_tiers_enabled: bool = False
    cumulative_tiers: Annotated[list[tuple[Decimal, int]], NoDecode] = Field(default_factory=list)
    discount_max_pct: int = Field(default=20, ge=0, le=99)
    max_purchase: Decimal = Decimal("1000000")
    draft_ttl_min: int = Field(default=10, ge=1)
    void_window_min: int = Field(default=30, ge=0)

    # --- Cards and binding ----------------------------------------------------------------
    digital_cards: bool = True
    digital_card_from: int = Field(default=900000001, ge=1)
    digital_card_to: int = Field(default=999999999, ge=1)
    digital_card_pct: int = Field(default=5, ge=1, le=99)
    bind_user_max_failures: int = Field(default=5, ge=1)
    bind_card_max_failures: int = Field(default=10, ge=1)
    staff_cache_sec: int = Field(default=60, ge=0, le=60)

    # --- Engagement -----------------------------------------------------------------------
    scheduler_enabled: bool = True
    quiet_hours: str = "21-09"
    survey_delay_min: int = Field(default=120, ge=0)
    survey_cooldown_days: int = Field(default=30, ge=0)
    survey_answer_days: int = Field(default=7, ge=1)
    winback_hour: int = Field(default=11, ge=0, le=23)
    winback_min_days: int = Field(default=45, ge=1)
    winback_factor: float = Field(default=3.0, gt=0)
    winback_cooldown_days: int = Field(default=60, ge=0)
    winback_holdout_pct: int = Field(default=10, ge=0, le=100)
    winback_bonus_pct: int = Field(default=5, ge=0, le=99)
    winback_valid_days: int = Field(default=14, ge=1)
    birthday_bonus_pct: int = Field(default=10, ge=0, le=99)
    birthday_days_before: int = Field(default=0, ge=0, le=30)
    birthday_valid_days: int = Field(default=7, ge=1)
    birthday_holdout_pct: int = Field(default=10, ge=0, le=100)
    welcome_bonus_pct: int = Field(default=0, ge=0, le=99)
    welcome_valid_days: int = Field(default=30, ge=1)
    digest_hour: int = Field(default=9, ge=0, le=23)
    backup_dir: Path = Path("data/backups")
    backup_keep: int = Field(default=7, ge=1)
    backup_hour: int = Field(default=3, ge=0, le=23)
    delivery_rate_global: float = Field(default=25.0, gt=0)
    delivery_rate_chat: float = Field(default=1.0, gt=0)
    delivery_rate_group_per_min: int = Field(default=20, ge=1)
    delivery_max_attempts: int = Field(default=8, ge=1)

    # --- Growth: referrals and owner campaigns -------------------------------------------
    referral_bonus_pct: int = Field(default=5, ge=1, le=99)
    referral_valid_days: int = Field(default=30, ge=1)
    referral_max_per_month: int = Field(default=5, ge=0)
    campaign_holdout_pct: int = Field(default=10, ge=0, le=50)

    # --- KPIs and reports -----------------------------------------------------------------
    gross_margin_pct: Decimal = Field(default=Decimal("30"), ge=0, le=100)
    program_cost_monthly: Decimal = Field(default=Decimal("0"), ge=0)
    card_unit_cost: Decimal = Field(default=Decimal("0"), ge=0)
    anomaly_daily_uses: int = Field(default=3, ge=1)
    export_include_contacts: bool = False

    # --- Privacy, abuse, webhook ----------------------------------------------------------
    privacy_policy_version: str = "1"
    retention_months: int | None = Field(default=None, ge=1)
    flood_limit: int = Field(default=20, ge=1)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_host: str = "127.0.0.1"
    webhook_port: int = Field(default=8080, ge=1, le=65535)
    webhook_path: str = "/telegram/webhook"
    webhook_max_connections: int = Field(default=100, ge=1, le=100_000)
    webhook_request_timeout: float = Field(default=10.0, gt=0, le=300)

    # --- Mini App -------------------------------------------------------------------------
    miniapp_url: str | None = None
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8081, ge=1, le=65535)
    miniapp_auth_ttl_sec: int = Field(default=86400, ge=60)
    qr_rotate_sec: int = Field(default=30, ge=10, le=600)
    static_qr: bool = True

    # --- Validators -----------------------------------------------------------------------
    @field_validator("owner_ids", mode="before")
    @classmethod
    def _owner_ids(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("amount_tiers", "cumulative_tiers", mode="before")
    @classmethod
    def _tiers(cls, value: Any) -> Any:
        return _parse_tiers(value)

    @field_validator("amount_tiers", "cumulative_tiers")
    @classmethod
    def _tiers_sorted(cls, value: list[tuple[Decimal, int]]) -> list[tuple[Decimal, int]]:
        for threshold, pct in value:
            if threshold <= 0 or not 1 <= pct <= 99:
                raise ValueError("thresholds must be positive and percentages 1-99")
        return sorted(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("expected an IANA time zone such as Europe/Moscow") from exc
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        value = value.strip().upper()
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError("expected an ISO 4217 code such as RUB or EUR")
        try:
            get_currency_symbol(value, "en")
            get_currency_precision(value)
        except UnknownCurrencyError as exc:
            raise ValueError("expected an ISO 4217 code such as RUB or EUR") from exc
        return value

    @field_validator("default_language")
    @classmethod
    def _language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"expected one of {', '.join(LANGUAGES)}")
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        if value.strip() and not re.fullmatch(
            r"\s*\d{1,2}(:\d{2})?\s*-\s*\d{1,2}(:\d{2})?\s*", value
        ):
            raise ValueError("expected HH-HH or HH:MM-HH:MM in store time, e.g. 21-09, or empty")
        return value.strip()

    @field_validator(
        "telegram_api_url",
        "webhook_url",
        "miniapp_url",
        "staff_chat_id",
        "redis_url",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("miniapp_url")
    @classmethod
    def _miniapp_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        # Telegram opens Mini Apps over HTTPS only; the loopback is for a local try-out (demo).
        if not re.fullmatch(r"(https://[^\s/?#]+|http://127\.0\.0\.1(:\d+)?)(/[^\s?#]*)?", value):
            raise ValueError(
                "expected the Mini App's public HTTPS address, e.g. https://shop.example/app/ "
                "(Telegram opens Mini Apps over HTTPS only)"
            )
        return value if value.endswith("/") else value + "/"

    @field_validator("retention_months", "store_latitude", "store_longitude", mode="before")
    @classmethod
    def _empty_number_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    def require_bot(self) -> None:
        """Refuse to start the bot without the settings it cannot run without (all at once)."""
        problems = _bot_problems(self.bot_token, self.secret_key)
        if problems:
            raise SettingsError(*problems)


_EXPECTED = {
    "owner_ids": "expected comma-separated numeric Telegram user ids, e.g. 11111,22222",
    "staff_chat_id": "expected the numeric id of the staff group, e.g. -1001234567890",
}
_BY_ERROR_TYPE = {
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "decimal_parsing": "expected a number such as 1234.50",
    "bool_parsing": "expected true or false",
}


class _BotSecrets(BaseSettings):
    """The two values the bot cannot start without, read from the same sources as
    `EnvSettings`:
    when another setting is malformed these can still be checked, so that every problem is
    reported in one go."""

    model_config = EnvSettings.model_config

    bot_token: SecretStr = SecretStr("")
    secret_key: SecretStr = SecretStr("")


def _bot_problems(bot_token: SecretStr, secret_key: SecretStr) -> list[str]:
    problems = []
    token = bot_token.get_secret_value().strip()
    if not token:
        problems.append(
            "BOT_TOKEN is empty: to try the bot without Telegram, run `make demo`; to run it, "
            "copy .env.example to .env, get a token from @BotFather and set BOT_TOKEN, "
            "SECRET_KEY, OWNER_IDS and STAFF_CHAT_ID"
        )
    else:
        # The form aiogram accepts (it refuses anything else with a traceback of its own).
        bot_id, sep, rest = token.partition(":")
        if not (sep and bot_id.isdigit() and rest) or any(c.isspace() for c in token):
            problems.append(
                "Invalid setting BOT_TOKEN: expected the token @BotFather gives, "
                "e.g. 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
            )
    # Nothing configured at all (a fresh clone): the line above already names SECRET_KEY.
    if len(secret_key.get_secret_value()) < 16 and (token or secret_key.get_secret_value()):
        problems.append(
            "SECRET_KEY must be at least 16 characters (it signs the QR codes); "
            'generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    return problems


def _describe(error: Any) -> tuple[str, str]:
    """(field, "Invalid setting FIELD: expected …") for one pydantic error."""
    field = str(error["loc"][0]) if error["loc"] else "?"
    expected = _EXPECTED.get(field) or _BY_ERROR_TYPE.get(error["type"])
    if expected is None:
        message = error["msg"].removeprefix("Value error, ")
        expected = message if message.startswith("expected") else f"expected: {message}"
    return field, f"Invalid setting {field.upper()}: {expected}"


def read_env(*, require_bot: bool = False, **overrides: Any) -> EnvSettings:
    """Read and validate the environment, reporting every malformed variable at once, one
    line each. `overrides` replace variables (lower-case names, e.g. `flood_limit=1000`).

    `require_bot=True` (commands that run the bot) also checks BOT_TOKEN and SECRET_KEY,
    together with the rest: one `SettingsError` lists every problem.
    """
    problems: list[str] = []
    try:
        env: EnvSettings | None = EnvSettings(**overrides)
    except ValidationError as exc:
        env = None
        seen: set[str] = set()
        for error in exc.errors():
            field, line = _describe(error)
            if field not in seen:  # OWNER_IDS=a,b: one line, not one per item
                seen.add(field)
                problems.append(line)
    if require_bot:
        secrets = env if env is not None else _BotSecrets(**overrides)
        problems = _bot_problems(secrets.bot_token, secrets.secret_key) + problems
    if problems:
        raise SettingsError(*problems)
    assert env is not None
    return env
