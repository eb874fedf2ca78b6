"""The service registry: which engines this process runs, validated and in cluster order.

Theory of operation
-------------------
One :class:`pluggy.PluginManager` named ``pycorosync`` is built per process (the Totem process
builds the full set to decide the workers; each worker builds exactly its own set with
``names=``). :meth:`ServiceRegistry.load` runs four steps:

1. **Select** entry points of the ``pycorosync.services`` group (see
   :mod:`pycorosync.plugins.sources`): built-ins (declared by the ``pycorosync`` distribution)
   always; third-party ones unless ``PYCOROSYNC_DISABLE_PLUGIN_AUTOLOAD`` is set or their name
   is in ``PYCOROSYNC_BLOCKED_PLUGINS``; only the requested ones if ``names`` is given (a
   requested name that is missing, blocked or not autoloaded is a failure). Blocking a
   built-in is a configuration error. Two entry points with one name: a built-in keeps it,
   otherwise all of them are refused.
2. **Import and register** each selected plugin, built-ins first, then third-party ones sorted
   by entry-point name, so nothing depends on the file system's order. ``check_pending()``
   runs after each registration, so a misspelt hook fails *that* plugin at once.
3. **Collect** engines: each plugin's ``pycorosync_register_services(register)`` is called on
   its own, so every error names the plugin. ``register`` validates the class
   (:mod:`pycorosync.plugins.validation`), drops a class already registered, and refuses a
   third-party engine that takes a built-in's name or a service id in 0..31. A plugin whose
   hook raises contributes nothing.
4. **Refuse clashes and order**: engines sharing a service id or a name are refused (all of
   them, unless exactly one is a built-in, which keeps it), and the rest are sorted by
   ``(priority, service_id)``: the load and sync order; unload is the reverse.

Failures never stop the other plugins from loading; they are logged and collected in
:attr:`ServiceRegistry.failures`. **For the daemon every failure is fatal**:
:meth:`ServiceRegistry.raise_for_failures` raises them all at once, and ``corosync-exec``
is to exit as Corosync does when an engine fails to initialise (code 20). A node that
silently ran without an engine its peers run would diverge from them; an operator who wants
to run without a broken plugin says so with ``PYCOROSYNC_BLOCKED_PLUGINS``.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pluggy

from pycorosync.plugins import hookspecs
from pycorosync.plugins.engine import RESERVED_SERVICE_ID_MAX, ServiceEngine
from pycorosync.plugins.errors import InvalidEngineError, PluginConfigError, PluginLoadError
from pycorosync.plugins.sources import (
    BLOCKED_PLUGINS_ENV,
    DISABLE_AUTOLOAD_ENV,
    PluginSettings,
    PluginSource,
    installed_sources,
)
from pycorosync.plugins.validation import validate_engine

__all__ = ["LoadFailure", "LoadedEngine", "ServiceRegistry"]

log = logging.getLogger(__name__)

_REGISTER_HOOK = "pycorosync_register_services"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadFailure:
    """A plugin (or a requested one) that contributes nothing, and why."""

    plugin: str
    """The entry-point name."""
    distribution: str | None
    """The distribution that declares it; ``None`` for a requested name nobody declares."""
    reason: str
    error: Exception | None = field(default=None, compare=False)

    def __str__(self) -> str:
        where = f"plugin {self.plugin!r}"
        if self.distribution is not None:
            where += f" (distribution {self.distribution!r})"
        text = f"{where}: {self.reason}"
        if self.error is not None:
            text += f": {type(self.error).__name__}: {self.error}"
        return text


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedEngine:
    """An accepted engine class and the plugin it came from."""

    engine: type[ServiceEngine]
    plugin: str
    distribution: str
    builtin: bool

    @property
    def order_key(self) -> tuple[int, int]:
        """``(priority, service_id)``: the cluster-wide load and sync order."""
        return (self.engine.priority, self.engine.service_id)

    def __str__(self) -> str:
        return (
            f"engine {self.engine.name!r} ({self.engine.__qualname__}, service id "
            f"{self.engine.service_id}, plugin {self.plugin!r} of {self.distribution!r})"
        )


class ServiceRegistry:
    """The engines of this process, validated and ordered. Build it with :meth:`load`."""

    def __init__(
        self,
        engines: Iterable[LoadedEngine],
        failures: Iterable[LoadFailure] = (),
        plugins: Iterable[PluginSource] = (),
    ) -> None:
        self._engines = tuple(sorted(engines, key=lambda loaded: loaded.order_key))
        self._failures = tuple(failures)
        self._plugins = tuple(plugins)

    @classmethod
    def load(
        cls,
        *,
        names: Collection[str] | None = None,
        environ: Mapping[str, str] | None = None,
        sources: Iterable[PluginSource] | None = None,
    ) -> ServiceRegistry:
        """Select, import, validate and order the service plugins.

        :param names: entry-point names to load, exactly (a worker's set); ``None`` = all.
        :param environ: where the switches are read; ``os.environ`` by default.
        :param sources: the entry points to consider; the installed ones by default.
        :raises PluginConfigError: a switch is malformed or blocks a built-in.
        :raises TypeError: ``names`` is a single string.
        """
        if isinstance(names, str):
            raise TypeError(f"names must be a collection of entry-point names, not {names!r}")
        settings = PluginSettings.from_environ(os.environ if environ is None else environ)
        found = installed_sources() if sources is None else list(sources)
        loader = _Loader(settings, None if names is None else frozenset(names))
        engines = loader.run(found)
        return cls(engines, loader.failures, loader.registered_sources)

    @property
    def engines(self) -> tuple[LoadedEngine, ...]:
        """Accepted engines in load order."""
        return self._engines

    @property
    def failures(self) -> tuple[LoadFailure, ...]:
        return self._failures

    @property
    def plugins(self) -> tuple[PluginSource, ...]:
        """The plugins that were imported and registered, in registration order."""
        return self._plugins

    def load_order(self) -> tuple[type[ServiceEngine], ...]:
        """Engine classes by ``(priority, service_id)``."""
        return tuple(loaded.engine for loaded in self._engines)

    def sync_order(self) -> tuple[type[ServiceEngine], ...]:
        """The order in which engines run their sync phases: the load order."""
        return self.load_order()

    def unload_order(self) -> tuple[type[ServiceEngine], ...]:
        """The reverse of the load order."""
        return self.load_order()[::-1]

    def by_name(self, name: str) -> type[ServiceEngine]:
        """The engine called ``name``; ``KeyError`` if this process has none."""
        for loaded in self._engines:
            if loaded.engine.name == name:
                return loaded.engine
        raise KeyError(f"no service engine named {name!r} is loaded")

    def by_service_id(self, service_id: int) -> type[ServiceEngine]:
        """The engine with this wire service id; ``KeyError`` if this process has none."""
        for loaded in self._engines:
            if loaded.engine.service_id == service_id:
                return loaded.engine
        raise KeyError(f"no service engine with service id {service_id} is loaded")

    def raise_for_failures(self) -> None:
        """Raise :class:`PluginLoadError` listing every failure, if there is any."""
        if self._failures:
            raise PluginLoadError(self._failures)


class _Loader:
    """One run of the four load steps; collects failures instead of stopping at the first."""

    def __init__(self, settings: PluginSettings, names: frozenset[str] | None) -> None:
        self._settings = settings
        self._names = names
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._registered: list[tuple[PluginSource, object]] = []
        self.failures: list[LoadFailure] = []

    @property
    def registered_sources(self) -> list[PluginSource]:
        return [source for source, _ in self._registered]

    def run(self, sources: Sequence[PluginSource]) -> list[LoadedEngine]:
        for source in self._select(sources):
            self._register(source)
        return self._refuse_clashes(self._collect())

    def _fail(
        self,
        plugin: str,
        distribution: str | None,
        reason: str,
        error: Exception | None = None,
    ) -> None:
        failure = LoadFailure(plugin=plugin, distribution=distribution, reason=reason, error=error)
        log.error("service plugin refused: %s", failure)
        self.failures.append(failure)

    # Step 1 -------------------------------------------------------------------------------

    def _select(self, sources: Sequence[PluginSource]) -> list[PluginSource]:
        ordered = sorted(sources, key=lambda s: (not s.builtin, s.name, s.distribution))
        builtin_names = {s.name for s in ordered if s.builtin}
        if blocked_builtins := sorted(self._settings.blocked & builtin_names):
            raise PluginConfigError(
                f"{BLOCKED_PLUGINS_ENV} names built-in plugins {blocked_builtins}; "
                "built-in service engines cannot be blocked"
            )
        selected = [s for s in ordered if self._wanted(s)]
        if self._names is not None:
            for name in sorted(self._names - {s.name for s in ordered}):
                self._fail(name, None, "requested but no installed distribution declares it")
        return self._refuse_duplicate_names(selected)

    def _wanted(self, source: PluginSource) -> bool:
        if self._names is not None and source.name not in self._names:
            return False
        if not source.builtin and not self._settings.autoload:
            skipped = f"third-party plugin skipped: {DISABLE_AUTOLOAD_ENV} is set"
        elif source.name in self._settings.blocked:
            skipped = f"skipped: blocked by {BLOCKED_PLUGINS_ENV}"
        else:
            return True
        if self._names is not None:
            self._fail(source.name, source.distribution, f"requested but {skipped}")
        else:
            log.info("service plugin %r of %r %s", source.name, source.distribution, skipped)
        return False

    def _refuse_duplicate_names(self, selected: list[PluginSource]) -> list[PluginSource]:
        by_name: defaultdict[str, list[PluginSource]] = defaultdict(list)
        for source in selected:
            by_name[source.name].append(source)
        kept = []
        for name, group in by_name.items():
            if len(group) == 1:
                kept.append(group[0])
                continue
            declared_by = ", ".join(repr(s.distribution) for s in group)
            reason = (
                f"entry-point name {name!r} is declared by several distributions ({declared_by})"
            )
            for source in group:
                if source.builtin:
                    kept.append(source)
                else:
                    self._fail(source.name, source.distribution, reason)
        return kept

    # Step 2 -------------------------------------------------------------------------------

    def _register(self, source: PluginSource) -> None:
        try:
            plugin = source.load()
        except Exception as exc:  # any import-time error of foreign code
            self._fail(source.name, source.distribution, "import failed", exc)
            return
        if self._pm.is_registered(plugin):
            # Two entry points naming one module: its hooks must not run twice.
            log.warning("service plugin %r is already registered under another name", source.name)
            return
        try:
            self._pm.register(plugin, name=source.name)
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self._pm.is_registered(plugin):
                self._pm.unregister(plugin)
            self._fail(source.name, source.distribution, "invalid hook implementation", exc)
            return
        self._registered.append((source, plugin))

    # Step 3 -------------------------------------------------------------------------------

    def _collect(self) -> list[LoadedEngine]:
        accepted: list[LoadedEngine] = []
        for source, plugin in list(self._registered):
            # Ask one plugin at a time, so that an error is attributed to it.
            others = [other for _, other in self._registered if other is not plugin]
            hook = self._pm.subset_hook_caller(_REGISTER_HOOK, remove_plugins=others)
            contributed: list[LoadedEngine] = []
            try:
                hook(register=_Registrar(source, accepted, contributed))
            except Exception as exc:  # the plugin's own code, or our refusal of its engine
                self._fail(source.name, source.distribution, "registering its engines failed", exc)
                self._pm.unregister(plugin)
                self._registered.remove((source, plugin))
                continue
            accepted.extend(contributed)
        return accepted

    # Step 4 -------------------------------------------------------------------------------

    def _refuse_clashes(self, engines: list[LoadedEngine]) -> list[LoadedEngine]:
        refused: set[int] = set()
        for attribute in ("service_id", "name"):
            groups: defaultdict[object, list[LoadedEngine]] = defaultdict(list)
            for loaded in engines:
                groups[getattr(loaded.engine, attribute)].append(loaded)
            for value, group in groups.items():
                if len(group) > 1:
                    refused |= self._refuse_group(attribute, value, group)
        return [loaded for loaded in engines if id(loaded) not in refused]

    def _refuse_group(self, attribute: str, value: object, group: list[LoadedEngine]) -> set[int]:
        # A single built-in keeps what it declared; otherwise nobody can be preferred.
        single_builtin = sum(loaded.builtin for loaded in group) == 1
        losers = [loaded for loaded in group if not (single_builtin and loaded.builtin)]
        for loser in losers:
            others = "; ".join(str(other) for other in group if other is not loser)
            self._fail(
                loser.plugin,
                loser.distribution,
                f"{attribute} {value!r} of {loser} is also used by {others}",
            )
        return {id(loser) for loser in losers}


class _Registrar:
    """The ``register`` callback handed to one plugin's hook implementation."""

    def __init__(
        self,
        source: PluginSource,
        accepted: Sequence[LoadedEngine],
        contributed: list[LoadedEngine],
    ) -> None:
        self._source = source
        self._accepted = accepted
        self._contributed = contributed

    def __call__(self, engine: type[ServiceEngine]) -> None:
        validate_engine(engine)
        known = [*self._accepted, *self._contributed]
        if any(loaded.engine is engine for loaded in known):
            log.debug("engine %s registered again; ignored", engine.__qualname__)
            return
        if not self._source.builtin:
            self._check_third_party(engine, known)
        self._contributed.append(
            LoadedEngine(
                engine=engine,
                plugin=self._source.name,
                distribution=self._source.distribution,
                builtin=self._source.builtin,
            )
        )

    @staticmethod
    def _check_third_party(engine: type[ServiceEngine], known: Sequence[LoadedEngine]) -> None:
        label = engine.__qualname__
        if engine.service_id <= RESERVED_SERVICE_ID_MAX:
            raise InvalidEngineError(
                f"engine {label}: service id {engine.service_id} is in the range "
                f"0..{RESERVED_SERVICE_ID_MAX} reserved for built-in engines"
            )
        for loaded in known:
            if loaded.builtin and loaded.engine.name == engine.name:
                raise InvalidEngineError(
                    f"engine {label}: name {engine.name!r} belongs to the built-in {loaded}"
                )
