"""Guards for the package-dir layout (DESIGN.md, Names and layout).

setuptools silently drops a subpackage that is not listed in ``packages``; these tests turn
that into a failure.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests._project import ROOT, listed_packages, package_dirs


def _packages_on_disk() -> set[str]:
    found: set[str] = set()
    for package, folder in package_dirs().items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            found.add(".".join([package, *rel.parts]) if rel.parts else package)
    return found


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    missing = _packages_on_disk() - set(listed_packages())
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_every_listed_package_exists() -> None:
    stale = set(listed_packages()) - _packages_on_disk()
    assert not stale, f"listed but not on disk: {sorted(stale)}"


def test_no_python_folder_lacks_an_init() -> None:
    """A folder of modules without ``__init__.py`` would be a namespace package: not shipped."""
    orphans = []
    for folder in package_dirs().values():
        for py in (ROOT / folder).rglob("*.py"):
            if not (py.parent / "__init__.py").exists():
                orphans.append(str(py.relative_to(ROOT)))
    assert not orphans, orphans


@pytest.mark.parametrize("folder", sorted(set(package_dirs().values())))
def test_mapped_folder_is_typed(folder: str) -> None:
    assert (ROOT / folder / "py.typed").is_file()


def test_namespace_root_has_no_init() -> None:
    assert not (ROOT / "pycorosync").exists()


@pytest.mark.parametrize("package", listed_packages())
def test_listed_package_imports_from_the_repo(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().is_relative_to(ROOT)
