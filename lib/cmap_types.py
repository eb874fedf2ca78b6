"""cmap value types, shared by the store, the client library and the tools.

The numbers are Corosync's ``cmap_value_types_t`` (identical in icmap); the short names are
the ones ``corosync-cmapctl`` prints and accepts.
"""

from __future__ import annotations

from enum import IntEnum

CmapValue = int | float | str | bytes


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
