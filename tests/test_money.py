"""Amount parsing: what cashiers type and POS exports write, never a float, never rounded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.errors import InvalidAmount
from services.money import major_number, parse_amount
from services.pricing import discount_for, next_tier, quote


@pytest.mark.parametrize(
    ("text", "minor"),
    [
        ("2500", 250000),
        ("2 500", 250000),
        ("2\u00a0500", 250000),
        ("2500.50", 250050),
        ("2500,50", 250050),
        ("2,500.50", 250050),
        ("2.500,50", 250050),
        ("1,234,567", 123456700),
        ("1.234.567", 123456700),
        ("2 500,50", 250050),
        # A currency word or sign before or after the number is ignored.
        ("2500р", 250000),
        ("2500 р.", 250000),
        ("2 500 ₽", 250000),
        ("2500 руб.", 250000),
        ("2500руб", 250000),
        ("2500 рублей", 250000),
        ("₽2500", 250000),
        ("₽ 2 500,50", 250050),
        ("2500 RUB", 250000),
        ("RUB 2500", 250000),
        ("€25", 2500),
        ("25 eur", 2500),
        ("25 EUR", 2500),
        ("25,50 €", 2550),
        ("25 eurot", 2500),
        ("1 234 567,8", 123456780),
        ("0.01", 1),
        ("0,5", 50),
        ("+15", 1500),
    ],
)
def test_accepted(text: str, minor: int) -> None:
    assert parse_amount(text) == minor


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("abc", "format"),
        ("12a", "format"),
        ("1.2.3,4,5", "format"),
        ("0", "zero"),
        ("0,00", "zero"),
        ("-5", "negative"),
        ("−5", "negative"),
        ("2500.505", "precision"),
        ("12,345.678", "precision"),
        ("0,500", "precision"),
        # One separator before exactly three digits: thousands or decimals? Not guessed.
        ("99,999", "ambiguous"),
        ("2,500", "ambiguous"),
        ("2.500", "ambiguous"),
        ("1.500", "ambiguous"),
        ("2,500 ₽", "ambiguous"),
        # Mixed thousands separators were read as digits and crashed int().
        ("1,234.567,89", "format"),
        # Anything but one currency mark next to the number is still refused.
        ("₽2500 руб", "format"),
        ("2500 рубашка", "format"),
        ("2500 $", "format"),
        ("2500 р р", "format"),
        ("р", "format"),
        ("-2500 ₽", "negative"),
        ("+-5", "format"),
        ("1" * 40, "format"),
        ("2,500,50", "format"),
        ("1e5", "format"),
        ("NaN", "format"),
    ],
)
def test_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidAmount) as info:
        parse_amount(text)
    assert info.value.reason == reason


def test_ambiguous_keeps_the_digits_for_the_message() -> None:
    with pytest.raises(InvalidAmount) as info:
        parse_amount(" 99,999 ₽")
    assert (info.value.reason, info.value.digits) == ("ambiguous", ("99", "999"))


def test_limit_and_zero_exponent() -> None:
    with pytest.raises(InvalidAmount) as info:
        parse_amount("1000000.01", 2, max_minor=100_000_000)
    assert info.value.reason == "too_large"
    assert parse_amount("1 500", 0) == 1500
    with pytest.raises(InvalidAmount):
        parse_amount("15.5", 0)


@given(st.integers(min_value=1, max_value=10**12))
def test_round_trip_of_formatted_amounts(minor: int) -> None:
    whole, cents = divmod(minor, 100)
    assert parse_amount(f"{whole}.{cents:02d}") == minor
    assert parse_amount(f"{whole},{cents:02d}") == minor
    assert parse_amount(f"{whole:,}.{cents:02d}") == minor
    assert parse_amount(f"{whole:,}.{cents:02d}".replace(",", " ")) == minor
    assert major_number(minor) == round(minor / 100, 2)


CURRENCY_MARKS = ["р", "р.", "руб", "руб.", "рублей", "₽", "RUB", "rub", "€", "eur", "EUR", "eurot"]
amounts = st.integers(min_value=100, max_value=10**11)
styles = st.sampled_from(["{w}", "{w}.{c:02d}", "{w},{c:02d}", "{w:,}.{c:02d}", "{ws},{c:02d}"])


def _written(minor: int, style: str) -> tuple[str, int]:
    whole, cents = divmod(minor, 100)
    text = style.format(w=whole, c=cents, ws=f"{whole:,}".replace(",", " "))
    return text, minor if "{c" in style else whole * 100


@given(amounts, styles, st.sampled_from(CURRENCY_MARKS), st.sampled_from(["", " "]), st.booleans())
def test_a_currency_mark_before_or_after_changes_nothing(
    minor: int, style: str, mark: str, space: str, before: bool
) -> None:
    text, expected = _written(minor, style)
    marked = f"{mark}{space}{text}" if before else f"{text}{space}{mark}"
    assert parse_amount(marked) == parse_amount(text) == expected


# Letters, symbols and punctuation, but not what reads as part of a number: signs and the
# apostrophes and underscores some people group thousands with.
_WORDS = st.text(
    alphabet=st.characters(categories=["L", "S", "P"], exclude_characters="'’_+-−"),
    min_size=1,
    max_size=5,
)
_ALSO_CURRENCY = {m.casefold() for m in CURRENCY_MARKS} | {
    "рубль",
    "рубля",
    "rub.",
    "rur",
    "euro",
    "евро",
}


@given(amounts, styles, _WORDS)
def test_any_other_word_next_to_the_number_is_refused(minor: int, style: str, word: str) -> None:
    text, _ = _written(minor, style)
    if word.casefold() in _ALSO_CURRENCY:
        return
    for marked in (f"{text} {word}", f"{word}{text}"):
        with pytest.raises(InvalidAmount):
            parse_amount(marked)


@given(
    st.integers(min_value=1, max_value=999),
    st.integers(min_value=0, max_value=999),
    st.sampled_from([",", "."]),
)
def test_one_separator_before_three_digits_is_ambiguous(units: int, group: int, mark: str) -> None:
    with pytest.raises(InvalidAmount) as info:
        parse_amount(f"{units}{mark}{group:03d}")
    assert info.value.reason == "ambiguous"
    # Two groups are thousands whatever the separator; two decimals are decimals.
    assert (
        parse_amount(f"{units}{mark}{group:03d}{mark}000") == (units * 10**6 + group * 1000) * 100
    )
    assert parse_amount(f"{units}{mark}{group % 100:02d}") == units * 100 + group % 100


@given(st.text(max_size=40))
def test_never_crashes_and_never_accepts_nonsense(text: str) -> None:
    try:
        minor = parse_amount(text)
    except InvalidAmount:
        return
    assert minor > 0
    assert any(ch.isdigit() for ch in text)


def test_pricing_takes_the_best_tier_adds_offer_and_caps() -> None:
    q = quote(
        amount=600000,
        base_pct=5,
        amount_tiers=[(500000, 7), (1000000, 10)],
        offer_pct=5,
        max_pct=10,
    )
    assert (q.amount_tier_pct, q.tier_pct, q.discount_pct, q.capped) == (7, 7, 10, True)
    assert q.discount_amount == 60000 and q.paid_amount == 540000
    q = quote(amount=1001, base_pct=7, spend_before=3_000_000, cumulative_tiers=[(3_000_000, 10)])
    assert (q.cumulative_tier_pct, q.discount_pct, q.discount_amount) == (10, 10, 100)
    assert discount_for(150, 5) == 8  # 7.5 kopecks round half up
    tier = next_tier(5, 2_680_000, [(3_000_000, 7), (10_000_000, 10)])
    assert tier is not None and (tier.pct, tier.remaining) == (7, 320_000)
    assert next_tier(10, 0, [(3_000_000, 7)]) is None
