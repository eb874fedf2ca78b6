"""CPG throughput and latency of real Corosync 3.1.7 and of ours, side by side, in netns.

Usage (root; about 2 minutes a repeat with the defaults, both daemons)::

    python bench/netns_cpg.py [--runs 2] [--secs 5] [--sizes 64,1024,16384]
        [--only corosync|pycorosync] [--no-rt] [--keep-logs DIR] [--budget S]
        [--profile DIR [--profile-case 1024:1sender]]

Theory of operation
-------------------
The topology, configuration and launch are those of ``bench/netns_membership.py``
(``bench/_netns.py``: 3 nodes in network namespaces on a bridge, netmtu 1500, knet with
aes256/sha256, default token, Corosync's default ``sched_rr``; ``--no-rt`` adds
``sched_rr: no`` to both). For each repeat, for each daemon in turn (Corosync, then ours):
start the 3 daemons, wait until every node's log shows the full membership and a completed
sync after it, then run

* throughput, for each size: "1sender" (node 1 sends, all count) and "allsend" (every node
  sends); every node runs one probe in one fresh group, and the figure is the DATA messages
  delivered per node per second, the mean over the nodes, as in ``../shared/anchors/``;
* latency: node 1 alone multicasts a 64-byte message every 10 ms, 300 times; p50/p99 of the
  time from just before the multicast to its delivery back to the sender;

then stop the daemons. Corosync is probed with the anchors' C probes (``cpgbench-own``,
``cpglat-own``, compiled at run time from ``--anchors``/src with ``gcc -lcpg``; none of their
code is in this repository), ours with ``bench/_cpg_probe.py``, which speaks the same
protocol and prints the same ``RESULT`` lines. A case counts only if every node printed a
result and saw every END. Beside each figure: the UDP receive-buffer drops in the node
namespaces during it, and each daemon's scheduling policy as the kernel reports it.

``--profile DIR`` runs py-spy (``record --format raw``) on node 1's Totem process, its worker
and its probe during one case of ours (``--profile-case``) and writes the collapsed stacks
there; those runs are profiled, so they are not counted.

The result is one JSON object on stdout (per daemon medians, ratios ours/Corosync, the targets
of issue 6); progress goes to stderr. Everything started is stopped by pid and the namespaces
and temp dirs removed, also on errors, signals and past the budget.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# The shared helpers sit beside this script, whether it runs or a test loads it by path.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from _netns import (
    DAEMONS,
    KEYGEN,
    NODES,
    BudgetError,
    Node,
    Resources,
    build_topology,
    parse_stamp,
    render_config,
    run,
    run_measured,
    say,
    summarize,
    versions,
    wait_view,
)

HERE = Path(__file__).resolve().parent
PROBE = HERE / "_cpg_probe.py"
DEFAULT_ANCHORS = HERE.parent.parent / "shared" / "anchors"
C_PROBES = {"tp": "cpgbench-own", "lat": "cpglat-own"}
MODES = ("1sender", "allsend")
LAT_INTERVAL_MS = 10
LAT_COUNT = 300
PROBE_GRACE_S = 45.0  # beyond the sending time: start-up, join, drain, as the anchors allow
SYNC_WAIT_S = 30.0
READY_LINE = "Completed service synchronization, ready to provide service."
TARGETS = {64: 0.7, 1024: 1.0, 16384: 1.0}
"""Issue 6: delivered msg/s ours/Corosync at least this, one sender; latency p50 at most 1.5x."""
LATENCY_TARGET = 1.5

# -- parsing (pure; tests/test_netns_cpg_parse.py) --------------------------------------------


def parse_result(line: str) -> dict[str, str] | None:
    """The key=value fields of a probe's ``RESULT ...`` line; None for any other line."""
    parts = line.split()
    if not parts or parts[0] != "RESULT":
        return None
    fields: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep or not key:
            return None
        fields[key] = value
    return fields


def results_in(text: str) -> list[dict[str, str]]:
    return [r for r in map(parse_result, text.splitlines()) if r is not None]


@dataclass(frozen=True)
class Throughput:
    """One case on one daemon: delivered per node (mean over the nodes) and the spread."""

    msgs_per_s: float
    mb_per_s: float
    slowest_node_msgs_per_s: float
    sent: int
    tryagain: int


def throughput_of(results: Sequence[Mapping[str, str]], nodes: int) -> Throughput:
    """The anchors' figure; ValueError unless ``nodes`` results came, each ``complete=1``."""
    if len(results) != nodes:
        raise ValueError(f"{len(results)} of {nodes} probes printed a result")
    incomplete = [r.get("node", "?") for r in results if r.get("complete") != "1"]
    if incomplete:
        raise ValueError(f"node(s) {', '.join(incomplete)} did not see every END")
    rates = [float(r["msgs_per_s"]) for r in results]
    return Throughput(
        msgs_per_s=statistics.fmean(rates),
        mb_per_s=statistics.fmean(float(r["MB_per_s"]) for r in results),
        slowest_node_msgs_per_s=min(rates),
        sent=sum(int(r["sent"]) for r in results),
        tryagain=sum(int(r["tryagain"]) for r in results),
    )


def latency_of(result: Mapping[str, str], count: int) -> tuple[float, float]:
    """(p50, p99) in microseconds; ValueError unless all ``count`` messages came back."""
    if int(result.get("n_ok", "0")) != count:
        raise ValueError(f"{result.get('n_ok', 0)} of {count} latency samples")
    return float(result["p50_us"]), float(result["p99_us"])


UDP_COUNTERS = ("RcvbufErrors", "OutDatagrams")


def udp_counters(snmp: str) -> dict[str, int]:
    """UDP_COUNTERS from the ``Udp:`` table of a /proc/net/snmp text (header, values lines)."""
    rows = [line.split()[1:] for line in snmp.splitlines() if line.startswith("Udp:")]
    if len(rows) < 2 or any(name not in rows[0] for name in UDP_COUNTERS):
        raise ValueError(f"no Udp {'/'.join(UDP_COUNTERS)} in the snmp text")
    return {name: int(rows[1][rows[0].index(name)]) for name in UDP_COUNTERS}


def cpu_ticks(stat: str) -> int:
    """utime + stime of a /proc/PID/stat text, in clock ticks (the name may hold spaces)."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), 3 being fields[0]


def synced_after(lines: Iterable[str], after: float) -> bool:
    """Whether a "Completed service synchronization" line is stamped at or after ``after``."""
    for line in lines:
        if READY_LINE in line and (stamp := parse_stamp(line)) is not None and stamp >= after:
            return True
    return False


def ratio(ours: Sequence[float], theirs: Sequence[float]) -> float | None:
    if not ours or not theirs or statistics.median(theirs) == 0:
        return None
    return round(statistics.median(ours) / statistics.median(theirs), 3)


def case_name(size: int, mode: str) -> str:
    return f"{size}B-{mode}"


def parse_sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be positive integers: {text!r}")
    return sizes


def parse_case(text: str) -> tuple[int, str]:
    size, _, mode = text.partition(":")
    if mode not in MODES or not size.isdigit():
        raise argparse.ArgumentTypeError(f"a case is SIZE:{'|'.join(MODES)}, not {text!r}")
    return int(size), mode


# -- probes -----------------------------------------------------------------------------------


def compile_c_probes(anchors: Path, into: Path) -> dict[str, Path]:
    """The anchors' C probes built from their source at run time (never kept in our tree)."""
    out = {}
    for kind, name in C_PROBES.items():
        source = anchors / "src" / f"{name}.c"
        binary = into / name
        run("gcc", "-O2", "-o", str(binary), str(source), "-lcpg", "-lm")
        out[kind] = binary
    return out


@dataclass
class Probes:
    """How each daemon's probes are started; the option letters are the C probes'."""

    c_bins: dict[str, Path]

    def command(self, node: Node, kind: str, options: Sequence[str]) -> list[str]:
        netns = ["ip", "netns", "exec", node.namespace]
        if node.daemon == "corosync":
            return [*netns, str(self.c_bins[kind]), *options]
        run_dir = str(node.client_run_dir)
        return [*netns, sys.executable, str(PROBE), kind, "--run-dir", run_dir, *options]


def run_probes(res: Resources, jobs: Sequence[tuple[list[str], Path]], timeout: float) -> list[str]:
    """Start every probe at once, wait for all (killing any past ``timeout``); their outputs."""
    procs = [res.spawn(cmd, out, corosync=False) for cmd, out in jobs]
    end = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"  probe pid {proc.pid} past {timeout:.0f} s; killing it")
    res.stop(procs)
    return [out.read_text(errors="replace") for _, out in jobs]


# -- one daemon, one repeat -------------------------------------------------------------------


@dataclass(frozen=True)
class CaseStats:
    """Beside a figure: UDP receive-buffer drops and datagrams sent (all 3 nodes summed), and
    the CPU each role used, in cores, over the case's wall time ("probes": the 3 probes)."""

    drops: int
    datagrams_out: int
    cpu_cores: dict[str, float]


@dataclass
class Figures:
    """Everything one daemon measured over the repeats, by case name."""

    msgs_per_s: dict[str, list[float]] = field(default_factory=dict)
    mb_per_s: dict[str, list[float]] = field(default_factory=dict)
    slowest_node: dict[str, list[float]] = field(default_factory=dict)
    tryagain: dict[str, list[int]] = field(default_factory=dict)
    rcvbuf_drops: dict[str, list[int]] = field(default_factory=dict)
    datagrams_out: dict[str, list[int]] = field(default_factory=dict)
    cpu_cores: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    lat_p50: list[float] = field(default_factory=list)
    lat_p99: list[float] = field(default_factory=list)
    scheduling: dict[str, str] = field(default_factory=dict)

    def add(self, case: str, tp: Throughput, stats: CaseStats) -> None:
        self.msgs_per_s.setdefault(case, []).append(round(tp.msgs_per_s))
        self.mb_per_s.setdefault(case, []).append(round(tp.mb_per_s, 3))
        self.slowest_node.setdefault(case, []).append(round(tp.slowest_node_msgs_per_s))
        self.tryagain.setdefault(case, []).append(tp.tryagain)
        self.rcvbuf_drops.setdefault(case, []).append(stats.drops)
        self.datagrams_out.setdefault(case, []).append(stats.datagrams_out)
        for role, cores in stats.cpu_cores.items():
            self.cpu_cores.setdefault(case, {}).setdefault(role, []).append(round(cores, 2))


@dataclass
class Repeat:
    """One daemon's cluster for one repeat: start, wait, run the cases, stop."""

    res: Resources
    daemon: str
    base: Path
    probes: Probes
    args: argparse.Namespace
    deadline: float
    nodes: list[Node] = field(default_factory=list)

    def start(self, key: Path) -> None:
        extra = ["sched_rr: no"] if self.args.no_rt else []
        self.nodes = [
            Node(self.res, self.daemon, self.base / f"n{i}", i, key, system_extra=extra)
            for i in range(1, NODES + 1)
        ]
        t0 = time.time()
        for node in self.nodes:
            node.start()
        times = wait_view(self.nodes, frozenset(range(1, NODES + 1)), t0, self.deadline)
        self.wait_synced(max(times["formed"]))
        say(f"  full membership and sync in {time.time() - t0:.2f} s")

    def wait_synced(self, after: float) -> None:
        end = min(time.monotonic() + SYNC_WAIT_S, self.deadline)
        while not all(synced_after(n.lines(), after - 0.001) for n in self.nodes):
            for node in self.nodes:
                if (why := node.died()) is not None:
                    raise RuntimeError(why)
            if time.monotonic() > end:
                raise TimeoutError(f"no completed sync within {SYNC_WAIT_S} s")
            time.sleep(0.02)

    def stop(self) -> None:
        self.res.stop([n.proc for n in self.nodes if n.proc is not None])

    def scheduling(self) -> dict[str, str]:
        """Each process of each daemon (the Totem process and its workers): policy/priority."""
        out = {}
        for node in self.nodes:
            for role, pid in process_tree(node.daemon_pid()):
                out[f"node{node.nodeid}.{role}"] = sched_of(pid)
        return out

    def udp(self) -> dict[str, int]:
        """UDP_COUNTERS summed over the node namespaces."""
        total = dict.fromkeys(UDP_COUNTERS, 0)
        for node in self.nodes:
            snmp = run("ip", "netns", "exec", node.namespace, "cat", "/proc/net/snmp").stdout
            for name, value in udp_counters(snmp).items():
                total[name] += value
        return total

    def cpu_by_role(self) -> dict[str, int]:
        """Clock ticks used so far by each role of the daemons, summed over the nodes."""
        ticks: dict[str, int] = {}
        for node in self.nodes:
            for role, pid in process_tree(node.daemon_pid()):
                name = "totem" if role == "main" else "workers"
                with contextlib.suppress(OSError):
                    stat = Path(f"/proc/{pid}/stat").read_text()
                    ticks[name] = ticks.get(name, 0) + cpu_ticks(stat)
        return ticks

    def throughput(self, size: int, mode: str, rep: int) -> tuple[Throughput, CaseStats]:
        senders = NODES if mode == "allsend" else 1
        group = f"tp-{size}-{mode}-{rep}-{os.getpid()}"
        jobs = []
        for node in self.nodes:
            options = ["-g", group, "-s", str(size), "-t", str(self.args.secs)]
            options += ["-w", str(NODES), "-e", str(senders), "-D", "30"]
            if mode == "allsend" or node.nodeid == 1:
                options.append("-S")
            out = self.base / f"tp-{size}-{mode}-n{node.nodeid}.out"
            jobs.append((self.probes.command(node, "tp", options), out))
        udp, ticks = self.udp(), self.cpu_by_role()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        outputs = run_probes(self.res, jobs, self.args.secs + PROBE_GRACE_S)
        wall = time.monotonic() - t0
        stats = self.case_stats(udp, ticks, children, wall)
        results = [r for text in outputs for r in results_in(text)]
        try:
            return throughput_of(results, NODES), stats
        except ValueError as error:
            tails = " | ".join(text.strip()[-200:] for text in outputs)
            raise ValueError(f"{error}: {tails}") from None

    def case_stats(
        self,
        udp: dict[str, int],
        ticks: dict[str, int],
        children: resource.struct_rusage,
        wall: float,
    ) -> CaseStats:
        hz = os.sysconf("SC_CLK_TCK")
        after = self.cpu_by_role()
        cores = {role: (after.get(role, 0) - t) / hz / wall for role, t in ticks.items()}
        now = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = now.ru_utime + now.ru_stime - children.ru_utime - children.ru_stime
        cores["probes"] = used / wall
        now_udp = self.udp()
        drops = now_udp["RcvbufErrors"] - udp["RcvbufErrors"]
        return CaseStats(drops, now_udp["OutDatagrams"] - udp["OutDatagrams"], cores)

    def latency(self, rep: int) -> tuple[float, float]:
        node = self.nodes[0]
        options = ["-g", f"lat-{rep}-{os.getpid()}", "-n", str(LAT_COUNT)]
        options += ["-i", str(LAT_INTERVAL_MS), "-w", "1"]
        out = self.base / "lat.out"
        timeout = LAT_COUNT * LAT_INTERVAL_MS / 1000 + 30
        (text,) = run_probes(self.res, [(self.probes.command(node, "lat", options), out)], timeout)
        results = results_in(text)
        if not results:
            raise ValueError(f"no latency result: {text.strip()[-200:]}")
        return latency_of(results[0], LAT_COUNT)


def process_tree(pid: int) -> list[tuple[str, int]]:
    """The daemon and its direct children (our workers; Corosync has none)."""
    tree = [("main", pid)]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    tree += [(f"child{i}", int(child)) for i, child in enumerate(children, start=1)]
    return tree


def sched_of(pid: int) -> str:
    names = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_FIFO: "SCHED_FIFO", os.SCHED_RR: "SCHED_RR"}
    try:
        policy = os.sched_getscheduler(pid)
        priority = os.sched_getparam(pid).sched_priority
    except OSError as error:
        return f"? ({error.strerror})"
    return f"{names.get(policy, str(policy))}/{priority}"


# -- profiling --------------------------------------------------------------------------------


def profile_case(repeat: Repeat, size: int, mode: str, into: Path) -> list[str]:
    """One extra run of a case of ours with py-spy on node 1's processes; the files written."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    into.mkdir(parents=True, exist_ok=True)
    node = repeat.nodes[0]
    targets = dict(process_tree(node.daemon_pid()))
    secs = max(1, int(repeat.args.secs) - 1)
    spies = []

    def spy(role: str, pid: int) -> None:
        out = into / f"{size}B-{mode}-{role}.txt"
        cmd = [pyspy, "record", "-r", "200", "-d", str(secs), "-p", str(pid)]
        cmd += ["--format", "raw", "-o", str(out), "--nonblocking"]
        spies.append(repeat.res.spawn(cmd, into / f"{role}.log", corosync=False))

    for role, pid in targets.items():
        spy("totem" if role == "main" else f"worker-{role}", pid)
    case = _start_profiled_case(repeat, size, mode)
    spy("probe", case[0].pid)
    for proc in spies:
        with_timeout(proc, secs + 20)
    for proc in case:
        with_timeout(proc, repeat.args.secs + PROBE_GRACE_S)
    repeat.res.stop([*spies, *case])
    return sorted(str(p) for p in into.glob(f"{size}B-{mode}-*.txt"))


def _start_profiled_case(repeat: Repeat, size: int, mode: str) -> list[subprocess.Popen[bytes]]:
    """Start the case's probes, node 1's first, without waiting for them."""
    senders = NODES if mode == "allsend" else 1
    group = f"tp-profile-{size}-{mode}-{os.getpid()}"
    procs = []
    for node in repeat.nodes:
        options = ["-g", group, "-s", str(size), "-t", str(repeat.args.secs)]
        options += ["-w", str(NODES), "-e", str(senders), "-D", "30"]
        if mode == "allsend" or node.nodeid == 1:
            options.append("-S")
        out = repeat.base / f"profile-n{node.nodeid}.out"
        procs.append(repeat.res.spawn(repeat.probes.command(node, "tp", options), out, False))
    return procs


def with_timeout(proc: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        say(f"  pid {proc.pid} past {timeout:.0f} s; it will be stopped")


# -- main -------------------------------------------------------------------------------------


def case_cost(args: argparse.Namespace) -> float:
    """A pessimistic guess of one case's seconds, to skip a case the budget cannot hold."""
    return float(args.secs) + 10.0


def one_repeat(repeat: Repeat, key: Path, rep: int, figures: Figures, errors: list[str]) -> None:
    args = repeat.args
    try:
        repeat.start(key)
        figures.scheduling = repeat.scheduling()
        for size in args.sizes:
            for mode in MODES:
                one_case(repeat, rep, (size, mode), figures, errors)
        one_latency(repeat, rep, figures, errors)
        if args.profile and repeat.daemon == "pycorosync" and rep == 1:
            size, mode = args.profile_case
            files = profile_case(repeat, size, mode, Path(args.profile))
            say(f"  profiles: {', '.join(files)}")
    finally:
        repeat.stop()


def one_case(
    repeat: Repeat, rep: int, case: tuple[int, str], figures: Figures, errors: list[str]
) -> None:
    size, mode = case
    name = case_name(size, mode)
    if time.monotonic() + case_cost(repeat.args) > repeat.deadline:
        errors.append(f"{repeat.daemon} repeat {rep} {name}: skipped (budget)")
        return
    try:
        tp, stats = repeat.throughput(size, mode, rep)
    except ValueError as error:
        errors.append(f"{repeat.daemon} repeat {rep} {name}: {error}")
        say(f"  {name}: FAILED {error}")
        return
    figures.add(name, tp, stats)
    say(f"  {name}: {describe(tp, stats)}")


def describe(tp: Throughput, stats: CaseStats) -> str:
    cpu = ", ".join(f"{role} {cores:.2f}" for role, cores in stats.cpu_cores.items())
    return (
        f"{tp.msgs_per_s:,.0f} msg/s ({tp.mb_per_s:.2f} MB/s) per node, slowest "
        f"{tp.slowest_node_msgs_per_s:,.0f}, tryagain {tp.tryagain}, udp drops {stats.drops}, "
        f"{stats.datagrams_out:,} datagrams sent, "
        f"cpu cores: {cpu}"
    )


def one_latency(repeat: Repeat, rep: int, figures: Figures, errors: list[str]) -> None:
    if time.monotonic() + LAT_COUNT * LAT_INTERVAL_MS / 1000 + 10 > repeat.deadline:
        errors.append(f"{repeat.daemon} repeat {rep} latency: skipped (budget)")
        return
    try:
        p50, p99 = repeat.latency(rep)
    except ValueError as error:
        errors.append(f"{repeat.daemon} repeat {rep} latency: {error}")
        return
    figures.lat_p50.append(p50)
    figures.lat_p99.append(p99)
    say(f"  latency every {LAT_INTERVAL_MS} ms: p50 {p50:.0f} us, p99 {p99:.0f} us")


def daemon_summary(fig: Figures) -> dict[str, object]:
    return {
        "throughput_msgs_per_s": {c: summarize(v) for c, v in fig.msgs_per_s.items()},
        "throughput_MB_per_s": {c: summarize(v) for c, v in fig.mb_per_s.items()},
        "slowest_node_msgs_per_s": {c: summarize(v) for c, v in fig.slowest_node.items()},
        "tryagain_total": fig.tryagain,
        "udp_rcvbuf_drops": fig.rcvbuf_drops,
        "udp_datagrams_sent_all_nodes": fig.datagrams_out,
        "cpu_cores_over_case_wall": fig.cpu_cores,
        f"latency_every_{LAT_INTERVAL_MS}ms_p50_us": summarize(fig.lat_p50),
        f"latency_every_{LAT_INTERVAL_MS}ms_p99_us": summarize(fig.lat_p99),
        "scheduling": fig.scheduling,
    }


def target(
    got: float, *, at_least: float | None = None, at_most: float | None = None
) -> dict[str, object]:
    out: dict[str, object] = {"ratio": got}
    met = True
    if at_least is not None:
        out["at_least"], met = at_least, got >= at_least
    if at_most is not None:
        out["at_most"], met = at_most, met and got <= at_most
    out["met"] = met
    return out


def comparison(ours: Figures, theirs: Figures) -> dict[str, object]:
    """Ratios of the medians, ours over Corosync, and issue 6's targets."""
    ratios: dict[str, float | None] = {
        case: ratio(ours.msgs_per_s.get(case, []), values)
        for case, values in theirs.msgs_per_s.items()
    }
    latency = ratio(ours.lat_p50, theirs.lat_p50)
    targets: dict[str, object] = {}
    for size, floor in TARGETS.items():
        got = ratios.get(case_name(size, "1sender"))
        if got is not None:
            targets[case_name(size, "1sender")] = target(got, at_least=floor)
    if latency is not None:
        targets["latency_p50"] = target(latency, at_most=LATENCY_TARGET)
    return {
        "throughput_msgs_per_s": ratios,
        f"latency_every_{LAT_INTERVAL_MS}ms_p50_us": latency,
        "targets": targets,
    }


def measure(args: argparse.Namespace, res: Resources) -> dict[str, object]:
    started = time.monotonic()
    deadline = started + args.budget
    res.temp = Path(tempfile.mkdtemp(prefix="pcb-cpg-", dir="/tmp"))
    key = res.temp / "authkey"
    run(KEYGEN, "-k", str(key))
    daemons = [args.only] if args.only else list(DAEMONS)
    bins = res.temp / "bin"
    bins.mkdir()
    probes = Probes(compile_c_probes(args.anchors, bins) if "corosync" in daemons else {})
    say("building namespaces")
    build_topology(res)
    figures = {d: Figures() for d in daemons}
    errors: list[str] = []
    for rep in range(1, args.runs + 1):
        for daemon in daemons:
            if time.monotonic() + 30 > deadline:
                errors.append(f"budget reached before {daemon} repeat {rep}")
                continue
            say(f"{daemon} repeat {rep}/{args.runs}")
            repeat = Repeat(res, daemon, res.temp / daemon / f"rep{rep}", probes, args, deadline)
            try:
                one_repeat(repeat, key, rep, figures[daemon], errors)
            except (TimeoutError, RuntimeError, BudgetError, OSError) as error:
                errors.append(f"{daemon} repeat {rep}: {error}")
                say(f"  failed: {error}")
    result: dict[str, object] = {
        "bench": "netns_cpg",
        "nodes": NODES,
        "runs": args.runs,
        "secs": args.secs,
        "sizes": args.sizes,
        "sched_rr": "no (both)" if args.no_rt else "default (Corosync: yes)",
        "order": "alternating per repeat: " + ", then ".join(daemons),
        "figure": "CPG agreed messages delivered per node per second (mean over the 3 "
        "nodes) between each node's first DATA and last END; latency: node 1, 64 B every "
        f"{LAT_INTERVAL_MS} ms x {LAT_COUNT}, mcast -> own delivery",
        "probes": {
            "corosync": "anchors' cpgbench-own / cpglat-own (C, libcpg)",
            "pycorosync": "bench/_cpg_probe.py (pycorosync.lib.cpg)",
        },
        "versions": versions(),
        "daemons": {d: daemon_summary(figures[d]) for d in daemons},
    }
    if len(daemons) == 2:
        result["ours_over_corosync_median"] = comparison(figures["pycorosync"], figures["corosync"])
    sample = Path("/tmp/pcb-cpg/<daemon>/rep<k>/n1")
    extra = ["sched_rr: no"] if args.no_rt else []
    result["config_node1"] = render_config(sample, 1, Path("/tmp/pcb-cpg/authkey"), extra)
    result["errors"] = errors
    result["wall_s"] = round(time.monotonic() - started, 1)
    if args.keep_logs:
        result["logs"] = str(Path(args.keep_logs).resolve())
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="repeats of every case (2)")
    parser.add_argument("--secs", type=float, default=5.0, help="sending time a case (5)")
    parser.add_argument("--sizes", type=parse_sizes, default=[64, 1024, 16384])
    parser.add_argument("--only", choices=DAEMONS, help="measure one daemon only")
    parser.add_argument("--no-rt", action="store_true", help="sched_rr: no for both daemons")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the logs, configs, outputs")
    parser.add_argument("--budget", type=float, default=900.0, help="whole run, seconds (900)")
    parser.add_argument("--anchors", type=Path, default=DEFAULT_ANCHORS, help="anchors dir")
    parser.add_argument("--profile", metavar="DIR", help="py-spy our node 1 into DIR")
    parser.add_argument("--profile-case", type=parse_case, default=(1024, "1sender"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_measured("netns_cpg.py", args, measure)


if __name__ == "__main__":
    sys.exit(main())
