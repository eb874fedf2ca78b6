"""``pycorosync-demo``: the README's main command starts, shows, and stops a local cluster."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("loopback")

PORT = 26405  # 127.0.0.1, ports 26405..26425: used by no other test


def test_the_demo_forms_a_cluster_sends_round_the_ring_and_cleans_up() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pycorosync.tools.demo", "--once", "--port", str(PORT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    for nodeid in (1, 2, 3):
        assert f"  node {nodeid}: joined\n" in out
    for sender in (1, 2, 3):
        text = f"message {sender} from node {sender}"
        receivers = re.findall(rf"  node (\d) delivered from node {sender}: {text}\n", out)
        assert sorted(receivers) == ["1", "2", "3"], out
    assert out.rstrip().endswith("stopped")
    made = re.search(r" in (/tmp/pcsdemo-\S+)\n", out)
    assert made is not None
    assert not Path(made.group(1)).exists()  # its directory is gone
