"""Checking a registered class against the ``ServiceEngine`` protocol, at load.

A structural protocol is only checked by a type checker; a third-party class arrives at run
time, so this module checks the same contract by hand: every attribute present on the class
with the right type and range, every method present and callable with the protocol's
arguments, and the handler tables well formed. The first problem found is raised as an
:class:`InvalidEngineError` that names the class and the attribute.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from pycorosync.plugins.engine import (
    ENGINE_NAME_PATTERN,
    HANDLER_ID_MAX,
    SERVICE_ID_MAX,
    ExecHandler,
    FlowControl,
    LibHandler,
)
from pycorosync.plugins.errors import InvalidEngineError

_MISSING = object()

# Arguments each lifecycle method takes after ``self``.
_METHOD_ARITY = {
    "exec_init": 1,
    "exec_exit": 0,
    "lib_init": 1,
    "lib_exit": 1,
    "confchg": 5,
    "sync_init": 3,
    "sync_process": 0,
    "sync_activate": 0,
    "sync_abort": 0,
}

_INT_RANGES = {
    "service_id": (0, SERVICE_ID_MAX),
    "priority": (0, 0xFFFFFFFF),
    "version": (0, 0xFFFFFFFF),
}

_FLAGS = ("allow_inquorate", "own_worker")


def validate_engine(engine: object) -> None:
    """Raise :class:`InvalidEngineError` unless ``engine`` is a valid engine class."""
    if not inspect.isclass(engine):
        raise InvalidEngineError(f"{engine!r} is not a class; register the engine class itself")
    label = engine.__qualname__
    _check_constructor(engine, label)
    _check_name(_attribute(engine, "name", label), label)
    for attr, (low, high) in _INT_RANGES.items():
        _check_int(_attribute(engine, attr, label), attr, low, high, label)
    for attr in _FLAGS:
        if not isinstance(_attribute(engine, attr, label), bool):
            raise InvalidEngineError(f"engine {label}: {attr} must be a bool")
    for method, arity in _METHOD_ARITY.items():
        _check_callable(_attribute(engine, method, label), 1 + arity, f"{label}.{method}")
    _check_table(_attribute(engine, "lib_handlers", label), "lib_handlers", LibHandler, label)
    _check_table(_attribute(engine, "exec_handlers", label), "exec_handlers", ExecHandler, label)


def _attribute(engine: type, attr: str, label: str) -> Any:
    value = getattr(engine, attr, _MISSING)
    if value is _MISSING:
        raise InvalidEngineError(f"engine {label}: missing attribute {attr!r}")
    if isinstance(value, property):
        raise InvalidEngineError(
            f"engine {label}: {attr} must be a class attribute, not a property"
        )
    return value


def _check_constructor(engine: type, label: str) -> None:
    try:
        inspect.signature(engine).bind()
    except TypeError:
        raise InvalidEngineError(
            f"engine {label}: must be constructible with no arguments (EngineClass())"
        ) from None
    except ValueError:
        return  # no introspectable signature (a C type): let instantiation tell


def _check_name(value: object, label: str) -> None:
    if not isinstance(value, str) or re.fullmatch(ENGINE_NAME_PATTERN, value) is None:
        raise InvalidEngineError(
            f"engine {label}: name must be a str matching {ENGINE_NAME_PATTERN}, got {value!r}"
        )


def _check_int(value: object, attr: str, low: int, high: int, label: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEngineError(f"engine {label}: {attr} must be an int, got {value!r}")
    if not low <= value <= high:
        raise InvalidEngineError(f"engine {label}: {attr} {value} is outside {low}..{high}")


def _check_callable(value: object, positional: int, label: str) -> None:
    if not callable(value):
        raise InvalidEngineError(f"{label} must be callable, got {value!r}")
    if not _accepts(value, positional):
        raise InvalidEngineError(f"{label} must accept {positional} positional arguments")


def _accepts(function: Callable[..., object], positional: int) -> bool:
    try:
        inspect.signature(function).bind(*([None] * positional))
    except TypeError:
        return False
    except ValueError:
        return True  # no introspectable signature: nothing more to check
    return True


def _check_table(table: object, attr: str, entry_type: type[Any], label: str) -> None:
    if not isinstance(table, Mapping):
        raise InvalidEngineError(f"engine {label}: {attr} must be a mapping of id to handler")
    for handler_id, entry in table.items():
        where = f"engine {label}: {attr}[{handler_id!r}]"
        if isinstance(handler_id, bool) or not isinstance(handler_id, int):
            raise InvalidEngineError(f"{where}: the id must be an int")
        if not 0 <= handler_id <= HANDLER_ID_MAX:
            raise InvalidEngineError(f"{where}: the id is outside 0..{HANDLER_ID_MAX}")
        if not isinstance(entry, entry_type):
            raise InvalidEngineError(f"{where}: must be a {entry_type.__name__}")
        # Both kinds are called with the engine and two arguments.
        _check_callable(entry.handler, 3, f"{where}.handler")
        if isinstance(entry, LibHandler) and not isinstance(entry.flow_control, FlowControl):
            raise InvalidEngineError(f"{where}: flow_control must be a FlowControl")
