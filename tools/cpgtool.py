"""corosync-cpgtool: list the local node's view of the CPG groups and their members.

Theory of operation. As Corosync's tool: one CPG iteration (ALL, or NAME_ONLY with ``-n``)
printed in Corosync's exact layout - a ``Group Name / PID / Node ID`` header, each group's
name on a line of its own when it changes, and one ``\\t\\t%10u\\t%10u (addresses)`` row per
member; ``-d CHAR`` switches to the machine format (``GRP_NAME,PID,NODEID`` rows, or with
``-n`` the names joined by the delimiter); ``-e`` prints names unescaped (otherwise printable
ASCII stays, a backslash is doubled and any other byte is ``\\xHH``). Corosync asks the cfg
service for a node's addresses; we read them from cmap (the nodelist's ``ringX_addr`` of the
entry with that nodeid, else ``runtime.members.<id>.ip``), and print none if that fails.
The exit code is 0, or 1 after an error, with Corosync's messages. Names are bytes, so the
output is written as bytes.
"""

from __future__ import annotations

import getopt
import re
import sys
from collections.abc import Callable, Sequence
from typing import BinaryIO, TextIO

from pycorosync.lib.cmap import CmapHandle
from pycorosync.lib.cmap import initialize as cmap_initialize
from pycorosync.lib.cpg import CpgHandle, initialize
from pycorosync.lib.cpg_wire import IterationDescription, IterationType
from pycorosync.lib.errors import CsError, NoSectionsError

__all__ = ["escape_name", "main"]

ConnectCpg = Callable[[], CpgHandle]
Addresses = Callable[[int], list[str]]

USAGE = """\
corosync-cpgtool [-d delimiter] [-e] [-n] [-h]

Display current process groups and their members.
    -d <delimiter>  use the given delimiter between fields (machine readable output)
    -e              don't escape unprintable characters in group names
    -n              display only the names of the groups
    -h              display this help
"""

_IP = re.compile(r"ip\(([^)]*)\)")


def escape_name(name: bytes) -> bytes:
    """Corosync's escaping: printable ASCII raw, a backslash doubled, the rest ``\\xHH``."""
    out = bytearray()
    for byte in name:
        if byte == 0x5C:
            out += b"\\\\"
        elif 0x20 <= byte < 0x7F:
            out.append(byte)
        else:
            out += b"\\x%02X" % byte
    return bytes(out)


def main(
    argv: Sequence[str] | None = None,
    *,
    connect: ConnectCpg | None = None,
    addresses: Addresses | None = None,
    out: BinaryIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout.buffer
    err = err or sys.stderr
    try:
        flags, _ = getopt.getopt(list(sys.argv[1:] if argv is None else argv), "d:enh")
    except getopt.GetoptError as error:
        err.write(f"{error}\n{USAGE}")
        return 1
    options = dict(flags)
    if "-h" in options:
        out.write(USAGE.encode())
        return 0
    delimiter = options["-d"][:1].encode() if "-d" in options else None
    escape = (lambda n: n) if "-e" in options else escape_name
    try:
        handle = (connect or _connect)()
    except CsError as error:
        err.write(f"Could not initialize corosync cpg API error {error.code}\n")
        return 1
    try:
        rows = _iterate(handle, "-n" in options, err)
    finally:
        handle.finalize()
    if rows is None:
        return 1
    if "-n" in options:
        out.write(_names(rows, escape, delimiter))
    else:
        out.write(_members(rows, escape, delimiter, addresses or _cmap_addresses))
    out.flush()
    return 0


def _connect() -> CpgHandle:
    return initialize(lambda *_: None, lambda *_: None)


def _iterate(handle: CpgHandle, names_only: bool, err: TextIO) -> list[IterationDescription] | None:
    kind = IterationType.NAME_ONLY if names_only else IterationType.ALL
    try:
        iteration = handle.iteration_initialize(kind)
    except CsError as error:
        err.write(f"Cannot initialize cpg iterator error {error.code}\n")
        return None
    rows = []
    while True:
        try:
            rows.append(iteration.next())
        except NoSectionsError:
            break
        except CsError as error:
            err.write(f"cpg iteration error {error.code}\n")
            return None
    iteration.finalize()
    return rows


def _names(
    rows: list[IterationDescription], escape: Callable[[bytes], bytes], delimiter: bytes | None
) -> bytes:
    names = [escape(row.group) for row in rows]
    if delimiter is None:
        return b"".join(name + b"\n" for name in names)
    return delimiter.join(names) + b"\n"


def _members(
    rows: list[IterationDescription],
    escape: Callable[[bytes], bytes],
    delimiter: bytes | None,
    addresses: Addresses,
) -> bytes:
    if delimiter is not None:
        d = delimiter
        lines = [b"GRP_NAME%sPID%sNODEID\n" % (d, d)]
        lines += [b"%s%s%d%s%d\n" % (escape(r.group), d, r.pid, d, r.nodeid) for r in rows]
        return b"".join(lines)
    lines = [b"Group Name\t%10s\t%10s\n" % (b"PID", b"Node ID")]
    previous: bytes | None = None
    for row in rows:
        if row.group != previous:
            lines.append(escape(row.group) + b"\n")
            previous = row.group
        found = addresses(row.nodeid)
        where = b" (%s)" % " ".join(found).encode() if found else b""
        lines.append(b"\t\t%10d\t%10d%s\n" % (row.pid, row.nodeid, where))
    return b"".join(lines)


def _cmap_addresses(nodeid: int) -> list[str]:
    try:
        cmap = cmap_initialize()
    except CsError:
        return []
    try:
        return _nodelist_addresses(cmap, nodeid) or _runtime_addresses(cmap, nodeid)
    finally:
        cmap.finalize()


def _nodelist_addresses(cmap: CmapHandle, nodeid: int) -> list[str]:
    for key, _, _ in cmap.iter_keys("nodelist.node."):
        if key.endswith(".nodeid") and _get_int(cmap, key) == nodeid:
            prefix = key.removesuffix("nodeid")
            return [
                str(cmap.get(name).value)
                for name, _, _ in cmap.iter_keys(prefix)
                if re.fullmatch(r"ring\d+_addr", name.removeprefix(prefix))
            ]
    return []


def _runtime_addresses(cmap: CmapHandle, nodeid: int) -> list[str]:
    try:
        text = str(cmap.get(f"runtime.members.{nodeid}.ip").value)
    except CsError:
        return []
    return _IP.findall(text)


def _get_int(cmap: CmapHandle, key: str) -> int | None:
    try:
        value = cmap.get(key).value
    except CsError:
        return None
    return value if isinstance(value, int) else None


if __name__ == "__main__":
    sys.exit(main())
