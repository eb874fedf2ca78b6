"""``corosync-keygen``: write a new authkey for the cluster's encrypted traffic.

Same flags, output lines and exit codes as Corosync 3.x's tool (1 bad arguments or random
source, 2 create, 3 chmod, 4 write, 5 close), with one deliberate difference: the key is written
atomically. Corosync truncates the key file in place, so a failure part-way leaves a short or
empty key behind; we write a temporary file in the same directory, fsync it, make it 0400 and
rename it over the key, so the key path only ever holds the old key or a complete new one. The
temporary is removed on any failure.
"""

from __future__ import annotations

import contextlib
import errno
import getopt
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

PROG = "corosync-keygen"
DEFAULT_KEY_FILE = "/etc/corosync/authkey"
DEFAULT_RANDOM_FILE = "/dev/urandom"
DEFAULT_KEY_SIZE = 256
MIN_KEY_SIZE = 128
MAX_KEY_SIZE = 4096
KEY_MODE = 0o400

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_CREATE = 2
EXIT_CHMOD = 3
EXIT_WRITE = 4
EXIT_CLOSE = 5

USAGE = f"""\
Usage: {PROG} [-k <keyfile>] [-r <randomfile>] [-s <size>] [-l] [-h]
     -k / --key-file=<filename> -  Write the key to <filename>
            instead of the default {DEFAULT_KEY_FILE}.
     -r / --random-file=<filename> -  Source of random bytes. Default is
            {DEFAULT_RANDOM_FILE}; /dev/random may be requested (it may
            need input for entropy).
     -l / --less-secure -  Ignored; kept for compatibility.
     -s / --size=<bytes> -  Length of the key in bytes, {MIN_KEY_SIZE} to {MAX_KEY_SIZE}
            (default {DEFAULT_KEY_SIZE}).
     -h / --help -  Print this help.
"""

_SHORT_OPTIONS = "k:r:s:lh"
_LONG_OPTIONS = ["key-file=", "random-file=", "size=", "less-secure", "help"]
# strtoll(…, 10) with the whole string consumed: optional leading space and sign, digits.
_DECIMAL = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")


class KeygenError(Exception):
    """A failure that ends the tool with ``exit_code`` after printing ``message``."""

    def __init__(self, exit_code: int, message: str, stdout_line: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.stdout_line = stdout_line
        """Printed on stdout before ``message`` goes to stderr, as Corosync does for bad
        options."""


@dataclass(frozen=True, slots=True)
class Options:
    key_file: str = DEFAULT_KEY_FILE
    random_file: str = DEFAULT_RANDOM_FILE
    size: int = DEFAULT_KEY_SIZE


def _os_failure(exit_code: int, what: str, exc: OSError) -> KeygenError:
    """Corosync's ``err()`` style: ``what: strerror``."""
    reason = exc.strerror or os.strerror(exc.errno or errno.EIO)
    return KeygenError(exit_code, f"{what}: {reason}")


def parse_size(text: str) -> int:
    if _DECIMAL.fullmatch(text) is not None:
        size = int(text)
        if MIN_KEY_SIZE <= size <= MAX_KEY_SIZE:
            return size
    raise KeygenError(
        EXIT_BAD_INPUT, f"Unsupported key size (supported <{MIN_KEY_SIZE},{MAX_KEY_SIZE}>)"
    )


def parse_args(argv: Sequence[str]) -> Options | None:
    """The options, or None for ``-h``; read in order as getopt_long does, so an error
    before ``-h`` wins over it."""
    try:
        pairs, rest = getopt.gnu_getopt(list(argv), _SHORT_OPTIONS, _LONG_OPTIONS)
    except getopt.GetoptError as exc:
        raise _parse_error(str(exc)) from None
    options = Options()
    for flag, value in pairs:
        if flag in ("-h", "--help"):
            return None
        if flag in ("-k", "--key-file"):
            options = replace(options, key_file=value)
        elif flag in ("-r", "--random-file"):
            options = replace(options, random_file=value)
        elif flag in ("-s", "--size"):
            options = replace(options, size=parse_size(value))
    if rest:
        # getopt_long would silently ignore these; a stray path here is almost always a
        # mistyped -k, and ignoring it would overwrite the default key.
        raise _parse_error(f"unexpected argument '{rest[0]}'")
    return options


def _parse_error(detail: str) -> KeygenError:
    return KeygenError(EXIT_BAD_INPUT, detail, "Error parsing command line options.")


def read_random(path: str, size: int) -> bytes:
    """Exactly ``size`` bytes from ``path``, reading as Corosync does (and saying so)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise _os_failure(EXIT_BAD_INPUT, "Failed to open random source", exc) from None
    if path == "/dev/random":
        print("Press keys on your keyboard to generate entropy.", flush=True)
    try:
        return _read_exactly(fd, path, size)
    finally:
        os.close(fd)


def _read_exactly(fd: int, path: str, size: int) -> bytes:
    chunks: list[bytes] = []
    missing = size
    while missing > 0:
        try:
            chunk = os.read(fd, missing)
        except OSError as exc:
            raise _os_failure(EXIT_BAD_INPUT, f"Could not read {path}", exc) from None
        if not chunk:
            raise KeygenError(EXIT_BAD_INPUT, f"Unexpected end of {path}")
        chunks.append(chunk)
        missing -= len(chunk)
        if missing:
            print(
                "Press keys on your keyboard to generate entropy "
                f"({missing * 8} bits still needed).",
                flush=True,
            )
    return b"".join(chunks)


def write_key_atomically(key_file: str, key: bytes) -> None:
    """Replace ``key_file`` by a 0400 file holding ``key``, or leave it untouched."""
    target = Path(key_file)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise _os_failure(EXIT_CREATE, f"Could not create {key_file}", exc) from None
    renamed = False
    try:
        _fill_and_close(fd, key_file, key, target)
        try:
            os.replace(temp, target)
        except OSError as exc:
            raise _os_failure(EXIT_CREATE, f"Could not create {key_file}", exc) from None
        renamed = True
        _sync_directory(target.parent)
    finally:
        if not renamed:
            with contextlib.suppress(OSError):
                os.unlink(temp)


def _fill_and_close(fd: int, key_file: str, key: bytes, target: Path) -> None:
    """chmod, write and fsync the temporary, then close it (exactly once, whatever happens)."""
    try:
        _keep_owner_of(target, fd)
        try:
            os.fchmod(fd, KEY_MODE)
        except OSError as exc:
            raise _os_failure(
                EXIT_CHMOD, "Failed to set key file permissions to 0400", exc
            ) from None
        print(f"Writing corosync key to {key_file}.", flush=True)
        try:
            _write_all(fd, key)
            os.fsync(fd)
        except OSError as exc:
            raise _os_failure(EXIT_WRITE, f"Could not write {key_file}", exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    try:
        os.close(fd)
    except OSError as exc:
        raise _os_failure(EXIT_CLOSE, f"Could not close {key_file}", exc) from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[written:]


def _keep_owner_of(target: Path, fd: int) -> None:
    """Corosync rewrites an existing key in place, keeping its owner; so do we (when allowed)."""
    try:
        old = os.stat(target)
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.fchown(fd, old.st_uid, old.st_gid)


def _sync_directory(directory: Path) -> None:
    """Make the rename durable; a filesystem that cannot fsync a directory is not an error."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def run(argv: Sequence[str]) -> int:
    options = parse_args(argv)
    if options is None:
        print(USAGE, flush=True)
        return EXIT_OK
    print("Corosync Cluster Engine Authentication key generator.", flush=True)
    print(f"Gathering {options.size * 8} bits for key from {options.random_file}.", flush=True)
    key = read_random(options.random_file, options.size)
    write_key_atomically(options.key_file, key)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except KeygenError as exc:
        if exc.stdout_line is not None:
            print(exc.stdout_line)
        sys.stdout.flush()
        print(f"{PROG}: {exc.message}", file=sys.stderr, flush=True)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
