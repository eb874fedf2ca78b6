"""corosync-cpgtool against the real CPG engine in process: Corosync's layout and flags."""

from __future__ import annotations

import io

import pytest

from pycorosync.lib.cpg import CpgHandle, initialize
from pycorosync.lib.errors import LibraryError
from pycorosync.tools.cpgtool import escape_name, main
from tests._cpg_bench import CpgNodes, EngineTransport, Recorder


@pytest.fixture
def nodes() -> CpgNodes:
    cluster = CpgNodes([1, 2])
    cluster.join(1, cluster.connect(1, pid=18976), b"we\x01ird\\")
    cluster.join(1, cluster.connect(1, pid=18975), b"grp one")
    cluster.join(2, cluster.connect(2, pid=7), b"grp one")
    return cluster


def run(nodes: CpgNodes, *argv: str) -> tuple[int, bytes, str]:
    out, err = io.BytesIO(), io.StringIO()

    def connect() -> CpgHandle:
        seen = Recorder()
        return initialize(seen.deliver, seen.confchg, transport=EngineTransport(nodes, 1, 1))

    addresses = {1: ["127.0.0.1"], 2: ["127.0.0.2", "10.0.0.2"]}
    code = main(list(argv), connect=connect, addresses=addresses.__getitem__, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_default_output_is_corosyncs_layout(nodes: CpgNodes) -> None:
    code, out, _ = run(nodes)
    assert code == 0
    assert out == (
        b"Group Name\t       PID\t   Node ID\n"
        b"we\\x01ird\\\\\n"
        b"\t\t     18976\t         1 (127.0.0.1)\n"
        b"grp one\n"
        b"\t\t     18975\t         1 (127.0.0.1)\n"
        b"\t\t         7\t         2 (127.0.0.2 10.0.0.2)\n"
    )


def test_machine_format_and_names_only(nodes: CpgNodes) -> None:
    assert run(nodes, "-d", ",")[1] == (
        b"GRP_NAME,PID,NODEID\nwe\\x01ird\\\\,18976,1\ngrp one,18975,1\ngrp one,7,2\n"
    )
    assert run(nodes, "-n")[1] == b"we\\x01ird\\\\\ngrp one\n"
    assert run(nodes, "-n", "-d", ";")[1] == b"we\\x01ird\\\\;grp one\n"
    assert run(nodes, "-n", "-e")[1] == b"we\x01ird\\\ngrp one\n"


def test_no_groups_prints_only_the_header() -> None:
    code, out, _ = run(CpgNodes([1]))
    assert (code, out) == (0, b"Group Name\t       PID\t   Node ID\n")


def test_no_daemon_is_corosyncs_error_and_exit_1() -> None:
    def refuse() -> CpgHandle:
        raise LibraryError("no daemon")

    err = io.StringIO()
    assert main([], connect=refuse, out=io.BytesIO(), err=err) == 1
    assert err.getvalue() == "Could not initialize corosync cpg API error 2\n"


def test_bad_option_exits_1(nodes: CpgNodes) -> None:
    code, _, err = run(nodes, "-x")
    assert code == 1
    assert "usage" in err.lower() or "corosync-cpgtool" in err


def test_escaping_keeps_printable_ascii() -> None:
    assert escape_name(b"a b~\x7f\x00\\") == b"a b~\\x7F\\x00\\\\"
