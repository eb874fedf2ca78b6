"""The hookspec module's conventions, and the hookimpl marker plugins import."""

from __future__ import annotations

import inspect

import pluggy

from pycorosync.plugins import hookimpl, hookspecs


def _hookspecs() -> list[tuple[str, object]]:
    return [
        (name, function)
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, "pycorosync_spec")
    ]


def test_every_hook_is_prefixed_and_documented() -> None:
    specs = _hookspecs()
    assert [name for name, _ in specs] == ["pycorosync_register_services"]
    for name, function in specs:
        assert name.startswith("pycorosync_")
        doc = inspect.getdoc(function) or ""
        assert "Called" in doc, f"{name}: say when it is called"
        assert ":param" in doc, f"{name}: document the arguments"
        assert "return value" in doc, f"{name}: say how the result is used"


def test_hookimpl_marks_implementations_for_our_project() -> None:
    @hookimpl
    def pycorosync_register_services(register: object) -> None:
        del register

    assert hookspecs.PROJECT_NAME == "pycorosync"
    assert hasattr(pycorosync_register_services, "pycorosync_impl")


def test_a_plugin_manager_accepts_the_specs_and_calls_the_hook() -> None:
    pm = pluggy.PluginManager("pycorosync")
    pm.add_hookspecs(hookspecs)
    registered: list[object] = []

    class Plugin:
        @hookimpl
        def pycorosync_register_services(self, register: hookspecs.RegisterEngine) -> None:
            register(int)  # type: ignore[arg-type]

    pm.register(Plugin())
    pm.check_pending()
    pm.hook.pycorosync_register_services(register=registered.append)
    assert registered == [int]
