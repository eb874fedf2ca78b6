"""The service registry's rules, with in-process plugin sources (no installed distributions)."""

from __future__ import annotations

import logging

import pytest

from pycorosync.plugins import hookimpl
from pycorosync.plugins.errors import PluginConfigError, PluginLoadError
from pycorosync.plugins.hookspecs import RegisterEngine
from pycorosync.plugins.registry import LoadedEngine, LoadFailure, ServiceRegistry
from pycorosync.plugins.sources import PluginSettings, PluginSource, canonical_distribution_name
from tests._engines import FakePlugin, builtin, failing_load, make_engine, source

NO_ENV: dict[str, str] = {}


def _load(*sources: PluginSource, **kwargs: object) -> ServiceRegistry:
    environ = kwargs.pop("environ", NO_ENV)
    return ServiceRegistry.load(sources=sources, environ=environ, **kwargs)  # type: ignore[arg-type]


def _names(registry: ServiceRegistry) -> list[str]:
    return [engine.name for engine in registry.load_order()]


def _only_failure(registry: ServiceRegistry) -> str:
    assert len(registry.failures) == 1, registry.failures
    return str(registry.failures[0])


# Registration order and engine order -------------------------------------------------------


def test_builtins_are_registered_before_third_party_plugins() -> None:
    registry = _load(
        source("aaa", FakePlugin(make_engine("third", service_id=40))),
        builtin("zzz", FakePlugin(make_engine("core", service_id=3))),
    )
    assert [(p.name, p.builtin) for p in registry.plugins] == [("zzz", True), ("aaa", False)]
    assert registry.failures == ()


def test_engines_are_ordered_by_priority_then_service_id() -> None:
    engines = [
        make_engine("d", priority=2, service_id=41),
        make_engine("c", priority=1, service_id=45),
        make_engine("b", priority=1, service_id=44),
        make_engine("a", priority=0, service_id=50),
    ]
    registry = _load(
        source("one", FakePlugin(*engines[:2])), source("two", FakePlugin(*engines[2:]))
    )
    assert _names(registry) == ["a", "b", "c", "d"]
    assert registry.sync_order() == registry.load_order()
    assert _names_of(registry.unload_order()) == ["d", "c", "b", "a"]
    assert [loaded.order_key for loaded in registry.engines] == [(0, 50), (1, 44), (1, 45), (2, 41)]


def _names_of(engines: tuple[type, ...]) -> list[str]:
    return [engine.name for engine in engines]  # type: ignore[attr-defined]


def test_the_result_does_not_depend_on_discovery_order() -> None:
    sources = [
        builtin("core", FakePlugin(make_engine("core", service_id=1, priority=5))),
        source("x", FakePlugin(make_engine("x", service_id=60))),
        source("y", FakePlugin(make_engine("y", service_id=50))),
    ]
    forward = _load(*sources)
    backward = _load(*reversed(sources))
    assert forward.engines == backward.engines
    assert [p.name for p in forward.plugins] == [p.name for p in backward.plugins]


def test_lookup_by_name_and_service_id() -> None:
    engine = make_engine("lookup", service_id=77)
    registry = _load(source("p", FakePlugin(engine)))
    assert registry.by_name("lookup") is engine
    assert registry.by_service_id(77) is engine
    with pytest.raises(KeyError, match="no service engine named 'other'"):
        registry.by_name("other")
    with pytest.raises(KeyError, match="service id 78"):
        registry.by_service_id(78)


def test_loaded_engine_records_its_origin() -> None:
    engine = make_engine("origin", service_id=90)
    (loaded,) = _load(source("ep", FakePlugin(engine), distribution="dist-x")).engines
    assert loaded == LoadedEngine(engine=engine, plugin="ep", distribution="dist-x", builtin=False)
    assert "'origin'" in str(loaded)
    assert "plugin 'ep' of 'dist-x'" in str(loaded)


# Duplicates and clashes --------------------------------------------------------------------


def test_the_same_class_registered_twice_is_kept_once() -> None:
    engine = make_engine("twice", service_id=40)
    registry = _load(
        source("a", FakePlugin(engine, engine)),
        source("b", FakePlugin(engine)),
    )
    assert registry.load_order() == (engine,)
    assert registry.engines[0].plugin == "a"
    assert registry.failures == ()


def test_two_third_party_engines_with_one_service_id_are_both_refused() -> None:
    first = make_engine("first", service_id=42)
    second = make_engine("second", service_id=42)
    keeper = make_engine("keeper", service_id=43)
    registry = _load(source("p1", FakePlugin(first)), source("p2", FakePlugin(second, keeper)))
    assert registry.load_order() == (keeper,)
    messages = [str(failure) for failure in registry.failures]
    assert len(messages) == 2
    for message in messages:
        assert "service_id 42" in message
        assert "'first'" in message
        assert "'second'" in message


def test_a_builtin_keeps_its_service_id_against_a_third_party_engine() -> None:
    core = make_engine("core", service_id=40)
    intruder = make_engine("intruder", service_id=40)
    registry = _load(builtin("core", FakePlugin(core)), source("x", FakePlugin(intruder)))
    assert registry.load_order() == (core,)
    message = _only_failure(registry)
    assert message.startswith("plugin 'x' (distribution 'third-party')")
    assert "'intruder'" in message
    assert "'core'" in message


def test_two_builtins_with_one_service_id_are_both_refused() -> None:
    registry = _load(
        builtin("one", FakePlugin(make_engine("one", service_id=5))),
        builtin("two", FakePlugin(make_engine("two", service_id=5))),
    )
    assert registry.engines == ()
    assert [f.plugin for f in registry.failures] == ["one", "two"]


def test_two_engines_with_one_name_are_both_refused() -> None:
    registry = _load(
        source("p1", FakePlugin(make_engine("same", service_id=50))),
        source("p2", FakePlugin(make_engine("same", service_id=51))),
    )
    assert registry.engines == ()
    assert len(registry.failures) == 2
    assert all("name 'same'" in str(failure) for failure in registry.failures)


def test_a_third_party_engine_cannot_take_a_builtin_name() -> None:
    core = make_engine("cmap", service_id=0)
    registry = _load(
        builtin("cmap", FakePlugin(core)),
        source("fake-cmap", FakePlugin(make_engine("cmap", service_id=99))),
    )
    assert registry.load_order() == (core,)
    message = _only_failure(registry)
    assert "plugin 'fake-cmap'" in message
    assert "name 'cmap' belongs to the built-in engine 'cmap'" in message


@pytest.mark.parametrize("service_id", [0, 7, 31])
def test_a_third_party_engine_cannot_use_a_reserved_service_id(service_id: int) -> None:
    registry = _load(source("p", FakePlugin(make_engine("low", service_id=service_id))))
    assert registry.engines == ()
    assert f"service id {service_id} is in the range 0..31 reserved" in _only_failure(registry)


def test_a_builtin_may_use_a_reserved_service_id() -> None:
    core = make_engine("core", service_id=0)
    assert _load(builtin("core", FakePlugin(core))).load_order() == (core,)


def test_an_invalid_engine_fails_its_plugin_naming_it() -> None:
    good = make_engine("good", service_id=40)
    registry = _load(
        source("broken", FakePlugin(make_engine("bad", priority=-1))),
        source("fine", FakePlugin(good)),
    )
    assert registry.load_order() == (good,)
    message = _only_failure(registry)
    assert message.startswith("plugin 'broken' (distribution 'third-party')")
    assert "InvalidEngineError" in message
    assert "priority -1" in message


def test_a_plugin_that_fails_half_way_contributes_nothing() -> None:
    registry = _load(
        source("half", FakePlugin(make_engine("ok", service_id=40), make_engine("Bad Name")))
    )
    assert registry.engines == ()
    assert "name must be a str matching" in _only_failure(registry)


def test_a_hook_that_raises_fails_only_its_plugin() -> None:
    good = make_engine("good", service_id=41)
    registry = _load(
        source("raises", FakePlugin(make_engine("lost", service_id=40), error=OSError("disk"))),
        source("fine", FakePlugin(good)),
    )
    assert registry.load_order() == (good,)
    assert [p.name for p in registry.plugins] == ["fine"]
    assert _only_failure(registry) == (
        "plugin 'raises' (distribution 'third-party'): registering its engines failed: "
        "OSError: disk"
    )


# Import and hook validation ----------------------------------------------------------------


def test_an_import_failure_is_reported_and_the_others_still_load() -> None:
    good = make_engine("good", service_id=40)
    broken = PluginSource(
        name="broken",
        distribution="pycorosync-broken",
        load=failing_load(ModuleNotFoundError("No module named 'missing_dep'")),
    )
    registry = _load(broken, source("fine", FakePlugin(good)))
    assert registry.load_order() == (good,)
    assert registry.failures == (
        LoadFailure(plugin="broken", distribution="pycorosync-broken", reason="import failed"),
    )
    assert _only_failure(registry) == (
        "plugin 'broken' (distribution 'pycorosync-broken'): import failed: "
        "ModuleNotFoundError: No module named 'missing_dep'"
    )


def test_a_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    broken = PluginSource(name="broken", distribution="d", load=failing_load(ImportError("x")))
    with caplog.at_level(logging.ERROR, logger="pycorosync.plugins.registry"):
        _load(broken)
    assert "plugin 'broken' (distribution 'd'): import failed: ImportError: x" in caplog.text


class _MisspeltHook:
    @hookimpl
    def pycorosync_register_service(self, register: RegisterEngine) -> None:
        raise AssertionError("never called")


class _WrongArgument:
    @hookimpl
    def pycorosync_register_services(self, registrar: RegisterEngine) -> None:
        raise AssertionError("never called")


def test_a_misspelt_hook_fails_its_plugin_at_load() -> None:
    good = make_engine("good", service_id=40)
    registry = _load(source("typo", _MisspeltHook()), source("fine", FakePlugin(good)))
    assert registry.load_order() == (good,)
    assert [p.name for p in registry.plugins] == ["fine"]
    message = _only_failure(registry)
    assert "plugin 'typo'" in message
    assert "invalid hook implementation" in message
    assert "pycorosync_register_service" in message


def test_a_hook_with_a_wrong_argument_fails_its_plugin_at_load() -> None:
    message = _only_failure(_load(source("args", _WrongArgument())))
    assert "plugin 'args'" in message
    assert "registrar" in message


def test_a_plugin_without_engines_is_not_a_failure() -> None:
    registry = _load(source("empty", object()))
    assert registry.engines == ()
    assert registry.failures == ()
    assert [p.name for p in registry.plugins] == ["empty"]


def test_one_plugin_object_behind_two_entry_points_is_registered_once() -> None:
    engine = make_engine("shared", service_id=40)
    plugin = FakePlugin(engine)
    registry = _load(source("one", plugin), source("two", plugin))
    assert registry.load_order() == (engine,)
    assert [p.name for p in registry.plugins] == ["one"]
    assert registry.failures == ()


def test_a_third_party_entry_point_cannot_shadow_a_builtin_one() -> None:
    core = make_engine("core", service_id=2)
    imported: list[str] = []
    registry = _load(
        builtin("cpg", FakePlugin(core)),
        source("cpg", FakePlugin(make_engine("evil", service_id=40)), imported=imported),
    )
    assert registry.load_order() == (core,)
    assert imported == []
    message = _only_failure(registry)
    assert message.startswith("plugin 'cpg' (distribution 'third-party'): entry-point name 'cpg'")
    assert "several distributions ('pycorosync', 'third-party')" in message


def test_two_distributions_with_one_entry_point_name_are_both_refused() -> None:
    registry = _load(
        source("dup", FakePlugin(make_engine("a", service_id=40)), distribution="dist-a"),
        source("dup", FakePlugin(make_engine("b", service_id=41)), distribution="dist-b"),
    )
    assert registry.engines == ()
    assert [f.distribution for f in registry.failures] == ["dist-a", "dist-b"]


def test_raise_for_failures_lists_every_failure() -> None:
    registry = _load(
        PluginSource(name="a", distribution="d1", load=failing_load(ImportError("one"))),
        PluginSource(name="b", distribution="d2", load=failing_load(SyntaxError("two"))),
    )
    with pytest.raises(PluginLoadError) as raised:
        registry.raise_for_failures()
    text = str(raised.value)
    assert text.startswith("2 service plugin(s) failed to load:")
    assert "plugin 'a' (distribution 'd1'): import failed: ImportError: one" in text
    assert "plugin 'b' (distribution 'd2'): import failed: SyntaxError: two" in text
    assert raised.value.failures == registry.failures


def test_raise_for_failures_is_silent_without_failures() -> None:
    _load(source("p", FakePlugin(make_engine("ok", service_id=40)))).raise_for_failures()


# Operator switches ---------------------------------------------------------------------------


def _switch_sources(imported: list[str]) -> list[PluginSource]:
    return [
        builtin("core", FakePlugin(make_engine("core", service_id=1)), imported),
        source("echo", FakePlugin(make_engine("echo", service_id=1000)), imported=imported),
        source("other", FakePlugin(make_engine("other", service_id=1001)), imported=imported),
    ]


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_disabling_autoload_keeps_only_builtins(value: str) -> None:
    imported: list[str] = []
    environ = {"PYCOROSYNC_DISABLE_PLUGIN_AUTOLOAD": value}
    registry = _load(*_switch_sources(imported), environ=environ)
    assert _names(registry) == ["core"]
    assert imported == ["core"]
    assert registry.failures == ()


@pytest.mark.parametrize("value", ["", "0", "false", "No", "off"])
def test_autoload_stays_on_for_false_values(value: str) -> None:
    environ = {"PYCOROSYNC_DISABLE_PLUGIN_AUTOLOAD": value}
    assert _names(_load(*_switch_sources([]), environ=environ)) == ["core", "echo", "other"]


def test_a_malformed_autoload_switch_is_an_error() -> None:
    environ = {"PYCOROSYNC_DISABLE_PLUGIN_AUTOLOAD": "maybe"}
    with pytest.raises(PluginConfigError, match="PYCOROSYNC_DISABLE_PLUGIN_AUTOLOAD='maybe'"):
        _load(*_switch_sources([]), environ=environ)


def test_blocked_plugins_are_not_even_imported() -> None:
    imported: list[str] = []
    environ = {"PYCOROSYNC_BLOCKED_PLUGINS": " echo , ,unknown-plugin"}
    registry = _load(*_switch_sources(imported), environ=environ)
    assert _names(registry) == ["core", "other"]
    assert imported == ["core", "other"]
    assert registry.failures == ()


def test_blocking_a_builtin_is_an_error() -> None:
    environ = {"PYCOROSYNC_BLOCKED_PLUGINS": "echo,core"}
    with pytest.raises(PluginConfigError, match=r"built-in plugins \['core'\]"):
        _load(*_switch_sources([]), environ=environ)


def test_a_malformed_block_list_is_an_error() -> None:
    environ = {"PYCOROSYNC_BLOCKED_PLUGINS": "echo;rm -rf"}
    with pytest.raises(PluginConfigError, match="is not an entry-point name"):
        _load(*_switch_sources([]), environ=environ)


def test_settings_are_read_from_the_environment() -> None:
    settings = PluginSettings.from_environ(
        {"PYCOROSYNC_DISABLE_PLUGIN_AUTOLOAD": "1", "PYCOROSYNC_BLOCKED_PLUGINS": "a,b"}
    )
    assert settings == PluginSettings(autoload=False, blocked=frozenset({"a", "b"}))
    assert PluginSettings.from_environ({}) == PluginSettings()


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYCOROSYNC_BLOCKED_PLUGINS", "other")
    registry = ServiceRegistry.load(sources=_switch_sources([]))
    assert _names(registry) == ["core", "echo"]


# The names filter (a worker's exact set) -----------------------------------------------------


def test_names_load_exactly_the_requested_plugins() -> None:
    imported: list[str] = []
    registry = _load(*_switch_sources(imported), names=["echo"])
    assert _names(registry) == ["echo"]
    assert imported == ["echo"]
    assert registry.failures == ()


def test_names_must_not_be_a_single_string() -> None:
    with pytest.raises(TypeError, match="not 'echo'"):
        _load(*_switch_sources([]), names="echo")


def test_names_may_select_builtins_and_third_party_plugins() -> None:
    registry = _load(*_switch_sources([]), names={"core", "other"})
    assert _names(registry) == ["core", "other"]


def test_a_requested_plugin_that_is_not_installed_is_a_failure() -> None:
    registry = _load(*_switch_sources([]), names=["echo", "ghost"])
    assert _names(registry) == ["echo"]
    assert registry.failures == (
        LoadFailure(
            plugin="ghost",
            distribution=None,
            reason="requested but no installed distribution declares it",
        ),
    )
    assert str(registry.failures[0]).startswith("plugin 'ghost': requested")


def test_a_requested_plugin_that_is_blocked_is_a_failure() -> None:
    environ = {"PYCOROSYNC_BLOCKED_PLUGINS": "echo"}
    registry = _load(*_switch_sources([]), names=["echo"], environ=environ)
    assert registry.engines == ()
    assert "requested but skipped: blocked by PYCOROSYNC_BLOCKED_PLUGINS" in _only_failure(registry)


def test_a_requested_third_party_plugin_without_autoload_is_a_failure() -> None:
    environ = {"PYCOROSYNC_DISABLE_PLUGIN_AUTOLOAD": "1"}
    registry = _load(*_switch_sources([]), names=["core", "echo"], environ=environ)
    assert _names(registry) == ["core"]
    assert "PYCOROSYNC_DISABLE_PLUGIN_AUTOLOAD is set" in _only_failure(registry)


# Sources ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("pycorosync", "pycorosync"), ("PyCoroSync_Echo", "pycorosync-echo"), ("a.b__c", "a-b-c")],
)
def test_distribution_names_are_canonical(raw: str, canonical: str) -> None:
    assert canonical_distribution_name(raw) == canonical


def test_only_the_pycorosync_distribution_is_builtin() -> None:
    assert PluginSource(name="x", distribution="pycorosync", load=object).builtin
    assert not PluginSource(name="x", distribution="pycorosync-echo", load=object).builtin
