"""corosync-cmapctl: read, write, delete and watch the keys of the local node's cmap.

Theory of operation. The tool follows Corosync's: one action chosen by the flags (the last
action flag wins, as in Corosync), applied to every operand in turn; with no action it
prints the keys under each operand prefix, or every key when there is none. Output lines
and error messages are Corosync's (see :mod:`pycorosync.tools.cmapctl_values` for the value
text); the exit code is 0, or 1 after any failure.

It connects through :func:`pycorosync.lib.cmap.initialize`, retrying ``CS_ERR_TRY_AGAIN``
ten times a second apart as Corosync's tool does. Tracking (``-t`` / ``-T``) prints every
change until the user types ``q`` or closes stdin, polling stdin and the cmap handle's fd.
``main`` takes the connection, the streams and the sleep as arguments so that tests drive
it against an in-process engine.
"""

from __future__ import annotations

import getopt
import os
import select
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import BinaryIO, TextIO

from pycorosync.lib.cmap import CmapHandle, DispatchFlags, initialize
from pycorosync.lib.cmap_types import CmapEntry, TrackEvent, TrackFlags, ValueType
from pycorosync.lib.cmap_wire import CMAP_MAP_DEFAULT, CMAP_MAP_STATS
from pycorosync.lib.errors import CsError, TryAgainError, cs_strerror
from pycorosync.tools.cmapctl_values import ValueTextError, format_key_line, parse_value

__all__ = ["main"]

Connect = Callable[[int], CmapHandle]
"""Opens a handle on the given map (``cmap_initialize_map``)."""

INIT_TRIES = 10
_MAPS = {"default": CMAP_MAP_DEFAULT, "icmap": CMAP_MAP_DEFAULT, "stats": CMAP_MAP_STATS}
_CLEARABLE = ("knet", "totem", "ipc", "schedmiss", "all")
_TRACK_ALL = TrackFlags.ADD | TrackFlags.DELETE | TrackFlags.MODIFY
_EVENT_PREFIX = {
    TrackEvent.ADD: "create> ",
    TrackEvent.DELETE: "delete> ",
    TrackEvent.MODIFY: "modify> ",
}

USAGE = """\
usage:  corosync-cmapctl [-b] [-DdghsTtp] [-C knet|totem|ipc|schedmiss|all] [-m map] [params...]

    -b show binary values

Set key:
    corosync-cmapctl -s key_name type value
    corosync-cmapctl -s key_name bin file ('-' for stdin)

    where type is one of ([i|u][8|16|32|64] | flt | dbl | str | bin)

Load settings from a file:
    corosync-cmapctl -p filename

    the format of the file is:
    [^[^]]<key_name>[ <type> <value>]
    Keys prefixed with single caret ('^') are deleted (see -d).
    Keys (actually prefixes) prefixed with double caret ('^^') are deleted by prefix (see -D).
    <type> and <value> are optional (not checked) in above cases.
    Other keys are set (see -s) so both <type> and <value> are required.

Delete key:
    corosync-cmapctl -d key_name...

Delete multiple keys with prefix:
    corosync-cmapctl -D key_prefix...

Get key:
    corosync-cmapctl [-b] -g key_name...

Quiet mode (only value printed, no key name or type):
    corosync-cmapctl -q -g key_name

Display all keys:
    corosync-cmapctl [-b]

Display keys with prefix key_name:
    corosync-cmapctl [-b] key_name...

Track changes on keys with key_name:
    corosync-cmapctl [-b] -t key_name

Track changes on keys with key prefix:
    corosync-cmapctl [-b] -T key_prefix

Clear stats:
    corosync-cmapctl -C [knet|totem|ipc|schedmiss|all]

Select map: (default is 'icmap')
    corosync-cmapctl -m [icmap|stats]
"""


class Action(Enum):
    PRINT_PREFIX = "print"
    GET = "get"
    SET = "set"
    DELETE = "delete"
    DELETE_PREFIX = "delete-prefix"
    TRACK = "track"
    TRACK_PREFIX = "track-prefix"
    LOAD = "load"
    CLEAR_STATS = "clear"


_ACTION_FLAGS = {
    "-g": Action.GET,
    "-s": Action.SET,
    "-d": Action.DELETE,
    "-D": Action.DELETE_PREFIX,
    "-t": Action.TRACK,
    "-T": Action.TRACK_PREFIX,
}


class _ExitError(Exception):
    """Stop with an exit code (the message, if any, is already printed)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class _Options:
    action: Action = Action.PRINT_PREFIX
    cmap_map: int = CMAP_MAP_DEFAULT
    show_binary: bool = False
    quiet: bool = False
    load_file: str = ""
    clear: str = ""
    operands: list[str] = field(default_factory=list)


@dataclass
class _Tool:
    cmap: CmapHandle
    options: _Options
    out: TextIO
    err: TextIO
    stdin: TextIO
    failed: bool = False

    def line(self, key: str, entry: CmapEntry) -> str:
        show, quiet = self.options.show_binary, self.options.quiet
        return format_key_line(key, entry, show_binary=show, quiet=quiet)

    def fail(self, message: str) -> None:
        print(message, file=self.err)
        self.failed = True


def main(
    argv: Sequence[str] | None = None,
    *,
    connect: Connect | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        options = _parse(list(sys.argv[1:] if argv is None else argv), out, err)
        cmap = _connect(connect or _initialize, options.cmap_map, err, sleep)
        tool = _Tool(cmap, options, out, err, stdin or sys.stdin)
        try:
            _run(tool)
        finally:
            cmap.finalize()
    except _ExitError as stop:
        return stop.code
    return 1 if tool.failed else 0


def _initialize(cmap_map: int) -> CmapHandle:
    return initialize(cmap_map=cmap_map)


def _parse(argv: list[str], out: TextIO, err: TextIO) -> _Options:
    try:
        flags, operands = getopt.gnu_getopt(argv, "m:hgsdDtTbp:qC:")
    except getopt.GetoptError as error:
        # glibc's getopt words; Corosync's tool then just exits 1.
        problem = "option requires an argument" if "requires" in error.msg else "invalid option"
        print(f"corosync-cmapctl: {problem} -- '{error.opt}'", file=err)
        raise _ExitError(1) from None
    options = _Options(operands=operands)
    for flag, value in flags:
        _apply_flag(options, flag, value, out, err)
    return options


def _apply_flag(options: _Options, flag: str, value: str, out: TextIO, err: TextIO) -> None:
    if flag == "-h":
        print(USAGE, end="", file=out)
        raise _ExitError(0)
    if flag in _ACTION_FLAGS:
        options.action = _ACTION_FLAGS[flag]
    elif flag == "-b":
        options.show_binary = True
    elif flag == "-q":
        options.quiet = True
    elif flag == "-p":
        options.action, options.load_file = Action.LOAD, value
    elif flag == "-m":
        if value not in _MAPS:
            print("invalid map name, must be 'default', 'icmap' or 'stats'", file=err)
            raise _ExitError(1)
        options.cmap_map = _MAPS[value]
    elif flag == "-C":
        if value not in _CLEARABLE:
            print("Invalid clear option, must be one of " + ", ".join(_CLEARABLE), file=err)
            raise _ExitError(1)
        options.action, options.clear, options.cmap_map = Action.CLEAR_STATS, value, CMAP_MAP_STATS


def _connect(
    connect: Connect, cmap_map: int, err: TextIO, sleep: Callable[[float], None]
) -> CmapHandle:
    for attempt in range(INIT_TRIES):
        try:
            return connect(cmap_map)
        except TryAgainError as error:
            last: CsError = error
            if attempt + 1 < INIT_TRIES:
                sleep(1.0)
        except CsError as error:
            last = error
            break
    print(f"Failed to initialize the cmap API. Error {_name(last)}", file=err)
    raise _ExitError(1)


def _run(tool: _Tool) -> None:
    action, operands = tool.options.action, tool.options.operands
    if action is Action.PRINT_PREFIX:
        for prefix in operands or [""]:
            _print_prefix(tool, prefix)
    elif action is Action.GET:
        for key in operands:
            _print_key(tool, key)
    elif action is Action.SET:
        if len(operands) < 3:
            tool.fail("At least 3 parameters are expected for set")
            raise _ExitError(1)
        _set_key(tool, operands[0], operands[1], operands[2])
    elif action is Action.DELETE:
        for key in operands:
            _delete_key(tool, key)
    elif action is Action.DELETE_PREFIX:
        for prefix in operands:
            _delete_prefix(tool, prefix)
    elif action in (Action.TRACK, Action.TRACK_PREFIX):
        _track(tool, prefix=action is Action.TRACK_PREFIX)
    elif action is Action.LOAD:
        _load_file(tool, tool.options.load_file)
    else:
        _set_key(tool, f"stats.clear.{tool.options.clear}", "u32", "1")


def _print_key(tool: _Tool, key: str) -> None:
    try:
        entry = tool.cmap.get(key)
    except CsError as error:
        tool.fail(f"Can't get key {key}. Error {_name(error)}")
        return
    print(tool.line(key, entry), file=tool.out)


def _print_prefix(tool: _Tool, prefix: str) -> None:
    found = False
    for key, _, _ in tool.cmap.iter_keys(prefix):
        found = True
        _print_key(tool, key)  # a second GET per key, as Corosync's tool does
    if not found:
        tool.failed = True  # Corosync's tool says nothing, but exits 1


def _set_key(tool: _Tool, key: str, type_name: str, text: str) -> None:
    try:
        vtype = ValueType.from_tool_name(type_name)
    except ValueError:
        tool.fail(f"Unknown type {type_name}")
        raise _ExitError(1) from None
    try:
        value = _read_binary(tool, text) if vtype is ValueType.BINARY else parse_value(vtype, text)
    except ValueTextError as error:
        tool.fail(str(error))
        raise _ExitError(1) from None
    try:
        tool.cmap.set(key, value, vtype)
    except CsError as error:
        tool.fail(f"Failed to set key {key}. Error {_name(error)}")
        raise _ExitError(1) from None


def _read_binary(tool: _Tool, source: str) -> bytes:
    try:
        if source == "-":
            stream: BinaryIO = tool.stdin.buffer
            return stream.read()
        with open(source, "rb") as file:
            return file.read()
    except OSError as error:
        tool.fail(f"Can't open {source}: {error.strerror}")
        raise _ExitError(1) from None


def _delete_key(tool: _Tool, key: str) -> None:
    try:
        tool.cmap.delete(key)
    except CsError as error:
        tool.fail(f"Can't delete key {key}. Error {_name(error)}")


def _delete_prefix(tool: _Tool, prefix: str) -> None:
    for key in [key for key, _, _ in tool.cmap.iter_keys(prefix)]:
        _delete_key(tool, key)


def _load_file(tool: _Tool, path: str) -> None:
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError as error:
        tool.fail(f"Can't open file {path}: {error.strerror}")
        raise _ExitError(1) from None
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("^^"):
            _delete_prefix(tool, line[2:].split()[0] if line[2:].split() else "")
        elif line.startswith("^"):
            _delete_key(tool, line[1:].split()[0] if line[1:].split() else "")
        else:
            fields = line.split(None, 2)
            if len(fields) < 3:
                tool.fail(f"Invalid line in {path}: {raw}")
                raise _ExitError(1)
            _set_key(tool, *fields)


def _track(tool: _Tool, *, prefix: bool) -> None:
    flags = _TRACK_ALL | TrackFlags.PREFIX if prefix else _TRACK_ALL

    def on_change(
        event: TrackEvent, key: str, new: CmapEntry | None, old: CmapEntry | None
    ) -> None:
        entry = old if event is TrackEvent.DELETE else new
        assert entry is not None
        print(_EVENT_PREFIX[event] + tool.line(key, entry), file=tool.out, flush=True)

    for key in tool.options.operands:
        try:
            tool.cmap.track_add(key, flags, on_change)
        except CsError as error:
            tool.fail(f"Failed to add tracking function. Error {_name(error)}")
            raise _ExitError(1) from None
    print('Type "q" to finish', file=tool.out, flush=True)
    _wait_for_quit(tool)


def _wait_for_quit(tool: _Tool) -> None:
    stdin_fd, cmap_fd = tool.stdin.fileno(), tool.cmap.fd_get()
    pending = b""
    while True:
        ready, _, _ = select.select([stdin_fd, cmap_fd], [], [])
        if cmap_fd in ready:
            tool.cmap.dispatch(DispatchFlags.ALL)
        if stdin_fd in ready:
            chunk = os.read(stdin_fd, 4096)
            if not chunk:
                return  # EOF
            *lines, pending = (pending + chunk).split(b"\n")
            if any(line.strip() == b"q" for line in lines):
                return


def _name(error: CsError) -> str:
    return cs_strerror(error.code)


if __name__ == "__main__":
    sys.exit(main())
