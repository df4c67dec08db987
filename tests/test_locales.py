"""Every user-facing text is in the ru, en and et catalogs, translated and compiled."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot.i18n import LOCALES_DIR, create_i18n
from config import LANGUAGES, PROJECT_ROOT


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


# ------------------------------------------------------------ Estonian: one form of address

# The bot speaks to everyone — customers, cashiers, owners — with the informal "sina". The
# formal/plural "teie" shows up as pronouns and as 2nd-person-plural verbs; both are caught here.
# fmt: off
_FORMAL_PRONOUNS = frozenset({
    "te", "teie", "teil", "teid", "teile", "teilt", "teiega", "teiesse", "teieni", "teieta",
    "teiena", "teis",
})
# fmt: on
# 2nd-person-plural present forms: "-te" also ends countless genitive plurals ("sõnumite",
# "katsete"), so these are listed rather than matched by their ending; so are the plural
# imperatives after l, n, r ("olge", "minge"), whose ending also ends "selge", "valge", "külge".
# fmt: off
_FORMAL_VERBS = frozenset({
    "olete", "saate", "soovite", "tahate", "võite", "peate", "oskate", "teate", "palute",
    "kasutate", "kirjutate", "vajutate", "saadate", "näete", "leiate", "ostate", "annate",
    "jätkate", "nõustute", "kustutate", "muudate", "ootate", "alustate", "teete", "lähete",
    "tulete", "maksate", "vastate", "räägite", "küsite", "loete", "näitate", "liitute", "valite",
    "lülitate", "vaatate", "olge", "tulge", "minge", "pange",
})
# fmt: on
# Endings that mark a plural imperative (vajutage, proovige, näidake, saatke, hoidke), a plural
# past (säästsite, kiitsite) or a plural conditional (soovitaksite). An imperative's "-ge"/"-ke"
# follows a single vowel after a consonant ("-ta-ge"), or d, t, s ("saat-ke"): a long vowel or a
# diphthong before it is an ordinary word ("liige", "kõige", "kõike", "müüke", "väike").
_FORMAL_ENDINGS = re.compile(r"(?:[^aeiouõäöü][aeiouõäöü][gk]e|[bdpst]ke|site)$")
_WORD = re.compile(r"[^\W\d_]+")


def formal_words(text: str) -> list[str]:
    """The formal forms of address in an Estonian text (placeholders and tags ignored)."""
    plain = re.sub(r"\{\w+\}|<[^>]+>|/\w+", " ", text)
    found = []
    for word in _WORD.findall(plain):
        lower = word.lower()
        if (
            lower in _FORMAL_PRONOUNS
            or lower in _FORMAL_VERBS
            or (len(lower) > 4 and _FORMAL_ENDINGS.search(lower))
        ):
            found.append(word)
    return found


def test_the_formal_detector_knows_formal_from_ordinary_words() -> None:
    formal = (
        "Teie Saatke vajutage proovige näidake võtke olete saate säästsite kiitsite "
        "soovitaksite Te teil teid teile teilt teiega pöörduge kontrollige hoidke laadige andke "
        "alustate olge"
    )
    for word in formal.split():
        assert formal_words(word) == [word]
    ordinary = (
        "kõige rohkem, ette, tunde, aste, kaste, poe, kogemuse, väike, teise kaardiga, teist "
        "kaarti, sõnumite, katsete, numbrite, tasemete, kõigepealt, küsimuste, liige, müüke, "
        "selge, valge, tagakülge, kõike, tšekke, vajuta, saada, proovi, näita, kirjuta, "
        "säästsid, kiitsid, sina, sinu, sul, sind, sulle"
    )
    assert formal_words(ordinary) == []


def test_estonian_speaks_informally_everywhere() -> None:
    """Every et text and the et privacy policy use "sina", never the formal "teie"."""
    po = LOCALES_DIR / "et" / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as fh:
        catalog = read_po(fh, locale="et")
    offenders = []
    for message in catalog:
        if not message.id:
            continue
        strings = [message.string] if isinstance(message.string, str) else message.string
        for string in strings:
            if found := formal_words(string):
                offenders.append((found, string))
    policy = (LOCALES_DIR / "et" / "privacy.md").read_text(encoding="utf-8")
    for line in policy.splitlines():
        if found := formal_words(line):
            offenders.append((found, line))
    assert not offenders, "\n".join(f"{found}: {text!r}" for found, text in offenders)
