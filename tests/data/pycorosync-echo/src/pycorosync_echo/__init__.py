"""pycorosync-echo: an example third-party service engine for pycorosync.

The entry point ``echo`` in the ``pycorosync.services`` group names this module; pycorosync
imports it and calls the hook below, which registers the engine class.
"""

from __future__ import annotations

from pycorosync.plugins import hookimpl
from pycorosync.plugins.hookspecs import RegisterEngine
from pycorosync_echo.engine import EchoEngine

__all__ = ["EchoEngine"]


@hookimpl
def pycorosync_register_services(register: RegisterEngine) -> None:
    register(EchoEngine)
