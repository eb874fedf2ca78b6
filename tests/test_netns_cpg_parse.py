"""The parts of ``bench/netns_cpg.py`` and ``bench/_cpg_probe.py`` that need no root.

The result parsing and the figures built from it, the probe's own counting and output (which
must read the way the anchors' C probes print), and the probe itself against a real two-node
loopback cluster of ours (addresses 127.0.61.x are this file's alone).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests._loopback import MakeCluster, wait_until
from tests._project import ROOT


def _load(name: str, file: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while the class is made
    spec.loader.exec_module(module)
    return module


bench = _load("netns_cpg_under_test", "netns_cpg.py")
probe = _load("cpg_probe_under_test", "_cpg_probe.py")

# Lines as the anchors' C probes print them (cpgbench-own, cpglat-own) against Corosync.
C_TP = [
    "RESULT node=1 role=send size=64 senders=1 sent=77377 tryagain=0 delivered=77377 "
    "secs=2.998 msgs_per_s=25809 MB_per_s=1.652 complete=1",
    "RESULT node=2 role=recv size=64 senders=1 sent=0 tryagain=0 delivered=77377 "
    "secs=2.998 msgs_per_s=25810 MB_per_s=1.652 complete=1",
    "RESULT node=3 role=recv size=64 senders=1 sent=0 tryagain=0 delivered=77377 "
    "secs=2.999 msgs_per_s=25793 MB_per_s=1.651 complete=1",
]
C_LAT = (
    "RESULT node=1 msgs=300 interval_ms=10 n_ok=300 mean_us=412.9 p50_us=357.2 "
    "p90_us=520.3 p99_us=846.0 max_us=1843.1 min_us=303.4"
)
SNMP = """\
Ip: Forwarding DefaultTTL InReceives
Ip: 2 64 1234
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors
Udp: 90812 0 3 90811 7 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors
UdpLite: 0 0 0 0 0 0 0
"""


def test_a_result_line_is_split_into_its_fields() -> None:
    fields = bench.parse_result(C_TP[0])
    assert fields["node"] == "1"
    assert fields["msgs_per_s"] == "25809"
    assert fields["complete"] == "1"
    assert bench.parse_result("confchg: members=3 joined=1 left=0") is None
    assert bench.parse_result("RESULT node=1 garbage") is None
    assert bench.parse_result("") is None
    assert len(bench.results_in("noise\n" + "\n".join(C_TP) + "\ntp probe failed: x\n")) == 3


def test_throughput_is_the_mean_over_the_nodes_and_needs_every_node_complete() -> None:
    results = [bench.parse_result(line) for line in C_TP]
    got = bench.throughput_of(results, 3)
    assert got.msgs_per_s == pytest.approx((25809 + 25810 + 25793) / 3)
    assert got.mb_per_s == pytest.approx((1.652 + 1.652 + 1.651) / 3)
    assert got.slowest_node_msgs_per_s == 25793
    assert got.sent == 77377
    with pytest.raises(ValueError, match="2 of 3"):
        bench.throughput_of(results[:2], 3)
    short = dict(results[2], complete="0")
    with pytest.raises(ValueError, match="node"):
        bench.throughput_of([*results[:2], short], 3)


def test_latency_needs_every_sample() -> None:
    fields = bench.parse_result(C_LAT)
    assert bench.latency_of(fields, 300) == (357.2, 846.0)
    with pytest.raises(ValueError, match="299 of 300"):
        bench.latency_of(dict(fields, n_ok="299"), 300)


def test_udp_counters_are_read_from_the_udp_table() -> None:
    assert bench.udp_counters(SNMP) == {"RcvbufErrors": 7, "OutDatagrams": 90811}
    with pytest.raises(ValueError, match="RcvbufErrors"):
        bench.udp_counters("Ip: Forwarding\nIp: 2\n")


def test_sync_is_complete_only_after_the_membership() -> None:
    lines = [
        "Dec 01 23:33:11.201 [812] vm corosync notice  [MAIN  ] Completed service "
        "synchronization, ready to provide service.",
        "Dec 01 23:33:12.040 [812] vm corosync notice  [TOTEM ] A new membership (1.9) was "
        "formed. Members joined: 2 3",
    ]
    formed = bench.parse_stamp(lines[1])
    assert formed is not None
    assert not bench.synced_after(lines, formed)
    done = "Dec 01 23:33:12.044 [812] vm corosync notice  [MAIN  ] " + bench.READY_LINE
    assert bench.synced_after([*lines, done], formed)


def test_ratios_and_targets() -> None:
    ours, theirs = bench.Figures(), bench.Figures()
    theirs.msgs_per_s = {"64B-1sender": [30000, 28000, 32000], "1024B-1sender": [25000]}
    ours.msgs_per_s = {"64B-1sender": [21000, 22000], "1024B-1sender": [20000]}
    theirs.lat_p50, ours.lat_p50 = [360.0], [720.0]
    got = bench.comparison(ours, theirs)
    assert got["throughput_msgs_per_s"] == {"64B-1sender": 0.717, "1024B-1sender": 0.8}
    assert got["targets"]["64B-1sender"]["met"] is True
    assert got["targets"]["1024B-1sender"]["met"] is False
    assert got["targets"]["latency_p50"] == {"ratio": 2.0, "at_most": 1.5, "met": False}
    assert bench.ratio([], [1.0]) is None


def test_options() -> None:
    assert bench.parse_sizes("64,1024,16384") == [64, 1024, 16384]
    assert bench.parse_case("1024:allsend") == (1024, "allsend")
    with pytest.raises(argparse.ArgumentTypeError, match="positive"):
        bench.parse_sizes("64,-1")
    with pytest.raises(argparse.ArgumentTypeError, match="SIZE"):
        bench.parse_case("1024:everyone")


def test_the_probe_counts_data_between_the_first_data_and_the_last_end() -> None:
    counts = probe.TpCounts()
    data = probe.tp_message(probe.DATA, 1, 99, 0, 1024)
    assert len(data) == 1024
    counts.deliver(probe.tp_message(probe.END, 2, 7, 0, 64), 9.0)  # a stray END: no DATA yet
    counts.deliver(b"short", 10.0)
    counts.deliver(b"\0" * 64, 10.0)  # another application's message in the group
    for i in range(100):
        counts.deliver(data, 10.0 + i * 0.01)
    counts.deliver(probe.tp_message(probe.END, 1, 99, 100, 1024), 12.0)
    fields = bench.parse_result(counts.line(1, 1024, 2, sender=False))
    assert fields["delivered"] == "100"
    assert fields["secs"] == "2.000"
    assert fields["msgs_per_s"] == "50"
    assert fields["complete"] == "1"  # two ENDs seen, two senders expected
    assert bench.parse_result(counts.line(1, 1024, 3, sender=True))["complete"] == "0"


def test_the_probe_latency_line_uses_the_c_probe_rank_rule() -> None:
    samples = [float(v) for v in range(100, 0, -1)]
    fields = bench.parse_result(probe.lat_line(1, 100, 10, samples))
    assert fields["p50_us"] == "51.0"  # index round(0.5 * 99) = 50 of 1..100
    assert fields["p99_us"] == "99.0"
    assert fields["n_ok"] == "100"
    assert bench.latency_of(fields, 100) == (51.0, 99.0)


@pytest.mark.xdist_group("loopback")
def test_the_probe_runs_against_our_daemons(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(61, count=2)
    cluster.start()
    cluster.wait_formed()
    for node in cluster.nodes:
        wait_until(lambda n=node: "ready to provide service." in n.text(), "the first sync")
    script = str(ROOT / "bench" / "_cpg_probe.py")

    def tp(node: int, *sender: str) -> subprocess.Popen[str]:
        run_dir = str(cluster.node(node).base / f"r{node}")
        cmd = [sys.executable, script, "tp", "--run-dir", run_dir, "-g", "probe-test"]
        cmd += ["-s", "256", "-t", "0.5", "-w", "2", "-e", "1", "-D", "20", *sender]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)

    procs = [tp(1, "-S"), tp(2)]
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    results = [r for text in outputs for r in bench.results_in(text)]
    got = bench.throughput_of(results, 2)  # raises unless both saw the END
    assert got.sent > 0
    assert [int(r["delivered"]) for r in results] == [got.sent, got.sent]
    run_dir = str(cluster.node(1).base / "r1")
    lat = [sys.executable, script, "lat", "--run-dir", run_dir, "-n", "20", "-i", "5", "-w", "1"]
    text = subprocess.run(lat, capture_output=True, text=True, timeout=60, check=True).stdout
    p50, p99 = bench.latency_of(bench.results_in(text)[0], 20)
    assert 0 < p50 <= p99


def test_cpu_ticks_are_utime_plus_stime_whatever_the_process_name() -> None:
    stat = "4242 (python (a) b) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 3 0"
    assert bench.cpu_ticks(stat) == 1234 + 567
    own = bench.cpu_ticks(Path("/proc/self/stat").read_text()) / os.sysconf("SC_CLK_TCK")
    times = os.times()
    assert own == pytest.approx(times.user + times.system, abs=0.05)
