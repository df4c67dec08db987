"""Settings: every variable documented, wrong values named with the expected form, and the
sections each part of the bot reads."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from config import PROJECT_ROOT, SettingsError, load_settings
from config.env import EnvSettings


def test_env_example_documents_every_setting_and_loads() -> None:
    example = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^([A-Z_]+)=", example, flags=re.M))
    assert documented == {name.upper() for name in EnvSettings.model_fields}
    settings = load_settings(env_file=str(PROJECT_ROOT / ".env.example"))
    assert settings.telegram.staff_chat_id is None
    assert settings.telegram.owner_ids == ()
    assert settings.store.tz.key == "Europe/Moscow"


def test_lists_tiers_and_money(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNER_IDS", "11, 22,33")
    monkeypatch.setenv("AMOUNT_TIERS", "10000:10, 5000:7")
    monkeypatch.setenv("MAX_PURCHASE", "2500.50")
    settings = load_settings(env_file=None)
    assert settings.telegram.owner_ids == (11, 22, 33)
    assert settings.env.amount_tiers == [(Decimal(5000), 7), (Decimal(10000), 10)]
    assert settings.pricing.amount_tiers == ((500000, 7), (1000000, 10))  # minor units, sorted
    assert settings.pricing.max_purchase == 250050


def test_cumulative_tiers_count_only_when_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUMULATIVE_TIERS", "20000:7")
    assert load_settings(env_file=None).pricing.cumulative_tiers == ()
    monkeypatch.setenv("CUMULATIVE_TIERS_ENABLED", "true")
    assert load_settings(env_file=None).pricing.cumulative_tiers == ((2000000, 7),)


def test_with_changes_validates_the_changed_variables_again() -> None:
    settings = load_settings(env_file=None, flood_limit=5)
    assert settings.with_changes(flood_limit=7).telegram.flood_limit == 7
    assert settings.telegram.flood_limit == 5  # settings are immutable
    with pytest.raises(ValueError):
        settings.with_changes(flood_limit=0)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("OWNER_IDS", "alice,bob", "Invalid setting OWNER_IDS: expected comma-separated"),
        ("TIMEZONE", "Mars/Olympus", "Invalid setting TIMEZONE: expected an IANA time zone"),
        ("CURRENCY", "RUBLES", "Invalid setting CURRENCY: expected an ISO 4217 code"),
        ("STAFF_CHAT_ID", "staff", "Invalid setting STAFF_CHAT_ID: expected the numeric id"),
        ("AMOUNT_TIERS", "5000-7", "Invalid setting AMOUNT_TIERS: expected THRESHOLD:PCT"),
        ("QUIET_HOURS", "night", "Invalid setting QUIET_HOURS: expected HH-HH"),
        ("DEFAULT_LANGUAGE", "de", "Invalid setting DEFAULT_LANGUAGE: expected one of ru, en, et"),
    ],
)
def test_wrong_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    assert str(info.value).startswith(expected)
    assert "\n" not in str(info.value)


def test_every_wrong_value_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNER_IDS", "alice,bob")
    monkeypatch.setenv("TIMEZONE", "Mars/Olympus")
    monkeypatch.setenv("CURRENCY", "RUBLES")
    monkeypatch.setenv("FLOOD_LIMIT", "many")
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    problems = info.value.problems
    # One line per variable (OWNER_IDS has two bad items but one line), in .env.example order.
    assert [p.split(":")[0] for p in problems] == [
        "Invalid setting OWNER_IDS",
        "Invalid setting TIMEZONE",
        "Invalid setting CURRENCY",
        "Invalid setting FLOOD_LIMIT",
    ]
    assert problems[3] == "Invalid setting FLOOD_LIMIT: expected a whole number"
    assert all("\n" not in p for p in problems)
    assert str(info.value) == "\n".join(problems)


def test_bot_refuses_to_start_without_token_or_secret(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None).require_bot()
    # Nothing configured (a fresh clone): one line, which names SECRET_KEY and the demo too.
    (bot_token,) = info.value.problems
    assert bot_token.startswith("BOT_TOKEN is empty: to try the bot without Telegram, run `make")
    assert "SECRET_KEY" in bot_token
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None, secret_key="short").require_bot()
    bot_token, secret_key = info.value.problems  # both, not just the first
    assert bot_token.startswith("BOT_TOKEN is empty")
    assert secret_key.startswith("SECRET_KEY must be at least 16")
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None, bot_token="1:x", secret_key="short").require_bot()
    assert [p[:30] for p in info.value.problems] == ["SECRET_KEY must be at least 16"]
    load_settings(env_file=None, bot_token="1:x", secret_key="s" * 16).require_bot()


@pytest.mark.parametrize("token", ["12345", "bot:12345", "12345:", "123 45:abc"])
def test_a_token_of_the_wrong_form_is_named(token: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None, bot_token=token, secret_key="s" * 16).require_bot()
    assert info.value.problems == (
        "Invalid setting BOT_TOKEN: expected the token @BotFather gives, "
        "e.g. 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
    )


def test_settings_for_the_bot_report_missing_and_malformed_together(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SECRET_KEY=short\nSTAFF_CHAT_ID=staff\n", encoding="utf-8")
    monkeypatch.setenv("OWNER_IDS", "alice")
    with pytest.raises(SettingsError) as info:
        load_settings(require_bot=True, env_file=str(env_file))
    assert [p.split(":")[0] for p in info.value.problems] == [
        "BOT_TOKEN is empty",
        "SECRET_KEY must be at least 16 characters (it signs the QR codes); generate one with",
        "Invalid setting OWNER_IDS",
        "Invalid setting STAFF_CHAT_ID",
    ]
    monkeypatch.setenv("OWNER_IDS", "1")
    monkeypatch.setenv("STAFF_CHAT_ID", "-100")
    monkeypatch.setenv("BOT_TOKEN", "1:x")
    monkeypatch.setenv("SECRET_KEY", "s" * 16)
    settings = load_settings(require_bot=True, env_file=str(env_file))
    assert settings.telegram.staff_chat_id == -100


def test_quiet_window_parses_store_time() -> None:
    window = load_settings(env_file=None, quiet_hours="21:30-09").delivery.quiet_window
    assert window is not None
    assert (window[0].hour, window[0].minute, window[1].hour) == (21, 30, 9)
    assert load_settings(env_file=None, quiet_hours="").delivery.quiet_window is None
