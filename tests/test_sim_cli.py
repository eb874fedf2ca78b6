"""corosync-sim: argument parsing, exit codes, failure reports and the JSON summary line."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Sequence
from importlib.metadata import entry_points

import pytest

from pycorosync.exec.totem.sim import SIM_CONFIG
from pycorosync.exec.totem.sim.runner import nodes_for_seed
from pycorosync.exec.totem.srp_config import SrpConfig
from pycorosync.tools import sim
from tests._sim_fakes import SoloCore, solo_factory


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = sim.main(list(argv), core_factory=solo_factory)
    return code, capsys.readouterr().out.splitlines()


def test_passing_seeds_exit_0_with_a_json_summary_last(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, lines = run(capsys, "--seeds", "4-6", "--nodes", "1-1", "--faults", "all", "--json")
    assert code == 0
    summary = json.loads(lines[-1])
    assert summary["seeds"] == 3
    assert summary["violations"] == 0
    assert summary["failed_seeds"] == []
    assert summary["sim_seconds"] > 45.0
    assert summary["wall_seconds"] > 0
    assert summary["seeds_per_minute"] > 0
    assert summary["faults"] == sorted(summary["faults"])
    assert len(summary["faults"]) == 9
    assert lines[-2].startswith("3 seeds, 0 failed, 0 violations")


def test_failing_seeds_exit_1_and_print_violations_and_trace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, lines = run(capsys, "--seeds", "7-8", "--nodes", "2", "--faults", "none", "--json")
    assert code == 1
    text = "\n".join(lines)
    for seed in (7, 8):
        assert f"seed {seed}: FAILED, 2 nodes" in text
        assert f"reproduce: corosync-sim --seeds {seed} --nodes 2 --faults none" in text
    assert "EVS 10 LIVENESS" in text
    assert "last 400 trace lines:" in text
    summary = json.loads(lines[-1])
    assert summary["failed_seeds"] == [7, 8]
    assert summary["violations"] == 2
    assert [f["seed"] for f in summary["failures"]] == [7, 8]
    assert "2 seeds, 2 failed (7, 8)" in lines[-2]


def test_verbose_prints_a_line_per_seed_with_its_drawn_node_count(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, lines = run(
        capsys, "--seeds", "10-15", "--nodes", "1-1", "--faults", "crash,pause", "--verbose"
    )
    assert code == 0
    assert [line.split(":")[0] for line in lines[:-1]] == [f"seed {s}" for s in range(10, 16)]
    assert all(", 1 nodes," in line for line in lines[:-1])
    assert nodes_for_seed(10, 3, 7) == nodes_for_seed(10, 3, 7)
    assert {nodes_for_seed(s, 3, 7) for s in range(50)} == {3, 4, 5, 6, 7}


def test_parallel_jobs_report_the_same_totals(capsys: pytest.CaptureFixture[str]) -> None:
    _, serial = run(capsys, "--seeds", "1-4", "--nodes", "1-2", "--faults", "all", "--json")
    _, parallel = run(
        capsys, "--seeds", "1-4", "--nodes", "1-2", "--faults", "all", "--json", "--jobs", "2"
    )
    one, two = json.loads(serial[-1]), json.loads(parallel[-1])
    for key in ("seeds", "failed_seeds", "violations", "sim_seconds"):
        assert one[key] == two[key]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--seeds"),
        (["--seeds", "5-2"], "0 <= A <= B"),
        (["--seeds", "x"], "not a number"),
        (["--seeds", "1-2", "--nodes", "0-3"], "at least one node"),
        (["--seeds", "1-2", "--nodes", "3-x"], "not a number"),
        (["--seeds", "1-2", "--faults", "loss,bogus"], "unknown fault kind"),
        (["--seeds", "1-2", "--jobs", "0"], "at least 1"),
        (["--seeds", "1-2", "--frobnicate"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_are_argparse_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        sim.main(argv, core_factory=solo_factory)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_command_uses_the_real_core_by_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built: list[tuple[SrpConfig, int, int]] = []

    def srp(config: SrpConfig, nodeid: int, members: Sequence[int], ring_seq: int) -> SoloCore:
        built.append((config, nodeid, ring_seq))
        return SoloCore(nodeid, members, ring_seq)

    module = types.ModuleType("pycorosync.exec.totem.srp")
    module.Srp = srp  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycorosync.exec.totem.srp", module)
    assert sim.main(["--seeds", "3", "--nodes", "1", "--faults", "none", "--json"]) == 0
    assert built == [(SIM_CONFIG, 1, 0)]
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["seeds"] == 1


def test_console_script_points_at_main() -> None:
    (script,) = entry_points(group="console_scripts", name="corosync-sim")
    assert script.load() is sim.main


def _program(*argv: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "pycorosync.tools.sim", *argv]
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)


def test_runs_as_a_program() -> None:
    done = _program("--help")
    assert done.returncode == 0
    assert "--seeds" in done.stdout
    assert "--faults" in done.stdout
    bad = _program("--seeds", "9-1")
    assert bad.returncode == 2
    assert "corosync-sim: error: argument --seeds" in bad.stderr
