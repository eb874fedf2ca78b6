"""Network-namespace benches beside real Corosync 3.1.7: topology, processes, logs, cleanup.

Theory of operation
-------------------
Shared by ``bench/netns_membership.py`` and ``bench/netns_cpg.py`` (both run as root). The
topology is that of ``../shared/anchors/`` with our own names, so nothing collides with the
anchor script: node namespaces ``pcb-n1..3``, each with a veth ``pcb0`` (10.98.0.i/24, MTU
1500) whose peer ``p<i>`` is a port of the bridge ``pcbbr0`` in its own namespace ``pcb-sw``.
The /24 exists only inside those namespaces.

:class:`Resources` records everything a run starts or makes (processes by pid, namespaces, a
temp dir) and :meth:`Resources.release` undoes all of it once, in any state; :func:`guarded`
calls it on exit, on SIGINT/SIGTERM/SIGHUP and on a hard alarm past the budget. A
:class:`Node` is one daemon (Corosync or ours) in its namespace, launched as
``ip netns exec pcb-n<i> sh -c 'mount --bind <dir>/run /run && exec <daemon> -f -c <conf>'`` so
that the pid lock (and our client sockets) land in the node's own run dir. Membership is read
from the daemons' own ``timestamp: hires`` log lines, which both write in the same words.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import glob
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType

NODES = 3
NODE_NS = tuple(f"pcb-n{i}" for i in range(1, NODES + 1))
SWITCH_NS = "pcb-sw"
BRIDGE = "pcbbr0"
VETH = "pcb0"
SUBNET = "10.98.0"
COROSYNC = "/usr/sbin/corosync"
KEYGEN = "/usr/sbin/corosync-keygen"
OURS = (sys.executable, "-m", "pycorosync.exec.main")
DAEMONS = ("corosync", "pycorosync")
POLL_S = 0.02
WAIT_S = 30.0  # per figure; failure detection is about token + consensus = 8 s
STOP_S = 10.0  # SIGTERM → SIGKILL; Corosync takes 1-3 s to exit on SIGTERM
CMD_S = 10.0

# -- parsing (pure; tests/test_netns_bench_parse.py) ----------------------------------------

_STAMP = re.compile(r"^(\w{3}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)\.(\d{3}) ")
_FORMED = re.compile(
    r"A new membership \(([0-9a-fA-F]+\.[0-9a-fA-F]+)\) was formed\. Members"
    r"(?: joined:((?: \d+)+))?(?: left:((?: \d+)+))?\s*$"
)
_MEMBERS = re.compile(r"\] Members\[(\d+)\]:((?: \d+)*)\s*$")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def parse_stamp(line: str, year: int | None = None) -> float | None:
    """The epoch time of a ``timestamp: hires`` log line (local time), None without a stamp."""
    match = _STAMP.match(line)
    if match is None or match.group(1) not in _MONTHS:
        return None
    month = _MONTHS.index(match.group(1)) + 1
    day, hour, minute, sec, msec = (int(g) for g in match.groups()[1:])
    when = datetime(year or datetime.now().year, month, day, hour, minute, sec, msec * 1000)
    return when.timestamp()


def _ids(text: str | None) -> frozenset[int]:
    return frozenset(int(part) for part in text.split()) if text else frozenset()


def membership_changes(
    lines: Iterable[str], year: int | None = None
) -> list[tuple[float, frozenset[int]]]:
    """(stamp, members seen) after each "A new membership ... was formed" line, in order.

    The view starts empty (the lines given begin at a daemon's start); each line removes its
    "left:" ids, then adds its "joined:" ids, as both daemons word them. A node can be in both
    (it left the old ring and is in the new one without passing through the transitional
    configuration - a startup's churn does that), and it is then a member.
    """
    seen: frozenset[int] = frozenset()
    out: list[tuple[float, frozenset[int]]] = []
    for line in lines:
        match = _FORMED.search(line)
        stamp = parse_stamp(line, year)
        if match is None or stamp is None:
            continue
        seen = (seen - _ids(match.group(3))) | _ids(match.group(2))
        out.append((stamp, seen))
    return out


def members_lines(
    lines: Iterable[str], year: int | None = None
) -> list[tuple[float, frozenset[int]]]:
    """(stamp, members) of each "Members[N]: ..." line (Corosync's [QUORUM], our [MAIN  ])."""
    out: list[tuple[float, frozenset[int]]] = []
    for line in lines:
        match = _MEMBERS.search(line)
        stamp = parse_stamp(line, year)
        if match is None or stamp is None:
            continue
        ids = _ids(match.group(2))
        if len(ids) == int(match.group(1)):
            out.append((stamp, ids))
    return out


def first_at(
    changes: Sequence[tuple[float, frozenset[int]]], want: frozenset[int], after: float
) -> float | None:
    """The stamp of the first change at or after ``after`` whose members are exactly ``want``."""
    for stamp, members in changes:
        if stamp >= after - 0.001 and members == want:
            return stamp
    return None


def summarize(values: Sequence[float]) -> dict[str, float | int | list[float]]:
    if not values:
        return {"n": 0}
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
        "values": [round(v, 3) for v in values],
    }


# -- processes, namespaces, cleanup ----------------------------------------------------------


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=CMD_S)


class BudgetError(Exception):
    """The whole run went past its time budget."""


@dataclass
class Resources:
    """What this run started or made; ``release`` undoes all of it, once, in any state."""

    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    corosync_pids: set[int] = field(default_factory=set)
    namespaces: list[str] = field(default_factory=list)
    temp: Path | None = None
    keep: Path | None = None
    released: bool = False

    def spawn(self, cmd: Sequence[str], out: Path, corosync: bool) -> subprocess.Popen[bytes]:
        with out.open("ab") as sink:
            proc = subprocess.Popen(cmd, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL)
        self.procs[proc.pid] = proc
        if corosync:
            self.corosync_pids.add(proc.pid)
        return proc

    def stop(self, procs: Iterable[subprocess.Popen[bytes]], sig: int = signal.SIGTERM) -> None:
        """Signal ``procs`` (ours only, by pid), wait STOP_S, then SIGKILL what is left."""
        live = [p for p in procs if p.pid in self.procs]
        for proc in live:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
        end = time.monotonic() + STOP_S
        for proc in live:
            try:
                proc.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=CMD_S)
            del self.procs[proc.pid]
        self.clean_shm()

    def clean_shm(self) -> None:
        """libqb files a killed Corosync leaves in /dev/shm, found by the pids we started."""
        for pid in list(self.corosync_pids):
            if pid in self.procs:
                continue
            for path in glob.glob(f"/dev/shm/qb-{pid}-*") + glob.glob(
                f"/dev/shm/qb-corosync-{pid}-*"
            ):
                with contextlib.suppress(OSError):
                    os.unlink(path)
            self.corosync_pids.discard(pid)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        with contextlib.suppress(Exception):
            self.stop(list(self.procs.values()), signal.SIGKILL)
        for ns in reversed(self.namespaces):
            run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        if self.temp is not None:
            if self.keep is not None:
                with contextlib.suppress(OSError):
                    shutil.copytree(
                        self.temp,
                        self.keep,
                        dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("authkey", "run"),
                    )
            shutil.rmtree(self.temp, ignore_errors=True)
            self.temp = None


def build_topology(res: Resources) -> None:
    existing = run("ip", "netns", "list").stdout.split()
    for ns in (*NODE_NS, SWITCH_NS):
        if ns in existing:  # an earlier aborted run of this script: only ours use these names
            say(f"removing leftover namespace {ns}")
            for pid in run("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run("ip", "netns", "del", ns, check=False)
    res.namespaces.append(SWITCH_NS)
    run("ip", "netns", "add", SWITCH_NS)
    run("ip", "-n", SWITCH_NS, "link", "add", BRIDGE, "type", "bridge")
    run("ip", "-n", SWITCH_NS, "link", "set", BRIDGE, "up")
    run("ip", "-n", SWITCH_NS, "link", "set", "lo", "up")
    for i, ns in enumerate(NODE_NS, start=1):
        res.namespaces.append(ns)
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", VETH, "netns", ns, "mtu", "1500", "type", "veth",
             "peer", "name", f"p{i}", "netns", SWITCH_NS, "mtu", "1500")  # fmt: skip
        run("ip", "-n", SWITCH_NS, "link", "set", f"p{i}", "master", BRIDGE)
        run("ip", "-n", SWITCH_NS, "link", "set", f"p{i}", "up")
        run("ip", "-n", ns, "addr", "add", f"{SUBNET}.{i}/24", "dev", VETH)
        run("ip", "-n", ns, "link", "set", VETH, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
    # ports forwarding and links up, polled (without STP the bridge forwards at once)
    end = time.monotonic() + 10.0
    for i, ns in enumerate(NODE_NS, start=1):
        while not (
            "state forwarding" in run("ip", "-d", "-n", SWITCH_NS, "link", "show", f"p{i}").stdout
            and "state UP" in run("ip", "-n", ns, "link", "show", VETH).stdout
        ):
            if time.monotonic() > end:
                raise RuntimeError(f"{ns}: {VETH} or bridge port p{i} never came up")
            time.sleep(0.05)


def render_config(base: Path, node: int, keyfile: Path, system_extra: Sequence[str] = ()) -> str:
    """One directive a line, closing braces alone (Corosync's parser wants that).

    ``system_extra`` are more ``system`` directives, e.g. ``sched_rr: no``."""
    lines = [
        "totem {",
        "    version: 2",
        "    cluster_name: pcbench",
        "    transport: knet",
        "    crypto_cipher: aes256",
        "    crypto_hash: sha256",
        f"    keyfile: {keyfile}",
        "}",
        "logging {",
        "    to_stderr: no",
        "    to_syslog: no",
        "    to_logfile: yes",
        f"    logfile: {base}/corosync.log",
        "    timestamp: hires",
        "}",
        "quorum {",
        "    provider: corosync_votequorum",
        "}",
        "system {",
        f"    state_dir: {base}/state",
        *(f"    {line}" for line in system_extra),
        "}",
        "nodelist {",
    ]
    for j in range(1, NODES + 1):
        lines += ["    node {", f"        name: node{j}", f"        nodeid: {j}",
                  f"        ring0_addr: {SUBNET}.{j}", "    }"]  # fmt: skip
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- one repeat -------------------------------------------------------------------------------


class Node:
    """One daemon of a repeat, in namespace ``pcb-n<nodeid>``, with its files under ``base``."""

    def __init__(
        self,
        res: Resources,
        daemon: str,
        base: Path,
        nodeid: int,
        key: Path,
        *,
        system_extra: Sequence[str] = (),
    ) -> None:
        self.res, self.daemon, self.nodeid = res, daemon, nodeid
        self.base = base
        self.namespace = NODE_NS[nodeid - 1]
        for sub in ("run", "state"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        self.conf = base / "corosync.conf"
        self.conf.write_text(render_config(base, nodeid, key, system_extra))
        self.log = base / "corosync.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.offset = 0

    def command(self) -> list[str]:
        daemon = [COROSYNC] if self.daemon == "corosync" else [*OURS, "-n", str(self.nodeid)]
        return ["ip", "netns", "exec", self.namespace, "sh", "-c",
                'mount --bind "$0" /run && exec "$@"', str(self.base / "run"),
                *daemon, "-f", "-c", str(self.conf)]  # fmt: skip

    def start(self) -> None:
        self.offset = self.log.stat().st_size if self.log.exists() else 0
        cmd = self.command()
        self.proc = self.res.spawn(cmd, self.base / "stdout", self.daemon == "corosync")

    def lines(self) -> list[str]:
        try:
            with self.log.open("rb") as handle:
                handle.seek(self.offset)
                return handle.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    @property
    def client_run_dir(self) -> Path:
        """Where our daemon's client sockets are seen from outside its mount namespace."""
        return self.base / "run" / "corosync"

    def daemon_pid(self) -> int:
        """The daemon's pid; RuntimeError while the ``sh`` wrapper has not exec'd it yet."""
        assert self.proc is not None
        exe = os.path.basename(os.readlink(f"/proc/{self.proc.pid}/exe"))
        if exe in {"sh", "dash", "bash", "ip"}:
            raise RuntimeError(f"pid {self.proc.pid} is still {exe}, not the daemon")
        return self.proc.pid

    def died(self) -> str | None:
        if self.proc is None or self.proc.poll() is None:
            return None
        tail = (self.base / "stdout").read_text(errors="replace")[-400:]
        return f"{self.daemon} node{self.nodeid} exited {self.proc.returncode}: {tail!r}"


def wait_view(
    nodes: Sequence[Node], want: frozenset[int], after: float, deadline: float
) -> dict[str, list[float]]:
    """Poll the logs until every node's folded view is ``want``; the times of both criteria."""
    end = min(time.monotonic() + WAIT_S, deadline)
    grace = end
    while True:
        per_node = [n.lines() for n in nodes]
        formed = [first_at(membership_changes(ls), want, after) for ls in per_node]
        if all(t is not None for t in formed):
            cross = [first_at(members_lines(ls), want, after) for ls in per_node]
            # the Members[N] line follows within milliseconds; poll for it a little longer
            if all(t is not None for t in cross) or time.monotonic() > grace:
                return {
                    "formed": [t for t in formed if t is not None],
                    "members_line": [t for t in cross if t is not None],
                }
            grace = min(grace, time.monotonic() + 2.0)
            time.sleep(POLL_S)
            continue
        for node in nodes:
            if (why := node.died()) is not None:
                raise RuntimeError(why)
        if time.monotonic() > end:
            if time.monotonic() > deadline:
                raise BudgetError("time budget exhausted")
            seen = [membership_changes(ls)[-1:] for ls in per_node]
            raise TimeoutError(f"no view {sorted(want)} within {WAIT_S} s; last views {seen}")
        time.sleep(POLL_S)


@contextlib.contextmanager
def guarded(res: Resources, budget: float) -> Iterator[None]:
    """Release on exit, atexit, SIGINT/SIGTERM/SIGHUP, and a hard alarm past the budget."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    def on_alarm(_signum: int, _frame: FrameType | None) -> None:
        raise BudgetError("hard time limit")

    atexit.register(res.release)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(budget) + 60)
    try:
        yield
    finally:
        signal.alarm(0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        res.release()


def run_measured(
    name: str,
    args: argparse.Namespace,
    measure: Callable[[argparse.Namespace, Resources], dict[str, object]],
) -> int:
    """The entry of every netns bench: root and the tools checked, every resource released
    however the run ends, one JSON object printed; 0 only when the run recorded no error."""
    if os.geteuid() != 0:
        print(f"{name} needs root (ip netns, mount --bind)", file=sys.stderr)
        return 2
    needs = [KEYGEN] + ([COROSYNC] if args.only != "pycorosync" else [])
    if missing := [tool for tool in needs if not os.access(tool, os.X_OK)]:
        print(f"not installed: {', '.join(missing)}", file=sys.stderr)
        return 2
    res = Resources(keep=Path(args.keep_logs) if args.keep_logs else None)
    with guarded(res, args.budget):
        result = measure(args, res)
    print(json.dumps(result, indent=2))
    return 0 if not result["errors"] else 1


def versions() -> dict[str, str]:
    out = {}
    with contextlib.suppress(Exception):
        text = run(COROSYNC, "-v", check=False).stdout
        out["corosync"] = text.splitlines()[0].strip() if text else "?"
    with contextlib.suppress(Exception):
        text = run(*OURS, "-v", check=False).stdout
        out["pycorosync"] = text.splitlines()[0].strip() if text else "?"
    return out
