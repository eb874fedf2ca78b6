"""corosync-cmapctl against the real cmap engine in process: exact text and exit codes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pycorosync.lib.cmap import CmapHandle, initialize
from pycorosync.lib.cmap_types import CmapEntry, ValueType
from pycorosync.lib.errors import LibraryError, TryAgainError
from pycorosync.tools import cmapctl
from tests._cmap_bench import CmapBench

DEADLINE_S = 10.0


@pytest.fixture
def bench() -> CmapBench:
    bench = CmapBench()
    store = bench.store
    store.set("internal_configuration.service.0.name", "corosync_cmap", ValueType.STRING)
    store.set("internal_configuration.service.0.ver", 0, ValueType.UINT32)
    store.set("nodelist.local_node_pos", 0, ValueType.UINT32)
    store.set("runtime.members.1.ip", "r(0) ip(127.0.0.1) ", ValueType.STRING)
    store.set("runtime.services.cpg.service_id", 2, ValueType.UINT16)
    store.set("totem.cluster_name", "probe", ValueType.STRING)
    store.set("totem.version", 2, ValueType.UINT32)
    return bench


def run(bench: CmapBench, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cmapctl.main(
        list(argv),
        connect=lambda _map: CmapHandle(bench.connect()),
        stdin=io.TextIOWrapper(io.BytesIO(stdin.encode())),
        stdout=out,
        stderr=err,
    )
    return code, out.getvalue(), err.getvalue()


def test_no_arguments_print_every_key_sorted(bench: CmapBench) -> None:
    assert run(bench) == (
        0,
        "internal_configuration.service.0.name (str) = corosync_cmap\n"
        "internal_configuration.service.0.ver (u32) = 0\n"
        "nodelist.local_node_pos (u32) = 0\n"
        "runtime.members.1.ip (str) = r(0) ip(127.0.0.1) \n"
        "runtime.services.cpg.service_id (u16) = 2\n"
        "totem.cluster_name (str) = probe\n"
        "totem.version (u32) = 2\n",
        "",
    )


def test_prefix_operands_print_their_keys(bench: CmapBench) -> None:
    code, out, _ = run(bench, "totem.", "nodelist.")
    assert code == 0
    assert out == (
        "totem.cluster_name (str) = probe\n"
        "totem.version (u32) = 2\n"
        "nodelist.local_node_pos (u32) = 0\n"
    )
    assert run(bench, "nothing.here") == (1, "", "")


def test_get_prints_the_key_line_or_corosyncs_error(bench: CmapBench) -> None:
    assert run(bench, "-g", "totem.version") == (0, "totem.version (u32) = 2\n", "")
    assert run(bench, "-q", "-g", "totem.cluster_name") == (0, "probe\n", "")
    assert run(bench, "-g", "no.such.key") == (
        1,
        "",
        "Can't get key no.such.key. Error CS_ERR_NOT_EXIST\n",
    )


def test_number_formats(bench: CmapBench) -> None:
    bench.store.set("n.flt", 1.5, ValueType.FLOAT)
    bench.store.set("n.dbl", -2.25, ValueType.DOUBLE)
    bench.store.set("n.i8", -7, ValueType.INT8)
    bench.store.set("n.u64", (1 << 64) - 1, ValueType.UINT64)
    assert run(bench, "n.")[1] == (
        "n.dbl (dbl) = -2.250000\n"
        "n.flt (flt) = 1.500000\n"
        "n.i8 (i8) = -7\n"
        "n.u64 (u64) = 18446744073709551615\n"
    )


def test_binary_values_show_only_with_b(bench: CmapBench) -> None:
    bench.store.set("b.data", b"ok\\\x00\xfe~", ValueType.BINARY)
    bench.store.set("b.empty", b"", ValueType.BINARY)
    assert run(bench, "b.")[1] == "b.data (bin)\nb.empty (bin)\n"
    assert (
        run(bench, "-b", "b.")[1] == "b.data (bin) = ok\\\\\\x00\\xFE~\nb.empty (bin) = *empty*\n"
    )


def test_set_every_type_and_read_it_back(bench: CmapBench) -> None:
    for key, type_name, text in [
        ("s.i8", "i8", "-128"),
        ("s.u8", "u8", "0x10"),
        ("s.i16", "i16", "010"),
        ("s.u32", "u32", "4294967295"),
        ("s.u64", "u64", "-1"),
        ("s.dbl", "dbl", "0.5"),
        ("s.str", "str", "hello world"),
    ]:
        # "--": a negative number would read as flags, with glibc's getopt too.
        assert run(bench, "-s", "--", key, type_name, text) == (0, "", "")
    assert run(bench, "s.")[1] == (
        "s.dbl (dbl) = 0.500000\n"
        "s.i16 (i16) = 8\n"
        "s.i8 (i8) = -128\n"
        "s.str (str) = hello world\n"
        "s.u32 (u32) = 4294967295\n"
        "s.u64 (u64) = 18446744073709551615\n"
        "s.u8 (u8) = 16\n"
    )


def test_set_binary_from_a_file_and_stdin(bench: CmapBench, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x01A")
    assert run(bench, "-s", "b.file", "bin", str(blob))[0] == 0
    assert run(bench, "-s", "b.stdin", "bin", "-", stdin="xyz")[0] == 0
    assert run(bench, "-b", "b.")[1] == "b.file (bin) = \\x01A\nb.stdin (bin) = xyz\n"


def test_set_errors_are_corosyncs(bench: CmapBench) -> None:
    assert run(bench, "-s", "totem.cluster_name", "str", "x") == (
        1,
        "",
        "Failed to set key totem.cluster_name. Error CS_ERR_ACCESS\n",
    )
    assert run(bench, "-s", "a", "str", "b") == (
        1,
        "",
        "Failed to set key a. Error CS_ERR_NAME_TOO_LONG\n",
    )
    assert run(bench, "-s", "x.key", "u8", "256") == (1, "", "256 is not valid u8 integer\n")
    assert run(bench, "-s", "x.key", "u8", "abc") == (1, "", "abc is not valid u8 type value\n")
    assert run(bench, "-s", "x.key", "dbl", "pi") == (1, "", "pi is not valid dbl type value\n")
    assert run(bench, "-s", "x.key", "u9", "1") == (1, "", "Unknown type u9\n")
    assert run(bench, "-s", "x.key", "u8") == (
        1,
        "",
        "At least 3 parameters are expected for set\n",
    )
    assert run(bench, "-s", "x.key", "i8", "-1") == (
        1,
        "",
        "corosync-cmapctl: invalid option -- '1'\n",
    )
    assert run(bench, "-m") == (1, "", "corosync-cmapctl: option requires an argument -- 'm'\n")
    assert "x.key" not in bench.store


def test_delete_and_delete_by_prefix(bench: CmapBench) -> None:
    for key in ("d.one", "d.two", "d.sub.three", "e.keep"):
        bench.store.set(key, "v", ValueType.STRING)
    assert run(bench, "-d", "d.one") == (0, "", "")
    assert run(bench, "-d", "d.one") == (1, "", "Can't delete key d.one. Error CS_ERR_NOT_EXIST\n")
    assert run(bench, "-D", "d.") == (0, "", "")
    assert [k for k, _ in bench.store.iter_prefix("d")] == []
    assert "e.keep" in bench.store
    assert run(bench, "-d", "totem.version") == (
        1,
        "",
        "Can't delete key totem.version. Error CS_ERR_ACCESS\n",
    )


def test_load_a_settings_file(bench: CmapBench, tmp_path: Path) -> None:
    bench.store.set("p.old", "x", ValueType.STRING)
    bench.store.set("q.a", "x", ValueType.STRING)
    bench.store.set("q.b", "x", ValueType.STRING)
    settings = tmp_path / "settings"
    settings.write_text("# a comment\n\np.new u16 7\np.text str two words\n^p.old\n^^q.\n")
    assert run(bench, "-p", str(settings)) == (0, "", "")
    assert run(bench, "p.", "q.") == (1, "p.new (u16) = 7\np.text (str) = two words\n", "")


def test_map_selection_and_help(bench: CmapBench) -> None:
    assert run(bench, "-m", "nope") == (
        1,
        "",
        "invalid map name, must be 'default', 'icmap' or 'stats'\n",
    )
    assert run(bench, "-m", "icmap", "-g", "totem.version")[0] == 0
    code, out, _ = run(bench, "-h")
    assert code == 0
    assert out.startswith("usage:  corosync-cmapctl")


def test_a_failed_connection_is_reported(bench: CmapBench) -> None:
    err = io.StringIO()
    sleeps: list[float] = []

    def refuse(_map: int) -> CmapHandle:
        raise LibraryError("no daemon")

    code = cmapctl.main(["-g", "a.b"], connect=refuse, stderr=err, sleep=sleeps.append)
    assert (code, err.getvalue()) == (
        1,
        "Failed to initialize the cmap API. Error CS_ERR_LIBRARY\n",
    )
    assert sleeps == []


def test_try_again_is_retried_a_second_apart(bench: CmapBench) -> None:
    out, sleeps = io.StringIO(), []
    attempts = iter([TryAgainError(), TryAgainError(), None])

    def flaky(_map: int) -> CmapHandle:
        error = next(attempts)
        if error is not None:
            raise error
        return CmapHandle(bench.connect())

    code = cmapctl.main(["-g", "totem.version"], connect=flaky, stdout=out, sleep=sleeps.append)
    assert (code, out.getvalue(), sleeps) == (0, "totem.version (u32) = 2\n", [1.0, 1.0])


def test_m_stats_lists_the_stats_map(bench: CmapBench) -> None:
    def connect(cmap_map: int) -> CmapHandle:
        return initialize(bench.connect(), cmap_map=cmap_map)

    bench.executive.stats = {"stats.srp.mcast_tx": CmapEntry(ValueType.UINT64, 12)}
    out = io.StringIO()
    code = cmapctl.main(["-m", "stats"], connect=connect, stdout=out, sleep=lambda _s: None)
    assert (code, out.getvalue()) == (0, "stats.srp.mcast_tx (u64) = 12\n")


class _Output(io.StringIO):
    """A stdout that lets a test wait for text, with a deadline."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def write(self, text: str) -> int:
        with self.changed:
            written = super().write(text)
            self.changed.notify_all()
            return written

    def wait_for(self, text: str) -> str:
        deadline = time.monotonic() + DEADLINE_S
        with self.changed:
            while text not in self.getvalue():
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"never printed {text!r}; got {self.getvalue()!r}"
                self.changed.wait(remaining)
            return self.getvalue()


@pytest.mark.parametrize(("flag", "quit_by"), [("-T", "q"), ("-t", "eof")])
def test_tracking_prints_changes_until_q_or_eof(bench: CmapBench, flag: str, quit_by: str) -> None:
    out = _Output()
    read_fd, write_fd = os.pipe()
    stdin = os.fdopen(read_fd, "r")
    codes: list[int] = []
    key = "track." if flag == "-T" else "track.key"
    tool = threading.Thread(
        target=lambda: codes.append(
            cmapctl.main(
                [flag, key],
                connect=lambda _map: CmapHandle(bench.connect()),
                stdin=stdin,
                stdout=out,
            )
        )
    )
    tool.start()
    try:
        out.wait_for('Type "q" to finish\n')
        writer = bench.handle()
        writer.set_uint8("track.key", 1)
        writer.inc("track.key")
        writer.delete("track.key")
        writer.set_string("other.key", "not tracked")
        text = out.wait_for("delete> ")
        out.wait_for("delete> track.key (u8) = 2\n")
    finally:
        if quit_by == "q":
            os.write(write_fd, b"x\nq\n")
        os.close(write_fd)
        tool.join(DEADLINE_S)
    stdin.close()
    assert not tool.is_alive()
    assert codes == [0]
    assert out.getvalue() == (
        'Type "q" to finish\n'
        "create> track.key (u8) = 1\n"
        "modify> track.key (u8) = 2\n"
        "delete> track.key (u8) = 2\n"
    )
    assert text.startswith('Type "q" to finish\n')


def test_runs_as_a_program() -> None:
    command = [sys.executable, "-m", "pycorosync.tools.cmapctl", "-h"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == cmapctl.USAGE


def test_without_a_daemon_the_program_says_so() -> None:
    # No corosync-exec runs for this test, so there is nothing to connect to.
    command = [sys.executable, "-m", "pycorosync.tools.cmapctl", "-g", "totem.version"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "Failed to initialize the cmap API. Error CS_ERR_LIBRARY\n"
