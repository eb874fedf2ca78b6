"""The Python examples of docs/cpg.md run as written, against the CPG engine in process."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pycorosync.lib import cpg
from pycorosync.lib.cpg_async import AsyncCpgHandle
from tests._cpg_bench import AsyncEngineTransport, CpgNodes, EngineTransport

DOC = Path(__file__).resolve().parent.parent / "docs" / "cpg.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(
    index: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = CpgNodes([1, 2])
    monkeypatch.setattr(cpg, "_connect", lambda run_dir: EngineTransport(nodes, 1, os.getpid()))

    async def connect(**_: object) -> AsyncCpgHandle:
        return AsyncCpgHandle(AsyncEngineTransport(EngineTransport(nodes, 1, os.getpid())))

    monkeypatch.setattr(AsyncCpgHandle, "connect", connect)
    exec(compile(BLOCKS[index], f"{DOC}:block{index}", "exec"), {"__name__": "example"})
    assert capsys.readouterr().out  # every example prints what it found


def test_the_doc_has_its_examples() -> None:
    assert len(BLOCKS) == 3
