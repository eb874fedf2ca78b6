"""The cmap service engine (service id 0), built in and declared like any plugin.

Theory of operation. The ``cmap`` entry point of the ``pycorosync.services`` group names this
module; the registry imports it and calls the hook below, which registers
:class:`~pycorosync.services.cmap.engine.CmapEngine`. See that module for the engine itself.
"""

from __future__ import annotations

from pycorosync.plugins import hookimpl
from pycorosync.plugins.hookspecs import RegisterEngine
from pycorosync.services.cmap.engine import CmapEngine

__all__ = ["CmapEngine"]


@hookimpl
def pycorosync_register_services(register: RegisterEngine) -> None:
    register(CmapEngine)
