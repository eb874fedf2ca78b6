"""Every pluggy hook of pycorosync, in one module (entry-point group ``pycorosync.services``).

Hooks are for contributing things to the daemon; an engine's lifecycle callbacks are *not*
hooks but methods of the engine (see :mod:`pycorosync.plugins.engine`), because they are
per engine and their order is fixed by ``(priority, service_id)``, not by pluggy's LIFO call
order.

A plugin is a module (or a module-level object) named by an entry point in the
``pycorosync.services`` group, carrying functions decorated with
:data:`pycorosync.plugins.hookimpl`.

A hook is added when something in the daemon calls it. The quorum-provider lookup
(``quorum.provider`` → provider, ``firstresult``) arrives with the quorum service, together
with the provider protocol it must return; declaring it before that protocol exists would
leave its result untyped.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from pycorosync.plugins.engine import ServiceEngine

PROJECT_NAME = "pycorosync"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

RegisterEngine = Callable[[type[ServiceEngine]], None]
"""The callback a plugin calls once per engine class it provides."""


@hookspec
def pycorosync_register_services(register: RegisterEngine) -> None:
    """Contribute service engines.

    Called once per plugin, when the daemon (or a worker process) builds its service registry,
    after every plugin has been imported; built-in plugins are asked first.

    :param register: call ``register(EngineClass)`` once for each engine class the plugin
        provides. The registry validates the class against
        :class:`~pycorosync.plugins.engine.ServiceEngine` on the spot and, once every plugin
        was asked, refuses clashing names and service ids and orders the engines by
        ``(priority, service_id)``. Registering the same class twice is harmless.

    The return value is ignored.
    """
