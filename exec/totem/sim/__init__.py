"""The deterministic cluster simulator: N sans-IO Totem cores, one virtual clock, one seed.

Theory of operation
-------------------
A Totem core (:class:`~pycorosync.exec.totem.core_api.TotemCore`) does no I/O: it is called with
datagrams, timer expiries and multicast requests, always with ``now``, and answers with
datagrams to send, typed events and its next timer deadline. The simulator is the driver of N
such cores in one process, and replaces everything around them:

* the **clock** is virtual - a heap of events keyed by ``(time, counter)``, so that ties are
  broken by scheduling order and a run never depends on the host (:mod:`.cluster`);
* the **network** is a seeded model of every directed link that loses, delays, jitters,
  reorders and duplicates datagrams and honours partitions and one-way blocks
  (:mod:`.network`);
* the **processes** can be started, crashed (the ring seq they persisted survives, as on
  disk), restarted, paused like SIGSTOP with a bounded receive buffer, and stopped gracefully
  with a LEAVE; each node reads its socket "until EAGAIN", so datagrams that arrived together
  reach the core as one batch (:mod:`.cluster`);
* the **application** on every node multicasts unique payloads (``b"n3:17|~~~"``) as AGREED or
  SAFE at random times, and each accepted one is recorded as
  :class:`~pycorosync.exec.totem.history.Submitted` before anything the core did with it;
* the **checker** (:class:`~pycorosync.exec.totem.evs_check.EvsChecker`) sees every delivery,
  configuration change, submission, crash and restart the moment it happens; the first
  violation stops the run.

A seed's *scenario* (:mod:`.scenario`) is a chaos phase of random fault episodes of the enabled
kinds, a heal phase that must end in one ring of every node within a bound computed from the
timers, and a quiesce phase after which the checker closes the run. :mod:`.runner` runs seeds
and returns :class:`SimResult` values with the figures and a bounded trace (:mod:`.trace`) of
the last few hundred things that happened - datagrams in and out, events, faults - formatted
only when read. The same seed gives the same run and the same trace, byte for byte, so a
failing seed reproduces itself; ``corosync-sim`` (:mod:`pycorosync.tools.sim`) is the command.

The same cluster runs the sync protocol: :func:`.sync_runner.run_sync_seed` gives every node a
:class:`.sync_stack.SyncStack` (SRP, totempg, the sync coordinator and driver over probe
engines) and adds :class:`.sync_check.SyncChecker` to the EVS checker (``docs/sync.md``);
:func:`.cpg_runner.run_cpg_seed` hosts the real CPG engine there, with simulated clients, and
judges what they saw with :mod:`.cpg_check`.

Assumptions about a core: it is deterministic (no clock, no randomness of its own beyond what
its inputs determine), it never needs its own broadcasts back, its ``next_deadline`` moves past
``now`` once ``handle_timer(now)`` has run, and it only addresses configured nodes.
"""

from pycorosync.exec.totem.sim.cluster import CoreFactory, NodeState, SimCluster, SimError
from pycorosync.exec.totem.sim.network import Impairment, LinkProfile, SimNetwork
from pycorosync.exec.totem.sim.runner import SimResult, run_seed, run_seeds, srp_core_factory
from pycorosync.exec.totem.sim.scenario import (
    ALL_FAULTS,
    SIM_CONFIG,
    Fault,
    ScenarioParams,
    build_scenario,
    liveness_bound,
    parse_faults,
)

__all__ = [
    "ALL_FAULTS",
    "SIM_CONFIG",
    "CoreFactory",
    "Fault",
    "Impairment",
    "LinkProfile",
    "NodeState",
    "ScenarioParams",
    "SimCluster",
    "SimError",
    "SimNetwork",
    "SimResult",
    "build_scenario",
    "liveness_bound",
    "parse_faults",
    "run_seed",
    "run_seeds",
    "srp_core_factory",
]
