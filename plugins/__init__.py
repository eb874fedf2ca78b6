"""The plugin contract: hookspecs, the ServiceEngine protocol and the registry.

Plugin authors need :data:`hookimpl` and the names of :mod:`pycorosync.plugins.engine`; the
daemon uses :class:`~pycorosync.plugins.registry.ServiceRegistry`. See ``docs/plugins.md``.
"""

from pycorosync.plugins.hookspecs import hookimpl

__all__ = ["hookimpl"]
