"""Where service plugins come from, and the operator's switches that filter them.

A plugin *source* is one entry point of the ``pycorosync.services`` group: its name, the
distribution that declares it, and how to import it. An entry point declared by the
``pycorosync`` distribution itself is a *built-in*; every other one is third-party. Tests
hand the registry sources of their own instead of the installed ones.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pycorosync.plugins.errors import PluginConfigError

ENTRY_POINT_GROUP = "pycorosync.services"
BUILTIN_DISTRIBUTION = "pycorosync"
DISABLE_AUTOLOAD_ENV = "PYCOROSYNC_DISABLE_PLUGIN_AUTOLOAD"
BLOCKED_PLUGINS_ENV = "PYCOROSYNC_BLOCKED_PLUGINS"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
_ENTRY_POINT_NAME = re.compile(r"[\w.-]+")


def canonical_distribution_name(name: str) -> str:
    """PEP 503 normalisation: ``PyCoroSync_Echo`` and ``pycorosync-echo`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginSource:
    """One entry point of the services group."""

    name: str
    """The entry-point name; what the block-list and the worker's ``names`` filter match."""
    distribution: str
    """The (canonical) name of the distribution that declares it."""
    load: Callable[[], object] = field(compare=False)
    """Imports the plugin and returns the module or object that carries its hookimpls."""

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


def installed_sources(group: str = ENTRY_POINT_GROUP) -> list[PluginSource]:
    """The entry points of ``group`` in the installed distributions (nothing is imported)."""
    sources = []
    for entry_point in importlib.metadata.entry_points(group=group):
        dist = entry_point.dist
        distribution = "<unknown distribution>" if dist is None else dist.name
        sources.append(
            PluginSource(
                name=entry_point.name,
                distribution=canonical_distribution_name(distribution),
                load=entry_point.load,
            )
        )
    return sources


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginSettings:
    """The operator's switches, normally read from the environment."""

    autoload: bool = True
    """Load third-party plugins; ``False`` means built-ins only."""
    blocked: frozenset[str] = frozenset()
    """Entry-point names never to import."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PluginSettings:
        """Read ``PYCOROSYNC_DISABLE_PLUGIN_AUTOLOAD`` and ``PYCOROSYNC_BLOCKED_PLUGINS``."""
        return cls(
            autoload=not _parse_flag(environ.get(DISABLE_AUTOLOAD_ENV, "")),
            blocked=_parse_names(environ.get(BLOCKED_PLUGINS_ENV, "")),
        )


def _parse_flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise PluginConfigError(
        f"{DISABLE_AUTOLOAD_ENV}={raw!r}: expected 1/true/yes/on or 0/false/no/off"
    )


def _parse_names(raw: str) -> frozenset[str]:
    names = frozenset(part.strip() for part in raw.split(",") if part.strip())
    for name in sorted(names):
        if _ENTRY_POINT_NAME.fullmatch(name) is None:
            raise PluginConfigError(
                f"{BLOCKED_PLUGINS_ENV}: {name!r} is not an entry-point name "
                "(expected comma-separated names such as 'echo,other')"
            )
    return names
