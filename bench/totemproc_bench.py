"""CPU per token visit of the real Totem process on an idle ring, in one process, printed as JSON.

Usage: ``python bench/totemproc_bench.py [--nodes 3] [--seconds 3] [--block 77]``. N
:class:`~pycorosync.exec.totemproc.TotemProcess` instances - each with its own SRP core, UDP
socket on 127.0.<block>.<n> and aes256/sha256 packet crypto - share one uvloop loop and form a
ring; the token hold is off, so the token circulates as fast as the shells pass it. The figure
is the process's CPU time over the token visits made (``orf_token_rx``): everything a visit
costs - the reads, decryption, the core, encryption, the ``sendto``, the timers and the loop -
with no cross-process wake-ups (all run on one core). This is the floor of an idle ring's CPU
on a real node, where each visit also pays a wake-up and a cold cache; Corosync's C
executive spends a small fraction of it, which is why its idle ring costs it almost nothing.
Loopback figures are for development, never reported as ratios (DESIGN.md, Performance).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
import tempfile
import time

import uvloop

from pycorosync.exec.nodelist import NodeAddress
from pycorosync.exec.totem.srp import Srp, State
from pycorosync.exec.totem.srp_config import SrpConfig
from pycorosync.exec.totemconfig import CryptoConfig
from pycorosync.exec.totemcrypto import PacketCrypto
from pycorosync.exec.totemnet import UdpuTransport
from pycorosync.exec.totemproc import RingSeqFile, TotemProcess

PORT = 15777
FORM_S = 10.0


def _processes(
    loop: asyncio.AbstractEventLoop, nodes: int, block: int, state_dir: str
) -> list[tuple[TotemProcess, Srp]]:
    ids = list(range(1, nodes + 1))
    endpoints = {
        n: NodeAddress(
            link=0,
            text=f"127.0.{block}.{n}",
            address=ipaddress.ip_address(f"127.0.{block}.{n}"),
            port=PORT,
        )
        for n in ids
    }
    key = os.urandom(128)
    crypto = CryptoConfig(cipher="aes256", hash="sha256", model="nss", keyfile="", key=key)
    # No token hold: the figure is the cost of a visit, so visits must keep coming.
    config = SrpConfig(token_ms=1000, consensus_ms=1200, seqno_unchanged_const=10**9)
    made = []
    for nodeid in ids:
        core = Srp(config, nodeid, ids, 0)
        process = TotemProcess(
            loop=loop,
            core=core,
            transport=UdpuTransport(nodeid=nodeid, endpoints=endpoints),
            protection=PacketCrypto(crypto, key, nodeid, ids, boot_id=nodeid),
            ring_seq=RingSeqFile(state_dir, nodeid),
            token_ms=config.token_ms,
            notify=lambda state: None,
            listener=None,
        )
        made.append((process, core))
    return made


def _visits(cores: list[Srp]) -> int:
    return sum(core.counters()["orf_token_rx"] for core in cores)


async def _measure(nodes: int, seconds: float, block: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as state_dir:
        return await _measure_in(state_dir, nodes, seconds, block)


async def _measure_in(state_dir: str, nodes: int, seconds: float, block: int) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    made = _processes(loop, nodes, block, state_dir)
    cores = [core for _, core in made]
    for process, _ in made:
        process.start()
    deadline = time.monotonic() + FORM_S
    while not all(core.state is State.OPERATIONAL for core in cores):
        if time.monotonic() > deadline:
            raise SystemExit(f"the ring did not form in {FORM_S} s")
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)  # past the first rotations and the JOIN traffic
    visits, cpu, wall = _visits(cores), time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    visits = _visits(cores) - visits
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    for process, _ in made:
        process.shutdown()
    return {
        "benchmark": "totemproc_idle_visit",
        "nodes": nodes,
        "python": sys.version.split()[0],
        "visits_per_s": round(visits / wall),
        "cpu_us_per_visit": round(cpu / visits * 1e6, 1),
        "rotation_us": round(wall / visits * nodes * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--block", type=int, default=77, help="use 127.0.BLOCK.x")
    args = parser.parse_args(argv)
    result = uvloop.run(_measure(args.nodes, args.seconds, args.block))
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
