"""Where a node keeps its runtime files (pid lock, client sockets) and its durable state.

Several nodes may run on one host, so both are per node and come from the configuration:
``system.run_dir`` (our key) and ``system.state_dir`` (Corosync's). Without them the run
directory is ``$PYCOROSYNC_RUN_DIR`` — the variable clients and tools also use to find a node —
or ``/run/corosync``, and the state directory is systemd's ``$STATE_DIRECTORY`` or
``/var/lib/corosync``, as Corosync chooses it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from pycorosync.exec.coroparse import ParsedConfig

DEFAULT_RUN_DIR = "/run/corosync"
DEFAULT_STATE_DIR = "/var/lib/corosync"
RUN_DIR_ENV = "PYCOROSYNC_RUN_DIR"
PID_FILE_NAME = "corosync.pid"


@dataclass(frozen=True, slots=True)
class RunDirs:
    run_dir: str
    state_dir: str

    @classmethod
    def from_config(cls, parsed: ParsedConfig, environ: Mapping[str, str]) -> RunDirs:
        run_dir = parsed.get_str("system.run_dir") or environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR
        state_dir = (
            parsed.get_str("system.state_dir")
            or environ.get("STATE_DIRECTORY")
            or DEFAULT_STATE_DIR
        )
        return cls(run_dir=run_dir, state_dir=state_dir)

    @property
    def pid_file(self) -> str:
        return os.path.join(self.run_dir, PID_FILE_NAME)

    def create(self) -> None:
        """Create both directories if missing; OSError says which one failed.

        The state directory is private (0700). The run directory is 0755: clients of other
        users (``uidgid.*``) must reach the sockets in it, and each connection is admitted by
        its peer credentials, not by the file system."""
        os.makedirs(self.run_dir, mode=0o755, exist_ok=True)
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
