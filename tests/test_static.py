"""``mypy --strict`` and ``ruff`` over our packages, as part of the one test command.

mypy cannot follow setuptools' editable import hook for a ``package-dir`` mapping, so the test
builds the ``pycorosync`` namespace as a farm of symlinks onto the mapped folders and points
mypy at it. That works for any install mode and always checks the files in this tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests._project import ROOT, package_dirs


def _tool(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    found = str(exe) if exe.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; install the project with its [test] extra")
    return found


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    farm = tmp_path / "src" / "pycorosync"
    farm.mkdir(parents=True)
    for package, folder in package_dirs().items():
        (farm / package.split(".", 1)[1]).symlink_to(ROOT / folder, target_is_directory=True)
    args = [_tool("mypy"), "--config-file", str(ROOT / "pyproject.toml")]
    args += ["--cache-dir", str(tmp_path / "cache")]
    for package in package_dirs():
        args += ["-p", package]
    env = dict(os.environ, MYPYPATH=str(tmp_path / "src"))
    result = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [_tool("ruff"), "check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = subprocess.run(
        [_tool("ruff"), "format", "--check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
