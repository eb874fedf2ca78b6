"""Engine classes and plugins made up in-process, for the registry and validation tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from pycorosync.exec.totem.events import ConfigKind, RingId
from pycorosync.plugins import hookimpl
from pycorosync.plugins.engine import (
    ClientConnection,
    ExecHandler,
    ExecutiveApi,
    FlowControl,
    LibHandler,
)
from pycorosync.plugins.hookspecs import RegisterEngine
from pycorosync.plugins.sources import PluginSource


class ValidEngine:
    """A complete engine that records the calls it gets; tests derive variants from it."""

    name: ClassVar[str] = "valid"
    service_id: ClassVar[int] = 40
    priority: ClassVar[int] = 1
    version: ClassVar[int] = 0
    allow_inquorate: ClassVar[bool] = True
    own_worker: ClassVar[bool] = False

    def __init__(self) -> None:
        self.calls: list[str] = []

    def exec_init(self, api: ExecutiveApi) -> None:
        self.calls.append("exec_init")

    def exec_exit(self) -> bool:
        self.calls.append("exec_exit")
        return True

    def lib_init(self, conn: ClientConnection) -> None:
        self.calls.append(f"lib_init {conn.conn_id}")

    def lib_exit(self, conn: ClientConnection) -> None:
        self.calls.append(f"lib_exit {conn.conn_id}")

    def confchg(
        self,
        kind: ConfigKind,
        members: tuple[int, ...],
        left: tuple[int, ...],
        joined: tuple[int, ...],
        ring_id: RingId,
    ) -> None:
        self.calls.append(f"confchg {kind.name} {members} -{left} +{joined} {ring_id}")

    def sync_init(
        self, transitional_members: tuple[int, ...], members: tuple[int, ...], ring_id: RingId
    ) -> None:
        self.calls.append(f"sync_init {transitional_members} {members} {ring_id}")

    def sync_process(self) -> bool:
        self.calls.append("sync_process")
        return True

    def sync_activate(self) -> None:
        self.calls.append("sync_activate")

    def sync_abort(self) -> None:
        self.calls.append("sync_abort")

    def _lib_ping(self, conn: ClientConnection, payload: bytes) -> None:
        self.calls.append(f"ping {conn.conn_id} {payload!r}")

    def _exec_note(self, payload: bytes, sender: int) -> None:
        self.calls.append(f"note from {sender} {payload!r}")

    lib_handlers: ClassVar[Mapping[int, LibHandler[Any]]] = {
        0: LibHandler(_lib_ping, FlowControl.REQUIRED),
        1: LibHandler(_lib_ping, FlowControl.NOT_REQUIRED),
    }
    exec_handlers: ClassVar[Mapping[int, ExecHandler[Any]]] = {0: ExecHandler(_exec_note)}


def make_engine(name: str = "valid", **attributes: object) -> type[ValidEngine]:
    """A fresh subclass of :class:`ValidEngine` with ``name`` and the given attributes."""
    namespace: dict[str, object] = {"name": name, **attributes}
    return type(f"Engine_{name}", (ValidEngine,), namespace)


class FakePlugin:
    """A plugin object whose hook registers the given engines (or raises ``error``)."""

    def __init__(self, *engines: object, error: Exception | None = None) -> None:
        self.engines = engines
        self.error = error

    @hookimpl
    def pycorosync_register_services(self, register: RegisterEngine) -> None:
        for engine in self.engines:
            register(engine)  # type: ignore[arg-type]
        if self.error is not None:
            raise self.error


def source(
    name: str,
    plugin: object,
    *,
    distribution: str = "third-party",
    imported: list[str] | None = None,
) -> PluginSource:
    """A plugin source whose load returns ``plugin`` and notes the import in ``imported``."""

    def load() -> object:
        if imported is not None:
            imported.append(name)
        return plugin

    return PluginSource(name=name, distribution=distribution, load=load)


def builtin(name: str, plugin: object, imported: list[str] | None = None) -> PluginSource:
    return source(name, plugin, distribution="pycorosync", imported=imported)


def failing_load(error: Exception) -> Callable[[], object]:
    def load() -> object:
        raise error

    return load
