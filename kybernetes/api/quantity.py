"""resource.Quantity and IntOrString helpers, matching apimachinery's parsing and canonical form.

A quantity is an exact decimal (never a float) plus the format it was written in, which decides
how it prints: DecimalSI ("1500m", "2k"), BinarySI ("1Gi"), DecimalExponent ("2e3").
"""

from __future__ import annotations

import functools
from decimal import ROUND_CEILING, ROUND_UP, Decimal, localcontext
from typing import Any

DECIMAL_SI, BINARY_SI, DECIMAL_EXPONENT = "DecimalSI", "BinarySI", "DecimalExponent"

FORMAT_ERROR = (
    "quantities must match the regular expression "
    "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
SUFFIX_ERROR = "unable to parse quantity's suffix"

_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}  # powers of 1024
_DECIMAL_BY_EXP = {v: k for k, v in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_EXP = {v: k for k, v in _BINARY_SUFFIXES.items()}
_SUFFIX_CHARS = set("eEinumkKMGTP")
_NANO = Decimal("1e-9")
_MAX_INT64 = Decimal(2**63 - 1)
_PRECISION = 200  # plenty of digits: quantities are exact, never rounded by the context


def _split(text: str) -> tuple[int, str, str, str]:
    """(sign, integer digits, fraction digits, suffix) following upstream parseQuantityString."""
    if not text:
        raise ValueError(FORMAT_ERROR)
    pos, end, sign = 0, len(text), 1
    if text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        pos = 1
    start = pos
    while pos < end and text[pos].isdigit() and text[pos].isascii():
        pos += 1
    whole = text[start:pos]
    frac = ""
    if pos < end and text[pos] == ".":
        pos += 1
        start = pos
        while pos < end and text[pos].isdigit() and text[pos].isascii():
            pos += 1
        frac = text[start:pos]
    if not whole and not frac:
        raise ValueError(FORMAT_ERROR)
    suffix_start = pos
    while pos < end and text[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and text[pos] in "+-":
        pos += 1
    while pos < end and text[pos].isdigit() and text[pos].isascii():
        pos += 1
    if pos != end:
        raise ValueError(FORMAT_ERROR)
    return sign, whole, frac, text[suffix_start:]


def _interpret_suffix(suffix: str) -> tuple[Decimal, str]:
    """Multiplier and format for a suffix, or ValueError(SUFFIX_ERROR)."""
    if suffix in _DECIMAL_SUFFIXES:
        return Decimal(1).scaleb(_DECIMAL_SUFFIXES[suffix]), DECIMAL_SI
    if suffix in _BINARY_SUFFIXES:
        return Decimal(1024 ** _BINARY_SUFFIXES[suffix]), BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        exp = suffix[1:]
        digits = exp[1:] if exp[0] in "+-" else exp
        if digits.isdigit():
            return Decimal(1).scaleb(int(exp)), DECIMAL_EXPONENT
    raise ValueError(SUFFIX_ERROR)


@functools.total_ordering
class Quantity:
    """An exact resource amount; `str()` gives upstream's canonical form."""

    __slots__ = ("amount", "format")

    def __init__(self, amount: Decimal | int, format: str = DECIMAL_SI):
        self.amount = Decimal(amount)
        self.format = format

    @classmethod
    def parse(cls, value: Any) -> "Quantity":
        if isinstance(value, Quantity):
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(FORMAT_ERROR)
        text = value if isinstance(value, str) else repr(value)
        sign, whole, frac, suffix = _split(text)
        multiplier, fmt = _interpret_suffix(suffix)
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            amount = Decimal(f"{whole or '0'}.{frac or '0'}") * multiplier
            # Anything below 1n is rounded up so that asking for a little gives a little.
            if amount != 0 and amount.as_tuple().exponent < -9:  # type: ignore[operator]
                amount = amount.quantize(_NANO, rounding=ROUND_UP)
            if fmt == BINARY_SI and amount > _MAX_INT64:
                amount = _MAX_INT64
            if fmt == BINARY_SI and 0 < amount < 1:
                fmt = DECIMAL_SI
            amount = amount.normalize() if amount != 0 else Decimal(0)
        return cls(-amount if sign < 0 else amount, fmt)

    # --- values ------------------------------------------------------------------------------

    def scaled_value(self, scale: int) -> int:
        """ceil(q / 10^scale), like upstream ScaledValue."""
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            return int(self.amount.scaleb(-scale).to_integral_value(rounding=ROUND_CEILING))

    def value(self) -> int:
        return self.scaled_value(0)

    def milli_value(self) -> int:
        return self.scaled_value(-3)

    def is_zero(self) -> bool:
        return self.amount == 0

    # --- arithmetic and comparison -----------------------------------------------------------

    def _combine(self, other: Any, sign: int) -> "Quantity":
        other = Quantity.parse(other)
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            amount = self.amount + sign * other.amount
        # Upstream Add/Sub keep the receiver's format, unless the receiver was zero.
        return Quantity(amount, other.format if self.is_zero() else self.format)

    def __add__(self, other: Any) -> "Quantity":
        return self._combine(other, 1)

    def __sub__(self, other: Any) -> "Quantity":
        return self._combine(other, -1)

    def __neg__(self) -> "Quantity":
        return Quantity(-self.amount, self.format)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Quantity, str, int)) and not isinstance(other, bool):
            return self.amount == Quantity.parse(other).amount
        return NotImplemented

    def __lt__(self, other: Any) -> bool:
        return self.amount < Quantity.parse(other).amount

    def __hash__(self) -> int:
        return hash(self.amount)

    def cmp(self, other: Any) -> int:
        o = Quantity.parse(other).amount
        return (self.amount > o) - (self.amount < o)

    # --- canonical string --------------------------------------------------------------------

    def __str__(self) -> str:
        if self.amount == 0:
            return "0"
        fmt = self.format
        if fmt == BINARY_SI:
            if -1024 < self.amount < 1024 or self.amount != self.amount.to_integral_value():
                fmt = DECIMAL_SI  # small or fractional binary amounts print in decimal
            else:
                return _base1024(int(self.amount))
        return _base10(self.amount, fmt)

    def __repr__(self) -> str:
        return f"Quantity({str(self)!r})"

    def to_json(self) -> str:
        return str(self)


def _base10(amount: Decimal, fmt: str) -> str:
    sign, digits, exp = amount.as_tuple()
    mantissa = int("".join(map(str, digits)))
    assert isinstance(exp, int)
    while mantissa % 10 == 0:
        mantissa //= 10
        exp += 1
    # The exponent goes down to a multiple of three (so "1.5" is "1500m", not "15e-1").
    shift = exp % 3
    mantissa *= 10**shift
    exp -= shift
    if fmt == DECIMAL_SI:
        while exp > 18:  # no SI suffix above E
            mantissa *= 1000
            exp -= 3
        suffix = _DECIMAL_BY_EXP[exp]
    else:
        suffix = f"e{exp}" if exp else ""
    return f"{'-' if sign else ''}{mantissa}{suffix}"


def _base1024(value: int) -> str:
    mantissa, exp = abs(value), 0
    while mantissa % 1024 == 0 and exp < 6:
        mantissa //= 1024
        exp += 1
    return f"{'-' if value < 0 else ''}{mantissa}{_BINARY_BY_EXP.get(exp, '')}"


def parse_quantity(value: Any) -> Quantity:
    """Parse "100m", "1.5Gi", "2e3", or a JSON number; ValueError with upstream's message."""
    return Quantity.parse(value)


def canonical(value: Any) -> str:
    """The canonical spelling the API server stores and returns ("1000m" -> "1")."""
    return str(Quantity.parse(value))


# --- IntOrString -----------------------------------------------------------------------------


def scaled_value(int_or_percent: int | str | None, total: int, round_up: bool) -> int:
    """Upstream GetScaledValueFromIntOrPercent: an int as-is, "25%" as a share of `total`."""
    if int_or_percent is None:
        raise ValueError("nil value for IntOrString")
    if isinstance(int_or_percent, bool):
        raise ValueError("invalid value for IntOrString: invalid type: neither int nor percentage")
    if isinstance(int_or_percent, int):
        return int_or_percent
    if not isinstance(int_or_percent, str):
        raise ValueError("invalid value for IntOrString: invalid type: neither int nor percentage")
    if not int_or_percent.endswith("%"):
        raise ValueError("invalid value for IntOrString: invalid type: string is not a percentage")
    digits = int_or_percent[:-1]
    body = digits[1:] if digits[:1] in ("+", "-") else digits
    if not body.isascii() or not body.isdigit():
        raise ValueError(
            f"invalid value for IntOrString: invalid value {_go_quote(int_or_percent)}: "
            f"strconv.Atoi: parsing {_go_quote(digits)}: invalid syntax"
        )
    percent = int(digits)
    # Exact integer arithmetic; upstream's float64 gives the same answer for sane inputs.
    if round_up:
        return -((-percent * total) // 100)
    return (percent * total) // 100


def _go_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def int_or_string_value(value: int | str) -> int:
    """IntOrString.IntValue(): a string gives its integer value, or 0 if it is not a number."""
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except ValueError:
        return 0
