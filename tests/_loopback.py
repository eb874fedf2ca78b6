"""Helpers for tests that run real ``corosync-exec`` processes on loopback addresses.

Each test owns a block of addresses no other test uses (127.0.<block>.x, or ::1 with ports of
its own), a short run directory under /tmp and its own keys. Every wait polls the nodes' logs
with a deadline; a timing bound is three times the configured figure (DESIGN.md, Testing).
Token 1000 ms with token_coefficient 0 keeps failure detection near 2 s.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TOKEN_MS = 1000
CONSENSUS_MS = 1200
DETECT_BOUND_S = 3 * (TOKEN_MS + CONSENSUS_MS) / 1000
DEADLINE_S = 20.0
PORT = 15405
EXEC = (sys.executable, "-m", "pycorosync.exec.main")

MEMBERS_LINE = re.compile(r"\[MAIN  \] Members\[\d+\]: ([0-9 ]+)$", re.MULTILINE)
RING_LINE = re.compile(r"A new membership \(([0-9a-f]+\.[0-9a-f]+)\) was formed")


def wait_until(predicate: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> float:
    """Poll ``predicate`` until it holds; the seconds it took. Fails after ``deadline_s``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > deadline_s:
            pytest.fail(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


def make_key(path: Path, size: int = 256) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pycorosync.tools.keygen", "-k", str(path), "-s", str(size)],
        check=True,
        capture_output=True,
    )
    return path


@dataclass
class Node:
    nodeid: int
    address: str
    port: int
    base: Path
    keyfile: Path | None
    proc: subprocess.Popen[bytes] | None = None
    mark: int = 0

    @property
    def conf(self) -> Path:
        return self.base / f"n{self.nodeid}.conf"

    @property
    def log(self) -> Path:
        return self.base / f"n{self.nodeid}.log"

    def start(self, env: dict[str, str] | None = None) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*EXEC, "-f", "-c", str(self.conf), "-n", str(self.nodeid)],
                stdout=log,
                stderr=log,
                env=env,
            )

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def since_mark(self) -> str:
        return self.text()[self.mark :]

    def set_mark(self) -> None:
        self.mark = len(self.text())

    def members(self) -> str | None:
        """The last ``Members[N]: ...`` this node logged (since the mark)."""
        found = MEMBERS_LINE.findall(self.since_mark())
        return found[-1].strip() if found else None

    def ring(self) -> str | None:
        found = RING_LINE.findall(self.since_mark())
        return found[-1] if found else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait_exit(self) -> int:
        assert self.proc is not None
        return self.proc.wait(DEADLINE_S)


@dataclass
class Cluster:
    nodes: list[Node]
    base: Path
    extra_totem: str = ""
    crypto: bool = True
    transport: str = "udpu"
    sched_rr: bool = False
    """Real-time scheduling is Corosync's default; tests leave it off unless they test it, so
    that a busy daemon never starves the test runner on a small CI machine."""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def node(self, nodeid: int) -> Node:
        return self.nodes[nodeid - 1]

    def write_configs(self) -> None:
        for node in self.nodes:
            node.conf.write_text(self.config_for(node))

    def config_for(self, node: Node) -> str:
        if self.crypto:
            assert node.keyfile is not None
            crypto = f"    keyfile: {node.keyfile}\n"
        else:
            crypto = "    crypto_cipher: none\n    crypto_hash: none\n"
        entries = "".join(
            f"    node {{\n        nodeid: {n.nodeid}\n        ring0_addr: {n.address}\n"
            f"        ring0_port: {n.port}\n    }}\n"
            for n in self.nodes
        )
        return (
            f"totem {{\n    version: 2\n    cluster_name: loop\n    transport: {self.transport}\n"
            f"    token: {TOKEN_MS}\n    token_coefficient: 0\n{crypto}{self.extra_totem}}}\n"
            "logging {\n    to_stderr: yes\n    to_syslog: no\n    timestamp: off\n}\n"
            f"system {{\n    sched_rr: {'yes' if self.sched_rr else 'no'}\n"
            f"    run_dir: {node.base}/r{node.nodeid}\n"
            f"    state_dir: {node.base}/s{node.nodeid}\n}}\n"
            f"nodelist {{\n{entries}}}\n"
        )

    def start(self) -> None:
        self.write_configs()
        for node in self.nodes:
            node.start()

    def running(self) -> list[Node]:
        return [node for node in self.nodes if node.alive()]

    def set_marks(self) -> None:
        for node in self.nodes:
            node.set_mark()

    def formed(self, nodes: list[Node]) -> bool:
        """Every one of ``nodes`` has installed one ring made of exactly ``nodes``."""
        expected = " ".join(str(node.nodeid) for node in nodes)
        rings = {node.ring() for node in nodes}
        return all(node.members() == expected for node in nodes) and len(rings) == 1

    def wait_formed(self, nodes: list[Node] | None = None, deadline_s: float = DEADLINE_S) -> float:
        nodes = self.nodes if nodes is None else nodes
        ids = [node.nodeid for node in nodes]
        return wait_until(lambda: self.formed(nodes), f"one ring of {ids}", deadline_s)

    def stop_all(self) -> None:
        for node in self.nodes:
            if node.alive():
                assert node.proc is not None
                node.proc.kill()
                node.proc.wait(DEADLINE_S)


class JsonLinesChild:
    """A client process that prints one JSON object a line, collected in order by a reader
    thread; commands go to its stdin one a line."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=cwd
        )
        self.records: list[dict[str, object]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.records.append(json.loads(line))

    def snapshot(self) -> list[dict[str, object]]:
        with self._lock:
            return list(self.records)

    def take(self, kind: str) -> list[object]:
        """Every record's ``kind`` field, in order, for the records that have one."""
        return [r[kind] for r in self.snapshot() if kind in r]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def ipv6_loopback_unavailable() -> str | None:
    """Why ::1 cannot be used here, or None when it can."""
    if not socket.has_ipv6:
        return "Python was built without IPv6"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError as error:
        return f"this host cannot bind ::1 ({error.strerror})"
    return None


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pcs-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(base: Path) -> Iterator[MakeCluster]:
    """``make_cluster(block, count=3, crypto=True)``: nodes on 127.0.<block>.1..count.

    With crypto the configuration names only the key file: the cipher and hash are the
    defaults (aes256, sha256), secure by default."""
    made: list[Cluster] = []

    def make(block: int, count: int = 3, *, crypto: bool = True) -> Cluster:
        key = make_key(base / "authkey") if crypto else None
        nodes = [Node(i, f"127.0.{block}.{i}", PORT, base, key) for i in range(1, count + 1)]
        cluster = Cluster(nodes, base, crypto=crypto)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop_all()


def formed_ring(make_cluster: MakeCluster, block: int) -> Cluster:
    cluster = make_cluster(block)
    cluster.start()
    cluster.wait_formed()
    cluster.set_marks()
    return cluster
