"""Shared test configuration."""

from __future__ import annotations

import os

from hypothesis import settings

# CI is deterministic: derandomised examples, no per-example deadline (DESIGN.md, Testing).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Fixtures of the real-process tests, shared by every test file that starts daemons.
from tests._loopback import base, make_cluster  # noqa: E402

__all__ = ["base", "make_cluster"]
