"""corosync-cmapctl's value text: how a key line is printed and how a typed value is read.

Theory of operation. Printing follows Corosync's tool byte for byte: ``<key> (<type>) =
<value>`` with integers in decimal, FLOAT and DOUBLE as C's ``%f``, strings raw, and binary
values shown only with ``-b`` (printable ASCII as is, a backslash doubled, anything else
``\\xHH``; an empty one as ``*empty*``). Quiet mode prints the value alone.

Reading mimics the C functions the tool uses, so the same strings are accepted: integers as
``strtoll`` / ``strtoull`` with base 0 (``0x`` hex, a leading ``0`` octal, optional sign and
leading blanks; an unsigned type takes a negative number modulo 2**64 as ``strtoull`` does),
numbers as ``strtod``. Text that is not a number is ``"<v> is not valid <type> type value"``,
a number outside the type ``"<v> is not valid <type> integer"`` — Corosync's messages.
"""

from __future__ import annotations

import math
import re

from pycorosync.lib.cmap_types import CmapEntry, CmapValue, ValueType

__all__ = ["ValueTextError", "format_key_line", "format_value", "parse_value"]

_C_INTEGER = re.compile(r"[ \t\n\r\f\v]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_PRINTABLE = range(0x20, 0x7F)


class ValueTextError(ValueError):
    """A value given on the command line does not fit its type; the text is the tool's."""


def format_value(entry: CmapEntry, *, show_binary: bool) -> str | None:
    """The value as the tool prints it; ``None`` for a binary value without ``-b``."""
    value = entry.value
    if entry.vtype in (ValueType.FLOAT, ValueType.DOUBLE):
        assert isinstance(value, float)
        return _c_fixed(value)
    if isinstance(value, bytes):
        if not show_binary:
            return None
        return _escape(value) if value else "*empty*"
    return str(value)


def format_key_line(key: str, entry: CmapEntry, *, show_binary: bool, quiet: bool) -> str:
    value = format_value(entry, show_binary=show_binary)
    if quiet:
        return value or ""
    head = f"{key} ({entry.vtype.tool_name})"
    return head if value is None else f"{head} = {value}"


def parse_value(vtype: ValueType, text: str) -> CmapValue:
    """The value of a ``-s`` or ``-p`` line; BINARY values are read by the caller."""
    if vtype.is_integer:
        return _parse_integer(vtype, text)
    if vtype in (ValueType.FLOAT, ValueType.DOUBLE):
        try:
            return float(text)
        except ValueError:
            raise ValueTextError(f"{text} is not valid {vtype.tool_name} type value") from None
    return text


def _parse_integer(vtype: ValueType, text: str) -> int:
    name = vtype.tool_name
    found = _C_INTEGER.fullmatch(text)
    if found is None:
        if text.strip(" \t\n\r\f\v") == "":
            return 0  # strtol converts nothing, leaves the end at the NUL: the tool takes 0
        raise ValueTextError(f"{text} is not valid {name} type value")
    sign, digits = found.groups()
    number = int(digits, _c_base(digits))
    if sign == "-":
        number = -number
    low, high = vtype.integer_range
    if low == 0 and -(1 << 64) < number < 0:
        number += 1 << 64  # strtoull negates in unsigned arithmetic
    if not low <= number <= high:
        raise ValueTextError(f"{text} is not valid {name} integer")
    return number


def _c_base(digits: str) -> int:
    if digits[:2].lower() == "0x":
        return 16
    return 8 if digits.startswith("0") else 10


def _c_fixed(value: float) -> str:
    # C's printf writes nan/inf with their sign; Python drops the sign of a NaN.
    if math.isnan(value):
        return "-nan" if math.copysign(1.0, value) < 0 else "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:f}"


def _escape(data: bytes) -> str:
    parts = []
    for byte in data:
        if byte == 0x5C:
            parts.append("\\\\")
        elif byte in _PRINTABLE:
            parts.append(chr(byte))
        else:
            parts.append(f"\\x{byte:02X}")
    return "".join(parts)
