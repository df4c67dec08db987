"""Property tests for everything that parses untrusted input: never an unhandled exception,
never a wrong acceptance."""

from __future__ import annotations

import importlib
import pkgutil
import re
import tempfile
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiogram.filters.callback_data import CallbackData
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import handlers
from services import qr_payload
from services.cards import normalize_number
from services.errors import DomainError, InvalidAmount, InvalidCardNumber
from services.money import parse_amount

SECRET = "test-secret-key-0123456789abcdef"
FUZZ = settings(max_examples=200, deadline=None)

# ---------------------------------------------------------------------------------- amounts

_AMOUNT_CHARS = set("0123456789.,+-−'’_ \t\n\r\u00a0\u202f\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u2029")
# One currency word or sign may stand before or after the number (ignored).
_CURRENCY_MARK = re.compile(
    r"^(?:₽|€|рублей|рубля|рубль|руб\.?|р\.?|rub\.?|rur|eurot|euro|eur|евро)"
    r"|(?:₽|€|рублей|рубля|рубль|руб\.?|р\.?|rub\.?|rur|eurot|euro|eur|евро)$",
    re.IGNORECASE,
)
_amount_texts = st.one_of(
    st.text(max_size=40),
    # Numbers next to currency marks, separators and noise: the shapes the till sees.
    st.lists(
        st.sampled_from(
            ["2", "500", "99", "999", ",", ".", " ", "₽", "р.", "руб", "RUB", "€", "eur", "-", "x"]
        ),
        max_size=8,
    ).map("".join),
)


@FUZZ
@given(_amount_texts)
@example("1e5")
@example("٣٠٠")  # Arabic-Indic digits
@example("NaN")
@example("1_000")
@example("Infinity")
@example("1,234.567,89")  # mixed thousands separators: was a ValueError from int()
@example("₽2,500")
@example("2500 р р")
def test_parse_amount_never_crashes_and_accepts_only_amounts(text: str) -> None:
    try:
        minor = parse_amount(text, 2, max_minor=10**11)
    except InvalidAmount as exc:
        assert exc.reason in {
            "empty",
            "format",
            "zero",
            "negative",
            "precision",
            "too_large",
            "ambiguous",
        }
        return
    assert isinstance(minor, int) and 0 < minor <= 10**11
    stripped = _CURRENCY_MARK.sub("", text.strip(), count=1).strip()
    # Only digits, separators and spaces. Other scripts' decimal digits (٣٠٠, ３００) are read
    # for what they mean, like Python's int() does.
    assert all(c in _AMOUNT_CHARS or c.isspace() or c.isdecimal() for c in stripped), text
    digits = "".join(str(unicodedata.decimal(c)) for c in stripped if c.isdecimal())
    # The digits typed are the digits understood: nothing invented, nothing dropped...
    assert int(digits) in (minor, minor // 10, minor // 100), text


@FUZZ
@given(st.integers(min_value=1, max_value=10**11), st.sampled_from(["plain", "comma", "space"]))
def test_parse_amount_round_trips_formatted_amounts(minor: int, style: str) -> None:
    value = Decimal(minor).scaleb(-2)
    text = {
        "plain": f"{value:.2f}",
        "comma": f"{value:,.2f}",
        "space": f"{value:,.2f}".replace(",", " ").replace(".", ","),
    }[style]
    assert parse_amount(text, 2) == minor


# ------------------------------------------------------------------------------ card numbers


@FUZZ
@given(st.text(max_size=70))
@example("١٢٣٤٥")
@example("1234\u20155678")
def test_normalize_number_accepts_only_ascii_digits(text: str) -> None:
    try:
        number = normalize_number(text)
    except InvalidCardNumber:
        return
    assert re.fullmatch(r"[0-9]{4,19}", number), text
    # Only separators were dropped, in order.
    assert re.sub(r"[\s\-\u00a0\u2010-\u2015]", "", text.strip()) == number


@FUZZ
@given(st.integers(min_value=1000, max_value=10**19 - 1), st.sampled_from([" ", "-", "\u00a0"]))
def test_normalize_number_reads_grouped_numbers(n: int, sep: str) -> None:
    number = str(n)
    grouped = sep.join(number[i : i + 3] for i in range(0, len(number), 3))
    assert normalize_number(f" {grouped} ") == number


# ------------------------------------------------------------------------------- QR payloads


@FUZZ
@given(st.text(max_size=80))
@example("c100045_AAAAAAAAAAAAAAAA")
@example("c١٠٠٠٤٥_AAAAAAAAAAAAAAAA")
def test_verify_accepts_only_what_the_key_signed(text: str) -> None:
    try:
        number = qr_payload.verify(SECRET, text)
    except qr_payload.InvalidPayload:
        return
    assert qr_payload.sign(SECRET, number) == text.strip()


@FUZZ
@given(
    st.integers(min_value=1000, max_value=10**12),
    st.integers(min_value=0, max_value=200),
    st.characters(categories=["L", "N", "P"]),
)
def test_a_tampered_payload_is_refused(n: int, position: int, replacement: str) -> None:
    payload = qr_payload.sign(SECRET, str(n))
    i = position % len(payload)
    tampered = payload[:i] + replacement + payload[i + 1 :]
    assume(tampered != payload)
    with pytest.raises(qr_payload.InvalidPayload):
        qr_payload.verify(SECRET, tampered)
    # Signed with another key: refused too.
    with pytest.raises(qr_payload.InvalidPayload):
        qr_payload.verify(SECRET, qr_payload.sign("another-secret-key-0123456789", str(n)))


@FUZZ
@given(st.text(max_size=600))
@example("https://t.me/x?start=%ZZ")
@example("http://[::1")
@example("/start ")
def test_extract_never_crashes(text: str) -> None:
    found = qr_payload.extract(text)
    assert found is None or isinstance(found, str)
    assert qr_payload.looks_like_payload(text) in (True, False)


# ----------------------------------------------------------------------------- callback data


def _callback_classes() -> list[type[CallbackData]]:
    for module in pkgutil.iter_modules(handlers.__path__):
        importlib.import_module(f"handlers.{module.name}")
    found: list[type[CallbackData]] = []
    stack = list(CallbackData.__subclasses__())
    while stack:
        klass = stack.pop()
        stack.extend(klass.__subclasses__())
        if klass.__module__.startswith("handlers."):
            found.append(klass)
    return sorted(found, key=lambda k: k.__prefix__)


CALLBACK_CLASSES = _callback_classes()


def test_every_feature_has_a_unique_short_prefix() -> None:
    prefixes = [k.__prefix__ for k in CALLBACK_CLASSES]
    assert "pv" in prefixes
    assert len(prefixes) == len(set(prefixes))
    assert all(len(p) <= 8 for p in prefixes)


@pytest.mark.parametrize("klass", CALLBACK_CLASSES, ids=lambda k: k.__prefix__)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_callback_data_unpacking_never_crashes(
    klass: type[CallbackData], data: st.DataObject
) -> None:
    prefix = klass.__prefix__
    # Callback data arrives as UTF-8 JSON from Telegram: any text but lone surrogates.
    chars = st.characters(exclude_categories=("Cs",))
    raw = data.draw(
        st.one_of(
            st.text(alphabet=chars, max_size=64),
            st.binary(max_size=64).map(lambda b: b.decode("utf-8", "replace")),
            st.lists(
                st.text(
                    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters=":"),
                    max_size=12,
                ),
                max_size=6,
            ).map(lambda parts: ":".join([prefix, *parts])),
        )
    )
    try:
        unpacked = klass.unpack(raw)
    except (ValueError, TypeError):  # what aiogram's CallbackQueryFilter treats as "no match"
        return
    assert raw.startswith(prefix + ":")
    try:
        packed = unpacked.pack()
    except ValueError:  # longer than Telegram's 64 bytes once defaults are added: never sent
        assert len(raw.encode()) > 64 - 8
        return
    assert klass.unpack(packed) == unpacked


# ---------------------------------------------------------------------------- history import

_DATES = [
    "2026-11-01",
    "2026-02-30",
    "2031-01-01",
    "01.11.2026",
    "01.11.2026 14:30",
    "1.11.2026 9:05:30",
    "31.02.2026",
    "2026-11-01T10:00",
    "0001-01-01",  # was an OverflowError converting to UTC
    "9999-12-31T23:59-05:00",
    "2026-11-01T10:00+14:00",
]
_AMOUNTS = ["2500", "2 500,50", "0", "-5", "1e3", "2.500", "99,999", "99999999999", "x"]
_AMOUNTS += ["1,234,567", "2500 ₽", "₽2500", "1,234.567,89", "2,500.50"]
_cells = st.one_of(
    st.sampled_from(["100045", "1000 46", "abc", "", "12", "9" * 25, "-1"]),
    st.sampled_from(_DATES),
    st.sampled_from(_AMOUNTS),
    st.sampled_from(["5", "10%", "7.0", "150", "abc", ""]),
    # Any text a UTF-8 file can hold: lone surrogates (category Cs) cannot be written at all.
    st.text(
        alphabet=st.characters(exclude_characters="\r\n\x00", exclude_categories=("Cs",)),
        max_size=12,
    ),
    # CSV's own characters: an unclosed quote swallows the lines after it; NUL bytes.
    st.sampled_from(['"', '"2026-11-01', 'a"b', "\x00", "5\x00"]),
)
_structured = st.tuples(
    st.sampled_from(["100045", "1000 46", "abc", "12", "٣٣٣٣"]),
    st.sampled_from([*_DATES, ""]),
    st.sampled_from(["2500", "2 500,50", "0", "-5", "2.500", "99999999999", "1,5", "2500р"]),
    st.sampled_from(["5", "10%", "7.0", "150", "abc", ""]),
).map(list)
_rows = st.lists(
    st.one_of(_structured, st.lists(_cells, min_size=0, max_size=5)), min_size=1, max_size=8
)
_headers = st.sampled_from(
    [
        "card_number,date,amount,discount_pct",
        "card_number;date;amount",
        "card_number,date,amount," + "x" * 140_000,  # over the csv module's field limit
        '"card_number,date,amount',
        "card_number,date,amount,amount",
    ]
)


@pytest.fixture(scope="module")
def template_db(migrated_template: Path | str) -> Path | str:
    return migrated_template


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=_headers, rows=_rows, skip_invalid=st.booleans())
def test_history_import_of_random_rows(
    template_db: Path | str, header: str, rows: list[list[str]], skip_invalid: bool
) -> None:
    _import_random(template_db, header, rows, skip_invalid)


def _import_random(
    template: Path | str, header: str, rows: list[list[str]], skip_invalid: bool
) -> None:
    from services.history_import import import_purchases
    from tests.import_helpers import Db, copy_of_template

    now = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
    tz = ZoneInfo("Europe/Moscow")
    with tempfile.TemporaryDirectory() as tmp, copy_of_template(template, Path(tmp)) as url:
        csv_path = Path(tmp) / "history.csv"
        delimiter = ";" if ";" in header[:30] else ","
        lines = [header, *(delimiter.join(r) for r in rows)]
        csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        bad: list[tuple[int, str]] = []
        try:
            summary = import_purchases(
                url,
                csv_path,
                now=now,
                tz=tz,
                exponent=2,
                max_amount_minor=10**10,
                skip_invalid=skip_invalid,
                on_error=lambda line, reason: bad.append((line, reason)),
            )
        except DomainError:
            summary = None
        with Db(url) as db:
            purchases = db.query(
                "SELECT p.amount, p.discount_pct, p.discount_amount, p.paid_amount, "
                "p.created_at, c.number FROM purchases p JOIN cards c ON c.id = p.card_id"
            )
            imports = db.query("SELECT status, rows FROM imports")
            cards = db.scalar("SELECT count(*) FROM cards")
    assert all("\n" not in reason and len(reason) < 200 for _line, reason in bad)
    if summary is None:
        assert purchases == [] and imports == [] and cards == 0  # refused: nothing written
        return
    if not skip_invalid:
        assert bad == []
    assert summary.imported == len(purchases)
    assert imports == ([("done", len(purchases))] if purchases else [])
    now_text = now.replace(tzinfo=None).isoformat(sep=" ")
    for amount, pct, discount, paid, created_at, number in purchases:
        assert 0 < amount <= 10**10  # every accepted row is a sane ledger entry
        assert 0 <= pct <= 99
        assert paid == amount - discount
        assert "1900-01-01" <= created_at <= now_text
        assert re.fullmatch(r"[0-9]{4,19}", number)
