"""The echo example plugin: its behaviour (in-process) and its life as an installed distribution.

The install test builds ``tests/data/pycorosync-echo`` with pip into a private directory and
proves, in fresh interpreters with that directory on ``PYTHONPATH``, that the registry finds
it through its entry point, orders it, and honours the block-list, the autoload switch and
the ``names`` filter.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import pytest

from pycorosync.lib.errors import CsErrorCode
from pycorosync.plugins.engine import ClientConnection
from pycorosync.plugins.testing import FakeCluster, FakeExecutive, Reply
from pycorosync.plugins.validation import validate_engine
from tests._project import ROOT, package_dirs

ECHO_PROJECT = ROOT / "tests" / "data" / "pycorosync-echo"


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The echo plugin's engine module, imported from its source tree."""
    monkeypatch.syspath_prepend(str(ECHO_PROJECT / "src"))
    yield importlib.import_module("pycorosync_echo.engine")
    for name in [n for n in sys.modules if n.startswith("pycorosync_echo")]:
        del sys.modules[name]


def _cluster(echo: ModuleType, members: list[int], nodes: int = 3) -> FakeCluster[Any]:
    cluster = FakeCluster(echo.EchoEngine, range(1, nodes + 1))
    cluster.change_membership(members)
    return cluster


# Behaviour ---------------------------------------------------------------------------------


def test_the_echo_engine_satisfies_the_protocol(echo: ModuleType) -> None:
    validate_engine(echo.EchoEngine)


def test_an_echo_goes_round_the_ring_and_back_to_its_client(echo: ModuleType) -> None:
    cluster = _cluster(echo, [1, 2, 3])
    conn = cluster.connect(2)
    cluster.request(2, conn, echo.REQ_ECHO, b"hello")
    assert cluster.executives[2].replies == []  # nothing until the ring delivers it
    assert cluster.deliver() == 1
    assert cluster.executives[2].replies == [
        Reply(conn=conn, message_id=echo.RES_ECHO, payload=b"hello", error=CsErrorCode.CS_OK)
    ]
    assert cluster.executives[1].replies == cluster.executives[3].replies == []
    assert [cluster.engines[n].echoed for n in (1, 2, 3)] == [1, 1, 1]


def test_stats_report_the_count_and_the_members(echo: ModuleType) -> None:
    cluster = _cluster(echo, [1, 3])
    conn = cluster.connect(3)
    for payload in (b"a", b"b"):
        cluster.request(3, conn, echo.REQ_ECHO, payload)
    cluster.deliver()
    cluster.request(3, conn, echo.REQ_STATS, b"")
    stats = cluster.executives[3].replies[-1]
    assert stats.message_id == echo.RES_STATS
    assert msgpack.unpackb(stats.payload) == {"echoed": 2, "members": [1, 3]}


def test_sync_brings_a_joining_node_up_to_date(echo: ModuleType) -> None:
    cluster = _cluster(echo, [1, 2])
    conn = cluster.connect(1)
    for _ in range(3):
        cluster.request(1, conn, echo.REQ_ECHO, b"x")
    cluster.deliver()
    assert cluster.engines[3].echoed == 0
    cluster.change_membership([1, 2, 3])
    assert [cluster.engines[n].echoed for n in (1, 2, 3)] == [3, 3, 3]


def test_a_full_ring_answers_try_again(echo: ModuleType) -> None:
    api = FakeExecutive(1)
    api.would_block = True
    engine = echo.EchoEngine()
    engine.exec_init(api)
    conn = ClientConnection(conn_id=1, pid=10, uid=0, gid=0)
    engine.lib_init(conn)
    echo.EchoEngine.lib_handlers[echo.REQ_ECHO].handler(engine, conn, b"x")
    assert api.replies == [
        Reply(conn=conn, message_id=echo.RES_ECHO, payload=b"", error=CsErrorCode.CS_ERR_TRY_AGAIN)
    ]
    assert api.outbox == []


def test_no_reply_reaches_a_client_that_left(echo: ModuleType) -> None:
    cluster = _cluster(echo, [1])
    conn = cluster.connect(1)
    cluster.request(1, conn, echo.REQ_ECHO, b"late")
    cluster.disconnect(1, conn)
    cluster.deliver()
    assert cluster.executives[1].replies == []
    assert cluster.engines[1].echoed == 1


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",  # never used in msgpack
        msgpack.packb([1, 2]),
        msgpack.packb([1, 2, "text, not bytes"]),
        msgpack.packb([2, 1, b"spoofed origin"]),  # sent by node 1, claims node 2
        b"\x81\x91\x01\x02",  # a map keyed by an array
    ],
)
def test_a_malformed_echo_from_a_peer_is_dropped(
    echo: ModuleType, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = _cluster(echo, [1, 2])
    cluster.executives[1].mcast(echo.MCAST_ECHO, payload)
    with caplog.at_level(logging.WARNING, logger="pycorosync_echo.engine"):
        cluster.deliver()
    assert [cluster.engines[n].echoed for n in (1, 2)] == [0, 0]
    assert "malformed echo from node 1 dropped" in caplog.text


def test_a_sync_count_from_another_ring_is_ignored(echo: ModuleType) -> None:
    cluster = _cluster(echo, [1, 2])
    stale = msgpack.packb([cluster.ring_id.seq + 7, 100])
    engine = cluster.engines[1]
    echo.EchoEngine.sync_init(engine, (1,), (1, 2), cluster.ring_id)
    echo.EchoEngine.exec_handlers[echo.MCAST_SYNC_COUNT].handler(engine, stale, 2)
    engine.sync_activate()
    assert engine.echoed == 0


# As an installed distribution --------------------------------------------------------------

_PROBE = """
import json, sys
from pycorosync.plugins.registry import ServiceRegistry
from pycorosync.plugins.sources import PluginSource, installed_sources
sys.path.insert(0, {tests_parent!r})
from tests._engines import FakePlugin, make_engine

early = make_engine("early", service_id=900, priority=1)
late = make_engine("late", service_id=50, priority=20)
local = PluginSource(name="local", distribution="local-test", load=lambda: FakePlugin(early, late))
names = json.loads(sys.argv[1])
registry = ServiceRegistry.load(names=names, sources=[*installed_sources(), local])
print(json.dumps({{
    "found": [[s.name, s.distribution] for s in installed_sources()],
    "order": [e.name for e in registry.load_order()],
    "echo": [[l.plugin, l.distribution, l.engine.__module__] for l in registry.engines
             if l.engine.name == "echo"],
    "failures": [str(f) for f in registry.failures],
}}))
"""


@pytest.fixture(scope="module")
def echo_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pycorosync-echo installed as its own distribution into a private directory."""
    base = tmp_path_factory.mktemp("echo-dist")
    source = base / "source"
    shutil.copytree(ECHO_PROJECT, source, ignore=shutil.ignore_patterns("__pycache__"))
    target = base / "site"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    command += ["--no-build-isolation", "--no-index", "--target", str(target), str(source)]
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    # pip may warn on stderr (e.g. about its configuration); only the exit status counts.
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def _probe(site: Path, names: list[str] | None = None, **switches: str) -> dict[str, list[object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYCOROSYNC_")}
    env.update(switches, PYTHONPATH=str(site))
    script = _PROBE.format(tests_parent=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(names)],
        capture_output=True,
        text=True,
        env=env,
        cwd=site,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    probe: dict[str, list[object]] = json.loads(result.stdout)
    return probe


def test_the_installed_plugin_is_discovered_and_ordered(echo_install: Path) -> None:
    probe = _probe(echo_install)
    assert ["echo", "pycorosync-echo"] in probe["found"]
    assert probe["echo"] == [["echo", "pycorosync-echo", "pycorosync_echo.engine"]]
    # echo has priority 10: after the built-ins cmap and cpg (0) and "early" (1), before
    # "late" (20).
    assert probe["order"] == ["cmap", "cpg", "early", "echo", "late"]
    assert probe["failures"] == []


def test_the_block_list_hides_the_installed_plugin(echo_install: Path) -> None:
    probe = _probe(echo_install, PYCOROSYNC_BLOCKED_PLUGINS="echo")
    assert probe["order"] == ["cmap", "cpg", "early", "late"]
    assert probe["failures"] == []


def test_disabling_autoload_hides_the_installed_plugin(echo_install: Path) -> None:
    probe = _probe(echo_install, PYCOROSYNC_DISABLE_PLUGIN_AUTOLOAD="1")
    assert probe["order"] == ["cmap", "cpg"]  # built-ins only
    assert probe["failures"] == []


def test_a_worker_loads_exactly_its_set(echo_install: Path) -> None:
    assert _probe(echo_install, names=["echo"])["order"] == ["echo"]
    blocked = _probe(echo_install, names=["echo"], PYCOROSYNC_BLOCKED_PLUGINS="echo")
    assert blocked["order"] == []
    assert blocked["failures"] == [
        "plugin 'echo' (distribution 'pycorosync-echo'): "
        "requested but skipped: blocked by PYCOROSYNC_BLOCKED_PLUGINS"
    ]


def test_the_echo_plugin_type_checks_against_the_protocol(tmp_path: Path) -> None:
    """``register(EchoEngine)`` in its hook makes mypy check the class against ServiceEngine."""
    farm = tmp_path / "src" / "pycorosync"
    farm.mkdir(parents=True)
    for package, folder in package_dirs().items():
        (farm / package.split(".", 1)[1]).symlink_to(ROOT / folder, target_is_directory=True)
    mypy = Path(sys.executable).with_name("mypy")
    command = [str(mypy), "--config-file", str(ROOT / "pyproject.toml")]
    command += ["--cache-dir", str(tmp_path / "cache"), "-p", "pycorosync_echo"]
    mypypath = os.pathsep.join([str(tmp_path / "src"), str(ECHO_PROJECT / "src")])
    env = dict(os.environ, MYPYPATH=mypypath)
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
