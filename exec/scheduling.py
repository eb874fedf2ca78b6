"""Real-time scheduling of the Totem process (``system.sched_rr``, ``system.priority``).

Theory of operation
-------------------
A token that waits for a busy CPU is Corosync's most reported failure, so Corosync runs its
main process under ``SCHED_RR`` at the highest priority unless ``system.sched_rr: no``.
We do the same when ``system.sched_rr: yes`` is written, but not by default: our Totem
process is Python, and at real-time priority it takes the CPUs from its own workers and
clients whenever the token circulates - measured in network namespaces on 2 CPUs, CPG
throughput fell from 13.4k to 3k messages/s at 64 B and clients that could not read were
disconnected (``bench/netns_cpg.py``, with and without ``--no-rt``). Without real time,
``system.priority`` (a nice value, ``max`` = -20 or ``min`` = 19) is applied.
A host that refuses (a container, no CAP_SYS_NICE) is logged with Corosync's words and the
daemon runs on at normal priority. Workers never run real-time (DESIGN.md): a child inherits
its parent's policy, so a worker resets itself to ``SCHED_OTHER`` and nice 0 first thing.
"""

from __future__ import annotations

import os

from pycorosync.exec.coroparse import ParsedConfig
from pycorosync.exec.logsys import subsys_logger

log = subsys_logger("MAIN")

_NAMED_PRIORITIES = {"max": -20, "min": 19}


def apply_scheduling(parsed: ParsedConfig) -> None:
    """Make the calling process the Totem process the configuration asks for."""
    sched_rr = parsed.get_str("system.sched_rr")
    if sched_rr == "yes":
        _set_sched_rr()
        return
    if sched_rr is None:
        log.info("Normal scheduling (Corosync's default real time needs system.sched_rr: yes)")
    priority = parsed.get_str("system.priority")
    if priority is None:
        return
    value = _NAMED_PRIORITIES.get(priority)
    if value is None:
        try:
            value = int(priority, 10)
        except ValueError:
            log.warning("Invalid system.priority value %s; ignored", priority)
            return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, value)
    except OSError as error:
        log.warning("Could not set priority %d: %s (%d)", value, error.strerror, error.errno)


def _set_sched_rr() -> None:
    top = os.sched_get_priority_max(os.SCHED_RR)
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(top))
    except OSError as error:
        log.warning(
            "Could not set SCHED_RR at priority %d: %s (%d)", top, error.strerror, error.errno
        )


def reset_scheduling() -> None:
    """A worker's first step: the normal policy and nice 0, whatever the parent had."""
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    if os.getpriority(os.PRIO_PROCESS, 0) < 0:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
