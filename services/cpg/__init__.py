"""The CPG service engine (service id 2), built in and declared like any plugin.

Theory of operation. The ``cpg`` entry point of the ``pycorosync.services`` group names this
module; the registry imports it and calls the hook below, which registers
:class:`~pycorosync.services.cpg.engine.CpgEngine`. See that module for the engine itself.
"""

from __future__ import annotations

from pycorosync.plugins import hookimpl
from pycorosync.plugins.hookspecs import RegisterEngine
from pycorosync.services.cpg.engine import CpgEngine

__all__ = ["CpgEngine"]


@hookimpl
def pycorosync_register_services(register: RegisterEngine) -> None:
    register(CpgEngine)
