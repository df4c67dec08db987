"""Settings: every variable documented, wrong values named with the expected form."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from bot.config import PROJECT_ROOT, Settings, SettingsError, load_settings


def test_env_example_documents_every_setting_and_loads() -> None:
    example = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^([A-Z_]+)=", example, flags=re.M))
    assert documented == {name.upper() for name in Settings.model_fields}
    settings = Settings(_env_file=PROJECT_ROOT / ".env.example")
    assert settings.staff_chat_id is None
    assert settings.owner_ids == []
    assert settings.tz.key == "Europe/Moscow"


def test_lists_tiers_and_money(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNER_IDS", "11, 22,33")
    monkeypatch.setenv("AMOUNT_TIERS", "10000:10, 5000:7")
    monkeypatch.setenv("MAX_PURCHASE", "2500.50")
    settings = load_settings(_env_file=None)
    assert settings.owner_ids == [11, 22, 33]
    assert settings.amount_tiers == [(Decimal(5000), 7), (Decimal(10000), 10)]
    assert settings.amount_tiers_minor == [(500000, 7), (1000000, 10)]
    assert settings.max_purchase_minor == 250050


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
        load_settings(_env_file=None)
    assert str(info.value).startswith(expected)
    assert "\n" not in str(info.value)


def test_bot_refuses_to_start_without_token_or_secret(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"BOT_TOKEN is empty: copy \.env\.example"):
        Settings(_env_file=None).require_bot()
    with pytest.raises(SettingsError, match="SECRET_KEY must be at least 16"):
        Settings(_env_file=None, bot_token="1:x", secret_key="short").require_bot()
    Settings(_env_file=None, bot_token="1:x", secret_key="s" * 16).require_bot()


def test_quiet_window_parses_store_time() -> None:
    window = Settings(_env_file=None, quiet_hours="21:30-09").quiet_window
    assert window is not None
    assert (window[0].hour, window[0].minute, window[1].hour) == (21, 30, 9)
    assert Settings(_env_file=None, quiet_hours="").quiet_window is None
