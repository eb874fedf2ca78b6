"""cmap value types, key names and tracking flags, shared by the store, the client library
and the tools.

The numbers are Corosync's ``cmap_value_types_t`` (identical in icmap) and its
``CMAP_TRACK_*`` bits; the short type names are the ones ``corosync-cmapctl`` prints and
accepts.

Values are plain Python objects, one family per type: ``int`` for the eight integer types,
``float`` for FLOAT and DOUBLE, ``str`` for STRING and ``bytes`` for BINARY. A
:class:`CmapEntry` is the only way a value enters a map, and its constructor enforces
Corosync's rules (icmap's ``icmap_set_r``):

* integers must fit their type exactly; a ``bool`` is not an integer (nor a float);
* FLOAT holds what a C ``float`` holds: the value is rounded to the nearest IEEE-754 single
  (as C's ``(float)x`` does) and a finite value beyond ``FLT_MAX`` is refused instead of
  silently becoming infinity; infinities and NaN are kept;
* strings hold no NUL and are stored as UTF-8 with Corosync's terminating NUL, which counts
  towards the length;
* a stored value is at most 16 KiB (``ICMAP_MAX_VALUE_LEN``).

Two entries are equal when Corosync would find them identical — same type and same stored
bytes — so a float NaN equals itself and ``0.0`` differs from ``-0.0``. That is the test for
"setting an identical value is a no-op".
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import TypeVar

from pycorosync.lib.errors import InvalidParamError, NameTooLongError

CmapValue = int | float | str | bytes

KEY_NAME_MIN_LEN = 3
"""Shortest key name Corosync accepts (``CMAP_KEYNAME_MINLEN``)."""
KEY_NAME_MAX_LEN = 255
"""Longest key name Corosync accepts (``CMAP_KEYNAME_MAXLEN``)."""
MAX_VALUE_LEN = 16 * 1024
"""Largest stored value in bytes, a string's NUL included (``ICMAP_MAX_VALUE_LEN``)."""

_T = TypeVar("_T")

_KEY_NAME_CHARS = re.compile(r"[A-Za-z0-9._/:-]*")


class ValueType(IntEnum):
    INT8 = 1
    UINT8 = 2
    INT16 = 3
    UINT16 = 4
    INT32 = 5
    UINT32 = 6
    INT64 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    STRING = 11
    BINARY = 12

    @property
    def tool_name(self) -> str:
        """``i8`` … ``bin``, as corosync-cmapctl spells the type."""
        return _TOOL_NAMES[self]

    @classmethod
    def from_tool_name(cls, name: str) -> ValueType:
        for vtype, tool in _TOOL_NAMES.items():
            if tool == name:
                return vtype
        raise ValueError(f"Unknown type {name}")

    @property
    def is_integer(self) -> bool:
        return self <= ValueType.UINT64

    @property
    def integer_range(self) -> tuple[int, int]:
        """Inclusive (min, max) of an integer type."""
        bits, signed = _INTEGER_WIDTHS[self]
        if signed:
            return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return 0, (1 << bits) - 1

    @property
    def fixed_size(self) -> int | None:
        """Stored size in bytes of a number type; ``None`` for STRING and BINARY."""
        if self.is_integer:
            return _INTEGER_WIDTHS[self][0] // 8
        return {ValueType.FLOAT: 4, ValueType.DOUBLE: 8}.get(self)


_TOOL_NAMES = {
    ValueType.INT8: "i8",
    ValueType.UINT8: "u8",
    ValueType.INT16: "i16",
    ValueType.UINT16: "u16",
    ValueType.INT32: "i32",
    ValueType.UINT32: "u32",
    ValueType.INT64: "i64",
    ValueType.UINT64: "u64",
    ValueType.FLOAT: "flt",
    ValueType.DOUBLE: "dbl",
    ValueType.STRING: "str",
    ValueType.BINARY: "bin",
}

_INTEGER_WIDTHS = {
    ValueType.INT8: (8, True),
    ValueType.UINT8: (8, False),
    ValueType.INT16: (16, True),
    ValueType.UINT16: (16, False),
    ValueType.INT32: (32, True),
    ValueType.UINT32: (32, False),
    ValueType.INT64: (64, True),
    ValueType.UINT64: (64, False),
}


class TrackFlags(IntFlag):
    """What a tracker asks for (``CMAP_TRACK_*``); PREFIX makes the key a prefix."""

    DELETE = 1
    MODIFY = 2
    ADD = 4
    PREFIX = 8


class TrackEvent(IntEnum):
    """What happened to a key, as handed to a tracker (never PREFIX)."""

    DELETE = 1
    MODIFY = 2
    ADD = 4


def check_track_flags(flags: int) -> TrackFlags:
    """``flags`` as :class:`TrackFlags`; any other bit is ``InvalidParamError`` as in Corosync."""
    if isinstance(flags, bool) or not isinstance(flags, int):
        raise InvalidParamError(f"track flags must be an integer, not {type(flags).__name__}")
    if flags & ~int(_ALL_TRACK_FLAGS) or flags < 0:
        raise InvalidParamError(
            f"track flags {flags:#x} have bits other than ADD/DELETE/MODIFY/PREFIX"
        )
    return TrackFlags(flags)


_ALL_TRACK_FLAGS = TrackFlags.ADD | TrackFlags.DELETE | TrackFlags.MODIFY | TrackFlags.PREFIX


def check_key_name(name: str) -> None:
    """Refuse a name Corosync would not create a key under.

    Corosync answers every kind of bad name — too short, too long or a bad character — with
    ``CS_ERR_NAME_TOO_LONG``, so that is what this raises, with the actual reason.
    """
    if not isinstance(name, str):
        raise InvalidParamError(f"key name must be a str, not {type(name).__name__}")
    if len(name) < KEY_NAME_MIN_LEN:
        raise NameTooLongError(f"key name {name!r} is shorter than {KEY_NAME_MIN_LEN} characters")
    if len(name) > KEY_NAME_MAX_LEN:
        raise NameTooLongError(f"key name is longer than {KEY_NAME_MAX_LEN} characters")
    valid = _KEY_NAME_CHARS.match(name)
    assert valid is not None  # the pattern matches the empty string
    if valid.end() != len(name):
        bad = name[valid.end()]
        raise NameTooLongError(
            f"key name {name!r} has {bad!r} at {valid.end()}; allowed are A-Z a-z 0-9 . _ - / :"
        )


def check_value_type(vtype: int) -> ValueType:
    """``vtype`` as a :class:`ValueType`, or ``InvalidParamError``."""
    if isinstance(vtype, bool) or not isinstance(vtype, int):
        raise InvalidParamError(f"value type must be a ValueType, not {type(vtype).__name__}")
    try:
        return ValueType(vtype)
    except ValueError:
        raise InvalidParamError(f"unknown value type {vtype}") from None


def normalize_value(vtype: ValueType, value: object) -> CmapValue:
    """The value as the map stores it, or ``InvalidParamError`` saying why it cannot be."""
    if vtype.is_integer:
        return _normalize_integer(vtype, value)
    if vtype is ValueType.FLOAT:
        return _normalize_single(_require(float, vtype, value))
    if vtype is ValueType.DOUBLE:
        return _require(float, vtype, value)
    if vtype is ValueType.STRING:
        return _normalize_string(_require(str, vtype, value))
    return _normalize_binary(_require(bytes, vtype, value))


def _require(kind: type[_T], vtype: ValueType, value: object) -> _T:
    # Exact families only: a bool is an int to Python but not to cmap, and typed getters
    # never convert, so neither does set.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidParamError(
            f"a {vtype.name} value must be {kind.__name__}, not {type(value).__name__}"
        )
    return value


def _normalize_integer(vtype: ValueType, value: object) -> int:
    number = int(_require(int, vtype, value))  # int(): an IntEnum member becomes a plain int
    low, high = vtype.integer_range
    if not low <= number <= high:
        raise InvalidParamError(f"{number} is out of range for {vtype.name} ({low}..{high})")
    return number


def _normalize_single(value: float) -> float:
    try:
        packed = struct.pack("<f", value)
    except OverflowError:
        raise InvalidParamError(f"{value!r} is out of range for FLOAT") from None
    single: float = struct.unpack("<f", packed)[0]
    return single


def _normalize_string(value: str) -> str:
    if "\0" in value:
        raise InvalidParamError("a STRING value cannot hold a NUL character")
    try:
        size = len(value.encode("utf-8")) + 1
    except UnicodeEncodeError:
        raise InvalidParamError("a STRING value must be encodable as UTF-8") from None
    if size > MAX_VALUE_LEN:
        raise InvalidParamError(f"STRING of {size} bytes (NUL included) exceeds {MAX_VALUE_LEN}")
    return str(value)


def _normalize_binary(value: bytes) -> bytes:
    if len(value) > MAX_VALUE_LEN:
        raise InvalidParamError(f"BINARY of {len(value)} bytes exceeds {MAX_VALUE_LEN}")
    return bytes(value)


@dataclass(frozen=True, slots=True, eq=False)
class CmapEntry:
    """One typed value; constructing it validates and normalises (see the module docstring)."""

    vtype: ValueType
    value: CmapValue

    def __post_init__(self) -> None:
        vtype = check_value_type(self.vtype)
        object.__setattr__(self, "vtype", vtype)
        object.__setattr__(self, "value", normalize_value(vtype, self.value))

    @property
    def length(self) -> int:
        """Stored length in bytes, as cmap reports it (a string's NUL included)."""
        size = self.vtype.fixed_size
        if size is not None:
            return size
        if isinstance(self.value, str):
            return len(self.value.encode("utf-8")) + 1
        assert isinstance(self.value, bytes)
        return len(self.value)

    def _identity(self) -> tuple[ValueType, CmapValue]:
        if isinstance(self.value, float):
            return self.vtype, struct.pack("<d", self.value)
        return self.vtype, self.value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CmapEntry):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())
