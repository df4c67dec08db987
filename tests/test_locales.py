"""Every user-facing text is in the ru, en and et catalogs, translated and compiled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot.config import LANGUAGES, PROJECT_ROOT
from bot.i18n import LOCALES_DIR, create_i18n


def _extract(tmp_path: Path) -> set[str]:
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "--no-location",
            "-k",
            "__",
            "-k",
            "lazy_gettext",
            "-o",
            str(pot),
            "bot",
            "handlers",
            "services",
            "db",
        ],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
    with pot.open("rb") as fh:
        return {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(fh) if m.id}


@pytest.fixture(scope="module")
def code_msgids(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    return _extract(tmp_path_factory.mktemp("pot"))


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalog_is_complete_and_compiled(language: str, code_msgids: set[str]) -> None:
    po = LOCALES_DIR / language / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=language)
    ids = {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id}
    missing = sorted(code_msgids - ids)
    assert not missing, f"{language}: texts missing from {po}: {missing}"
    untranslated = [
        m.id
        for m in catalog
        if m.id and (m.fuzzy or not (m.string if isinstance(m.string, str) else all(m.string)))
    ]
    if language != "en":  # en may leave msgstr empty: gettext falls back to the English msgid
        assert not untranslated, f"{language}: untranslated: {untranslated}"
    assert po.with_suffix(".mo").exists(), "run `make locales`"
    assert po.with_suffix(".mo").stat().st_mtime >= po.stat().st_mtime, "stale .mo: make locales"


@pytest.mark.parametrize("language", LANGUAGES)
def test_placeholders_survive_translation(language: str) -> None:
    import re

    po = LOCALES_DIR / language / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=language)
    for message in catalog:
        if not message.id or not message.string:
            continue
        ids = [message.id] if isinstance(message.id, str) else list(message.id)
        strings = [message.string] if isinstance(message.string, str) else list(message.string)
        expected = set(re.findall(r"\{(\w+)", ids[-1]))
        for string in strings:
            if string:
                assert set(re.findall(r"\{(\w+)", string)) <= expected | set(
                    re.findall(r"\{(\w+)", ids[0])
                ), f"{language}: {message.id!r} → {string!r}"


@pytest.mark.parametrize(
    ("language", "one", "few", "many"),
    [
        ("ru", "1 секунду", "3 секунды", "5 секунд"),
        ("en", "1 second", "3 seconds", "5 seconds"),
        ("et", "1 sekund", "3 sekundit", "5 sekundit"),
    ],
)
def test_counts_take_the_plural_form_of_each_language(
    language: str, one: str, few: str, many: str
) -> None:
    """Counted texts go through ngettext: "1 second", never "1 seconds"; Russian has three
    forms (1 секунду, 3 секунды, 5 секунд)."""
    i18n = create_i18n()
    singular = "Too many messages. Please wait {seconds} second."
    plural = "Too many messages. Please wait {seconds} seconds."
    with i18n.context(), i18n.use_locale(language):
        texts = [i18n.gettext(singular, plural, n).format(seconds=n) for n in (1, 3, 5)]
    assert [one in texts[0], few in texts[1], many in texts[2]] == [True, True, True], texts
