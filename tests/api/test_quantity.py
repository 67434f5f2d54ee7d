"""resource.Quantity parsing and canonical form (apimachinery resource/quantity_test.go)."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

from kybernetes.api.quantity import (
    BINARY_SI, DECIMAL_EXPONENT, DECIMAL_SI, FORMAT_ERROR, SUFFIX_ERROR, Quantity, canonical,
    int_or_string_value, parse_quantity, scaled_value,
)


@pytest.mark.parametrize("text,expected", [
    ("1000m", "1"), ("1024Mi", "1Gi"), ("0.5", "500m"), ("1.5", "1500m"), ("100m", "100m"),
    ("1.5Gi", "1536Mi"), ("2e3", "2e3"), ("128974848", "128974848"), ("129M", "129M"),
    ("123Mi", "123Mi"), ("2000", "2k"), ("1500", "1500"), ("0Mi", "0"), ("-0", "0"),
    ("0.1n", "1n"),        # sub-nano amounts round up to 1n
    ("512Ki", "512Ki"), ("0.5Ki", "512"),  # binary under 1024 prints as decimal
    ("1.1Ki", "1126400m"),  # inexact binary falls back to DecimalSI
    ("1.5e3", "1500"), ("12e-3", "12e-3"), (".5", "500m"), ("+1k", "1k"), ("-1.5", "-1500m"),
    (1, "1"), (0.25, "250m"),  # JSON numbers are accepted too
])
def test_canonical_string(text, expected):
    """TestQuantityCanonicalizeBytes / TestQuantityParse table entries."""
    assert canonical(text) == expected


@pytest.mark.parametrize("text,fmt", [("1", DECIMAL_SI), ("1Ki", BINARY_SI), ("1e3", DECIMAL_EXPONENT),
                                      ("0.5Ki", BINARY_SI), ("0.5m", DECIMAL_SI)])
def test_format_follows_suffix(text, fmt):
    assert parse_quantity(text).format == fmt


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", " 1", "1 ", ".", "-", "e3", "1Mi1.2"])
def test_bad_format(text):
    with pytest.raises(ValueError) as err:
        parse_quantity(text)
    assert str(err.value) in (FORMAT_ERROR, SUFFIX_ERROR)


def test_bad_format_message_is_upstreams():
    with pytest.raises(ValueError, match=r"^quantities must match the regular expression '\^\(\[\+-\]\?\[0-9\.\]\+\)"):
        parse_quantity("x1")


@pytest.mark.parametrize("text", ["1K", "1e", "1Ki2", "1mM"])
def test_bad_suffix(text):
    with pytest.raises(ValueError, match="^unable to parse quantity's suffix$"):
        parse_quantity(text)


def test_values_round_up():
    assert parse_quantity("100m").value() == 1
    assert parse_quantity("1.5").milli_value() == 1500
    assert parse_quantity("1n").milli_value() == 1
    assert parse_quantity("1Gi").value() == 1073741824
    assert parse_quantity("2").scaled_value(-9) == 2_000_000_000


def test_compare_and_add():
    assert parse_quantity("1Gi") > parse_quantity("1G")
    assert parse_quantity("1000m") == parse_quantity("1")
    assert parse_quantity("1") == "1000m"
    assert sorted(map(parse_quantity, ["1", "500m", "2k"]))[0] == "500m"
    assert str(parse_quantity("1") + "500m") == "1500m"
    assert str(parse_quantity("1Gi") - "512Mi") == "512Mi"
    assert str(parse_quantity("0") + "1Gi") == "1Gi"  # a zero receiver takes the other's format
    assert parse_quantity("1Gi").cmp("1024Mi") == 0


decimal_quantities = st.builds(
    lambda n, s: f"{n}{s}", st.integers(-10**12, 10**12), st.sampled_from(["", "m", "k", "M", "G", "n", "u"]))
binary_quantities = st.builds(
    lambda n, s: f"{n}{s}", st.integers(0, 10**6), st.sampled_from(["Ki", "Mi", "Gi", "Ti"]))


@given(st.one_of(decimal_quantities, binary_quantities))
def test_canonical_form_is_stable_and_exact(text):
    """Canonicalisation never changes the amount, and is a fixed point."""
    q = parse_quantity(text)
    again = parse_quantity(str(q))
    assert again.amount == q.amount
    assert str(again) == str(q)


@given(decimal_quantities, decimal_quantities)
def test_addition_is_exact(a, b):
    total = Fraction(parse_quantity(a).amount) + Fraction(parse_quantity(b).amount)
    assert Fraction((parse_quantity(a) + b).amount) == total


@given(st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=3, allow_nan=False))
def test_milli_value_of_milli_exact_amounts(d):
    text = format(d, "f")
    assert parse_quantity(text).milli_value() == int(d * 1000)


@pytest.mark.parametrize("value,total,up,expected", [
    (3, 10, True, 3), ("25%", 10, True, 3), ("25%", 10, False, 2), ("100%", 7, False, 7),
    ("0%", 5, True, 0), ("33%", 3, True, 1), ("33%", 3, False, 0),
])
def test_scaled_value(value, total, up, expected):
    """GetScaledValueFromIntOrPercent, as used for maxSurge (round up) / maxUnavailable (down)."""
    assert scaled_value(value, total, up) == expected


def test_scaled_value_errors():
    with pytest.raises(ValueError, match="nil value for IntOrString"):
        scaled_value(None, 1, True)
    with pytest.raises(ValueError, match="invalid type: string is not a percentage"):
        scaled_value("5", 1, True)
    with pytest.raises(ValueError, match='invalid value "a%"'):
        scaled_value("a%", 1, True)
    assert int_or_string_value("7") == 7 and int_or_string_value("x") == 0


def test_quantity_object_passthrough():
    q = Quantity(Decimal("1.5"))
    assert parse_quantity(q) is q and str(q) == "1500m"
