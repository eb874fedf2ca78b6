"""Value, key-name and track-flag rules shared by the store and the client library."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycorosync.lib.cmap_types import (
    KEY_NAME_MAX_LEN,
    MAX_VALUE_LEN,
    CmapEntry,
    TrackFlags,
    ValueType,
    check_key_name,
    check_track_flags,
    check_value_type,
)
from pycorosync.lib.errors import InvalidParamError, NameTooLongError

INTEGER_TYPES = [t for t in ValueType if t.is_integer]


@pytest.mark.parametrize("vtype", INTEGER_TYPES)
def test_integer_bounds_are_inclusive(vtype: ValueType) -> None:
    low, high = vtype.integer_range
    assert CmapEntry(vtype, low).value == low
    assert CmapEntry(vtype, high).value == high
    with pytest.raises(InvalidParamError, match="out of range"):
        CmapEntry(vtype, low - 1)
    with pytest.raises(InvalidParamError, match="out of range"):
        CmapEntry(vtype, high + 1)


@pytest.mark.parametrize(
    ("vtype", "size"),
    [
        (ValueType.INT8, 1),
        (ValueType.UINT16, 2),
        (ValueType.INT32, 4),
        (ValueType.UINT64, 8),
        (ValueType.FLOAT, 4),
        (ValueType.DOUBLE, 8),
    ],
)
def test_number_lengths_are_the_c_sizes(vtype: ValueType, size: int) -> None:
    value = 1.5 if vtype in (ValueType.FLOAT, ValueType.DOUBLE) else 1
    assert CmapEntry(vtype, value).length == size


@pytest.mark.parametrize(
    ("vtype", "value"),
    [
        (ValueType.UINT8, True),
        (ValueType.INT32, False),
        (ValueType.INT64, 1.0),
        (ValueType.UINT32, "1"),
        (ValueType.FLOAT, 1),
        (ValueType.DOUBLE, True),
        (ValueType.DOUBLE, "1.0"),
        (ValueType.STRING, b"bytes"),
        (ValueType.STRING, 5),
        (ValueType.BINARY, "text"),
        (ValueType.BINARY, bytearray(b"x")),
    ],
)
def test_value_must_be_of_the_types_family(vtype: ValueType, value: object) -> None:
    with pytest.raises(InvalidParamError, match=vtype.name):
        CmapEntry(vtype, value)  # type: ignore[arg-type]


def test_intenum_value_is_stored_as_plain_int() -> None:
    entry = CmapEntry(ValueType.UINT8, ValueType.STRING)
    assert type(entry.value) is int
    assert entry.value == 11


@pytest.mark.parametrize("vtype", [0, 13, -1, True, "u8", None, 2.0])
def test_unknown_value_type_is_invalid(vtype: object) -> None:
    with pytest.raises(InvalidParamError):
        CmapEntry(vtype, 1)  # type: ignore[arg-type]


def test_value_type_from_a_plain_int() -> None:
    assert check_value_type(11) is ValueType.STRING
    assert CmapEntry(6, 7).vtype is ValueType.UINT32  # type: ignore[arg-type]


@given(st.floats(width=32, allow_nan=False))
def test_float_keeps_every_single_precision_value(value: float) -> None:
    assert CmapEntry(ValueType.FLOAT, value).value == value


@given(st.floats(allow_nan=False, allow_infinity=False, max_value=3.4e38, min_value=-3.4e38))
def test_float_rounds_like_a_c_float(value: float) -> None:
    expected = struct.unpack("<f", struct.pack("<f", value))[0]
    assert CmapEntry(ValueType.FLOAT, value).value == expected


def test_float_rounding_is_visible() -> None:
    assert CmapEntry(ValueType.FLOAT, 0.1).value == pytest.approx(0.1, rel=1e-7)
    assert CmapEntry(ValueType.FLOAT, 0.1).value != 0.1
    assert CmapEntry(ValueType.DOUBLE, 0.1).value == 0.1


@pytest.mark.parametrize("value", [1e39, -1e39, 3.5e38, 1.7976931348623157e308])
def test_float_beyond_flt_max_is_refused(value: float) -> None:
    with pytest.raises(InvalidParamError, match="out of range for FLOAT"):
        CmapEntry(ValueType.FLOAT, value)
    assert CmapEntry(ValueType.DOUBLE, value).value == value


def test_float_keeps_infinities_and_nan() -> None:
    assert CmapEntry(ValueType.FLOAT, math.inf).value == math.inf
    assert CmapEntry(ValueType.FLOAT, -math.inf).value == -math.inf
    assert math.isnan(float(CmapEntry(ValueType.FLOAT, math.nan).value))


def test_equality_is_by_stored_bytes() -> None:
    nan = CmapEntry(ValueType.DOUBLE, math.nan)
    assert nan == CmapEntry(ValueType.DOUBLE, math.nan)
    assert hash(nan) == hash(CmapEntry(ValueType.DOUBLE, math.nan))
    assert CmapEntry(ValueType.DOUBLE, 0.0) != CmapEntry(ValueType.DOUBLE, -0.0)
    assert CmapEntry(ValueType.UINT8, 1) != CmapEntry(ValueType.UINT16, 1)
    assert CmapEntry(ValueType.FLOAT, 0.5) != CmapEntry(ValueType.DOUBLE, 0.5)
    assert CmapEntry(ValueType.STRING, "a") == CmapEntry(ValueType.STRING, "a")
    assert CmapEntry(ValueType.STRING, "a") != "a"


def test_string_rules() -> None:
    assert CmapEntry(ValueType.STRING, "").length == 1
    assert CmapEntry(ValueType.STRING, "é").length == 3  # UTF-8 bytes + NUL
    longest = "x" * (MAX_VALUE_LEN - 1)
    assert CmapEntry(ValueType.STRING, longest).length == MAX_VALUE_LEN
    with pytest.raises(InvalidParamError, match="exceeds"):
        CmapEntry(ValueType.STRING, longest + "x")
    with pytest.raises(InvalidParamError, match="NUL"):
        CmapEntry(ValueType.STRING, "a\0b")
    with pytest.raises(InvalidParamError, match="UTF-8"):
        CmapEntry(ValueType.STRING, "\udc80")


def test_binary_rules() -> None:
    assert CmapEntry(ValueType.BINARY, b"").length == 0
    assert CmapEntry(ValueType.BINARY, b"\0\1").value == b"\0\1"
    assert CmapEntry(ValueType.BINARY, b"x" * MAX_VALUE_LEN).length == MAX_VALUE_LEN
    with pytest.raises(InvalidParamError, match="exceeds"):
        CmapEntry(ValueType.BINARY, b"x" * (MAX_VALUE_LEN + 1))


def test_entry_is_frozen() -> None:
    entry = CmapEntry(ValueType.UINT8, 1)
    with pytest.raises(AttributeError):
        entry.value = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "name",
    ["abc", "a.b", "totem.interface.0.mcastport", "A-Z_a/z:0.9", "x" * KEY_NAME_MAX_LEN],
)
def test_good_key_names(name: str) -> None:
    check_key_name(name)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "shorter"),
        ("ab", "shorter"),
        ("x" * (KEY_NAME_MAX_LEN + 1), "longer"),
        ("a b", "' '"),
        ("abc\n", "'\\\\n'"),
        ("tot€m", "'€'"),
        ("a*b", "'\\*'"),
    ],
)
def test_bad_key_names_are_name_too_long(name: str, reason: str) -> None:
    with pytest.raises(NameTooLongError, match=reason):
        check_key_name(name)


def test_key_name_must_be_a_str() -> None:
    with pytest.raises(InvalidParamError):
        check_key_name(b"abc")  # type: ignore[arg-type]


def test_track_flags_accept_corosyncs_bits_only() -> None:
    assert check_track_flags(0) == TrackFlags(0)
    assert check_track_flags(15) == TrackFlags.ADD | TrackFlags.DELETE | TrackFlags.MODIFY | 8
    assert int(TrackFlags.ADD) == 4
    assert int(TrackFlags.DELETE) == 1
    assert int(TrackFlags.MODIFY) == 2
    assert int(TrackFlags.PREFIX) == 8
    for bad in (16, 17, -1, 1 << 40):
        with pytest.raises(InvalidParamError, match="bits"):
            check_track_flags(bad)
    with pytest.raises(InvalidParamError):
        check_track_flags(True)


def test_fixed_size_of_variable_types_is_none() -> None:
    assert ValueType.STRING.fixed_size is None
    assert ValueType.BINARY.fixed_size is None
