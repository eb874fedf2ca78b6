"""Facts about the source tree that several tests need (read from pyproject.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def package_dirs() -> dict[str, str]:
    """``pycorosync.<sub>`` → top-level folder, as setuptools maps them."""
    tool = pyproject()["tool"]
    assert isinstance(tool, dict)
    mapping = tool["setuptools"]["package-dir"]
    assert isinstance(mapping, dict)
    return {str(k): str(v) for k, v in mapping.items()}


def listed_packages() -> list[str]:
    tool = pyproject()["tool"]
    assert isinstance(tool, dict)
    packages = tool["setuptools"]["packages"]
    assert isinstance(packages, list)
    return [str(p) for p in packages]
