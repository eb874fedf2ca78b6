"""Errors of the plugin machinery. None of them reaches a client, so none is a ``CsError``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pycorosync.plugins.registry import LoadFailure


class PluginError(Exception):
    """Root of the plugin machinery's errors."""


class PluginConfigError(PluginError):
    """An operator setting (an environment switch) is malformed or contradictory."""


class InvalidEngineError(PluginError):
    """A registered class does not satisfy the ``ServiceEngine`` protocol or its rules."""


class PluginLoadError(PluginError):
    """One or more plugins failed to load; ``failures`` lists each of them."""

    def __init__(self, failures: Sequence[LoadFailure]) -> None:
        self.failures = tuple(failures)
        lines = [f"{len(self.failures)} service plugin(s) failed to load:"]
        lines += [f"  - {failure}" for failure in self.failures]
        super().__init__("\n".join(lines))
