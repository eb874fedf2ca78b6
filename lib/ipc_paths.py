"""Where a node's client sockets live, as both the server and the client libraries find them.

Theory of operation
-------------------
Each service the worker serves listens on ``<run_dir>/<service>.sock``. The run directory is
the node's (``system.run_dir`` in the daemon's configuration); a client finds it in
``$PYCOROSYNC_RUN_DIR`` or falls back to the system run directory, the same rule the daemon
applies (``exec/rundirs.py``; repeated here because a client library must not import the
executive). A Unix socket path is limited to 107 bytes plus the terminating NUL; a longer
path is refused with a clear error instead of being silently truncated by the kernel.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from pycorosync.lib.errors import NameTooLongError

__all__ = ["MAX_SOCKET_PATH", "RUN_DIR_ENV", "SYSTEM_RUN_DIR", "default_run_dir", "socket_path"]

RUN_DIR_ENV: Final = "PYCOROSYNC_RUN_DIR"
SYSTEM_RUN_DIR: Final = "/run/corosync"
MAX_SOCKET_PATH: Final = 107
"""``sizeof(sun_path)`` is 108 on Linux, one of which is the NUL."""


def default_run_dir(environ: Mapping[str, str] = os.environ) -> str:
    """``$PYCOROSYNC_RUN_DIR`` or the system run directory."""
    return environ.get(RUN_DIR_ENV) or SYSTEM_RUN_DIR


def socket_path(run_dir: str, service: str) -> str:
    """The socket of ``service``; NameTooLongError if it does not fit a Unix address."""
    if not service or "/" in service or "\0" in service:
        raise ValueError(f"invalid service name {service!r}")
    path = os.path.join(run_dir, f"{service}.sock")
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        raise NameTooLongError(
            f"socket path {path!r} is {size} bytes; a Unix socket path holds at most "
            f"{MAX_SOCKET_PATH} (use a shorter run directory)"
        )
    return path
