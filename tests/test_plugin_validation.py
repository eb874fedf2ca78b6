"""validate_engine: every rule of the ServiceEngine protocol checked at load."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import pytest

from pycorosync.plugins.engine import ExecHandler, FlowControl, LibHandler
from pycorosync.plugins.errors import InvalidEngineError
from pycorosync.plugins.validation import validate_engine
from tests._engines import ValidEngine, make_engine


def _two_args(engine: object, conn: object) -> None:
    del engine, conn


def _three_args(engine: object, conn: object, payload: object) -> None:
    del engine, conn, payload


class _NeedsArgument(ValidEngine):
    def __init__(self, config: str) -> None:
        super().__init__()
        self.config = config


class _NameProperty(ValidEngine):
    @property  # type: ignore[misc]
    def name(self) -> str:  # type: ignore[override]
        return "prop"


class _NoSyncAbort:
    """Everything but sync_abort."""

    name = "partial"
    service_id = 40
    priority = 0
    version = 0
    allow_inquorate = True
    own_worker = False
    lib_handlers: ClassVar[Mapping[int, object]] = {}
    exec_handlers: ClassVar[Mapping[int, object]] = {}
    exec_init = ValidEngine.exec_init
    exec_exit = ValidEngine.exec_exit
    lib_init = ValidEngine.lib_init
    lib_exit = ValidEngine.lib_exit
    confchg = ValidEngine.confchg
    sync_init = ValidEngine.sync_init
    sync_process = ValidEngine.sync_process
    sync_activate = ValidEngine.sync_activate


def test_a_complete_engine_is_accepted() -> None:
    validate_engine(ValidEngine)
    validate_engine(make_engine("with_digits-2", service_id=65535, priority=0))


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        (ValidEngine(), "is not a class"),
        (dict, "engine dict: missing attribute 'name'"),  # a C type: no signature to inspect
        (_NeedsArgument, "constructible with no arguments"),
        (_NoSyncAbort, "missing attribute 'sync_abort'"),
        (_NameProperty, "name must be a class attribute, not a property"),
        (make_engine(name=7), "name must be a str"),  # type: ignore[arg-type]
        (make_engine("Upper"), "name must be a str matching"),
        (make_engine("has space"), "name must be a str matching"),
        (make_engine("x" * 33), "name must be a str matching"),
        (make_engine(service_id="40"), "service_id must be an int"),
        (make_engine(service_id=True), "service_id must be an int"),
        (make_engine(service_id=65536), "service_id 65536 is outside 0..65535"),
        (make_engine(service_id=-1), "service_id -1 is outside"),
        (make_engine(priority=-1), "priority -1 is outside"),
        (make_engine(version=1.5), "version must be an int"),
        (make_engine(allow_inquorate=1), "allow_inquorate must be a bool"),
        (make_engine(own_worker=None), "own_worker must be a bool"),
        (make_engine(exec_init=None), "exec_init must be callable"),
        (make_engine(sync_process=lambda self, extra: True), "sync_process must accept 1"),
        (make_engine(confchg=lambda self: None), "confchg must accept 6"),
        (make_engine(lib_handlers=[LibHandler(_three_args, FlowControl.REQUIRED)]), "mapping"),
        (make_engine(exec_handlers=None), "exec_handlers must be a mapping"),
        (
            make_engine(lib_handlers={"0": LibHandler(_three_args, FlowControl.REQUIRED)}),
            "lib_handlers['0']: the id must be an int",
        ),
        (
            make_engine(exec_handlers={65536: ExecHandler(_three_args)}),
            "exec_handlers[65536]: the id is outside 0..65535",
        ),
        (
            make_engine(lib_handlers={0: ExecHandler(_three_args)}),
            "lib_handlers[0]: must be a LibHandler",
        ),
        (
            make_engine(exec_handlers={3: LibHandler(_three_args, FlowControl.REQUIRED)}),
            "exec_handlers[3]: must be a ExecHandler",
        ),
        (
            make_engine(lib_handlers={0: LibHandler(_three_args, 1)}),  # type: ignore[arg-type]
            "flow_control must be a FlowControl",
        ),
        (
            make_engine(lib_handlers={0: LibHandler(_two_args, FlowControl.REQUIRED)}),
            "lib_handlers[0].handler must accept 3 positional arguments",
        ),
        (
            make_engine(exec_handlers={0: ExecHandler("not callable")}),  # type: ignore[arg-type]
            "exec_handlers[0].handler must be callable",
        ),
    ],
)
def test_an_invalid_engine_is_refused_with_a_clear_reason(engine: object, message: str) -> None:
    with pytest.raises(InvalidEngineError) as raised:
        validate_engine(engine)
    assert message in str(raised.value)


def test_the_error_names_the_class() -> None:
    with pytest.raises(InvalidEngineError, match="Engine_badprio: priority -3"):
        validate_engine(make_engine("badprio", priority=-3))
