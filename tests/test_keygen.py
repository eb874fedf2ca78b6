"""corosync-keygen: Corosync's flags, output and exit codes, and an atomic key write."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycorosync.tools import keygen

BANNER = "Corosync Cluster Engine Authentication key generator.\n"
SIZE_ERROR = "corosync-keygen: Unsupported key size (supported <128,4096>)\n"


@pytest.fixture
def random_file(tmp_path: Path) -> Path:
    """A known random source: 8 KiB of a fixed, non-repeating pattern."""
    path = tmp_path / "random"
    path.write_bytes(bytes((i * 7919 + i // 256) % 256 for i in range(8192)))
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = keygen.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _temporaries(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(".")]


# --- the happy path -------------------------------------------------------------------------


def test_default_size_mode_content_and_output(
    tmp_path: Path, random_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "authkey"
    code, out, err = _run(capsys, "-k", str(key), "-r", str(random_file))
    assert code == 0
    assert err == ""
    assert out == (
        BANNER
        + f"Gathering 2048 bits for key from {random_file}.\n"
        + f"Writing corosync key to {key}.\n"
    )
    assert key.read_bytes() == random_file.read_bytes()[:256]
    assert stat.S_IMODE(key.stat().st_mode) == 0o400
    assert _temporaries(tmp_path) == []


@pytest.mark.parametrize("size", ["128", "1000", "4096", "+512", " 300"])
def test_size_option_sets_key_length(
    tmp_path: Path, random_file: Path, capsys: pytest.CaptureFixture[str], size: str
) -> None:
    key = tmp_path / "authkey"
    code, out, _ = _run(
        capsys, "--key-file", str(key), "--random-file", str(random_file), "-s", size
    )
    assert code == 0
    assert f"Gathering {int(size) * 8} bits" in out
    assert key.read_bytes() == random_file.read_bytes()[: int(size)]


def test_long_options_with_equals_abbreviations_and_less_secure(
    tmp_path: Path, random_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "authkey"
    code, _, _ = _run(capsys, f"--key={key}", f"--random={random_file}", "--si=200", "-l")
    assert code == 0
    assert len(key.read_bytes()) == 200


def test_default_random_source_is_urandom(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "authkey"
    code, out, _ = _run(capsys, "-k", str(key))
    assert code == 0
    assert "Gathering 2048 bits for key from /dev/urandom.\n" in out
    assert "Press keys" not in out
    first = key.read_bytes()
    assert _run(capsys, "-k", str(key))[0] == 0
    assert len(first) == 256
    assert key.read_bytes() != first


def test_dev_random_asks_for_entropy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "-k", str(tmp_path / "k"), "-r", "/dev/random", "-s", "128")
    assert code == 0
    assert "Press keys on your keyboard to generate entropy.\n" in out


def test_existing_key_is_replaced_and_keeps_its_owner(
    tmp_path: Path, random_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "authkey"
    key.write_bytes(b"old" * 100)
    key.chmod(0o400)
    if os.geteuid() == 0:
        os.chown(key, 4321, 4321)
    assert _run(capsys, "-k", str(key), "-r", str(random_file), "-s", "128")[0] == 0
    assert key.read_bytes() == random_file.read_bytes()[:128]
    assert stat.S_IMODE(key.stat().st_mode) == 0o400
    if os.geteuid() == 0:
        assert (key.stat().st_uid, key.stat().st_gid) == (4321, 4321)


def test_help_prints_usage_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "-h")
    assert code == 0
    assert out.startswith("Usage: corosync-keygen [-k <keyfile>]")
    for flag in ("--key-file", "--random-file", "--less-secure", "--size", "--help"):
        assert flag in out
    assert err == ""


# --- bad arguments: exit 1 ----------------------------------------------------------------


@pytest.mark.parametrize("size", ["127", "4097", "0", "-256", "abc", "", "12x", "0x100", "1e3"])
def test_unsupported_size(tmp_path: Path, capsys: pytest.CaptureFixture[str], size: str) -> None:
    key = tmp_path / "authkey"
    code, out, err = _run(capsys, "-k", str(key), "-s", size)
    assert (code, out, err) == (1, "", SIZE_ERROR)
    assert not key.exists()


@settings(max_examples=40)
@given(size=st.integers(min_value=-10_000, max_value=10_000))
def test_size_accepted_exactly_in_range(size: int) -> None:
    if 128 <= size <= 4096:
        assert keygen.parse_size(str(size)) == size
    else:
        with pytest.raises(keygen.KeygenError) as info:
            keygen.parse_size(str(size))
        assert info.value.exit_code == 1


@pytest.mark.parametrize(
    "args",
    [["-x"], ["--bogus"], ["-k"], ["--size"], ["-k", "/tmp/x", "stray"]],
    ids=["unknown-short", "unknown-long", "missing-value", "missing-long-value", "stray"],
)
def test_command_line_errors(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, err = _run(capsys, *args)
    assert code == 1
    assert out == "Error parsing command line options.\n"
    assert err.startswith("corosync-keygen: ")


def test_error_before_help_wins(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "-s", "5", "-h")
    assert (code, err) == (1, SIZE_ERROR)


# --- random source errors: exit 1 ---------------------------------------------------------


def test_missing_random_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "nope"
    code, out, err = _run(capsys, "-k", str(tmp_path / "k"), "-r", str(source))
    assert code == 1
    assert out == BANNER + f"Gathering 2048 bits for key from {source}.\n"
    assert err == "corosync-keygen: Failed to open random source: No such file or directory\n"
    assert list(tmp_path.iterdir()) == []


def test_short_random_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "short"
    source.write_bytes(b"x" * 100)
    key = tmp_path / "authkey"
    code, out, err = _run(capsys, "-k", str(key), "-r", str(source), "-s", "128")
    assert code == 1
    assert "Press keys on your keyboard to generate entropy (224 bits still needed).\n" in out
    assert err == f"corosync-keygen: Unexpected end of {source}\n"
    assert not key.exists()


def test_unreadable_random_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "-k", str(tmp_path / "k"), "-r", str(tmp_path))
    assert code == 1
    assert err == f"corosync-keygen: Could not read {tmp_path}: Is a directory\n"


# --- key file errors: exit 2..5, old key intact, no temporary left --------------------------


@pytest.fixture
def old_key(tmp_path: Path) -> Path:
    key = tmp_path / "authkey"
    key.write_bytes(b"the old key " * 20)
    key.chmod(0o400)
    return key


def _assert_untouched(old_key: Path) -> None:
    assert old_key.read_bytes() == b"the old key " * 20
    assert stat.S_IMODE(old_key.stat().st_mode) == 0o400
    assert _temporaries(old_key.parent) == []


def test_key_directory_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "no" / "authkey"
    code, _, err = _run(capsys, "-k", str(key))
    assert code == 2
    assert err == f"corosync-keygen: Could not create {key}: No such file or directory\n"


def test_key_parent_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    key = tmp_path / "file" / "authkey"
    code, _, err = _run(capsys, "-k", str(key))
    assert code == 2
    assert err == f"corosync-keygen: Could not create {key}: Not a directory\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_key_directory_unwritable(
    tmp_path: Path, old_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp_path.chmod(0o500)
    try:
        code, _, err = _run(capsys, "-k", str(old_key))
    finally:
        tmp_path.chmod(0o700)
    assert code == 2
    assert err == f"corosync-keygen: Could not create {old_key}: Permission denied\n"
    _assert_untouched(old_key)


def test_key_directory_that_refuses_new_files(capsys: pytest.CaptureFixture[str]) -> None:
    """sysfs refuses to create files even for root, so this runs whoever runs the suite."""
    try:
        os.close(os.open("/sys/.corosync-keygen-probe", os.O_CREAT | os.O_WRONLY, 0o600))
    except PermissionError:
        pass
    except OSError as exc:
        pytest.skip(f"/sys does not refuse new files with EACCES here ({exc})")
    else:
        os.unlink("/sys/.corosync-keygen-probe")
        pytest.skip("/sys accepts new files here")
    code, _, err = _run(capsys, "-k", "/sys/authkey", "-s", "128")
    assert code == 2
    assert err == "corosync-keygen: Could not create /sys/authkey: Permission denied\n"


_REAL_CLOSE = os.close


class _FailOn:
    """Wraps an ``os`` call so that it fails for the key's temporary only (found by its fd's
    path), letting every other caller in the process through."""

    def __init__(self, real: Callable[..., Any], directory: Path, error: int) -> None:
        self.real = real
        self.directory = directory
        self.error = error
        self.failed = False

    def _is_temporary(self, fd_or_path: object) -> bool:
        if isinstance(fd_or_path, int):
            try:
                target = os.readlink(f"/proc/self/fd/{fd_or_path}")
            except OSError:
                return False
        else:
            target = os.fspath(fd_or_path)  # type: ignore[arg-type]
        return Path(target).parent == self.directory and Path(target).name.startswith(".")

    def __call__(self, first: object, *rest: Any) -> Any:
        if self._is_temporary(first):
            self.failed = True
            if self.real is _REAL_CLOSE:
                self.real(first)  # Linux releases the descriptor even when close fails
            raise OSError(self.error, os.strerror(self.error))
        return self.real(first, *rest)


@pytest.fixture
def fail_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[str, int], _FailOn]:
    def install(name: str, error: int) -> _FailOn:
        wrapper = _FailOn(getattr(os, name), tmp_path, error)
        monkeypatch.setattr(os, name, wrapper)
        return wrapper

    return install


_MID_WAY_FAILURES = {
    "fchmod": (errno.EPERM, 3, "Failed to set key file permissions to 0400: {}"),
    "write": (errno.ENOSPC, 4, "Could not write {key}: {}"),
    "fsync": (errno.EIO, 4, "Could not write {key}: {}"),
    "close": (errno.EIO, 5, "Could not close {key}: {}"),
    "replace": (errno.EXDEV, 2, "Could not create {key}: {}"),
}


@pytest.mark.parametrize("call", sorted(_MID_WAY_FAILURES))
def test_failure_mid_way_keeps_the_old_key(
    old_key: Path,
    random_file: Path,
    fail_on: Callable[[str, int], _FailOn],
    capsys: pytest.CaptureFixture[str],
    call: str,
) -> None:
    error, code, message = _MID_WAY_FAILURES[call]
    wrapper = fail_on(call, error)
    result = _run(capsys, "-k", str(old_key), "-r", str(random_file))
    assert wrapper.failed
    expected = message.format(os.strerror(error), key=old_key)
    assert result[0] == code
    assert result[2] == f"corosync-keygen: {expected}\n"
    _assert_untouched(old_key)


def test_write_that_stops_half_way_keeps_the_old_key(
    old_key: Path,
    random_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The first write lands half the key, the second fails: the old key must survive."""
    real_write = os.write
    calls: list[int] = []

    def half_then_fail(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(old_key.parent / ".")):
            calls.append(len(data))
            if len(calls) > 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, bytes(data)[: len(data) // 2])
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_fail)
    code, _, err = _run(capsys, "-k", str(old_key), "-r", str(random_file))
    assert calls == [256, 128]
    assert code == 4
    assert err == f"corosync-keygen: Could not write {old_key}: No space left on device\n"
    _assert_untouched(old_key)


def test_interrupt_mid_way_removes_the_temporary(
    old_key: Path,
    random_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        keygen.main(["-k", str(old_key), "-r", str(random_file)])
    _assert_untouched(old_key)


# --- the installed command ----------------------------------------------------------------


def test_console_script_points_at_main() -> None:
    (script,) = entry_points(group="console_scripts", name="corosync-keygen")
    assert script.load() is keygen.main


def test_runs_as_a_program(tmp_path: Path, random_file: Path) -> None:
    key = tmp_path / "authkey"
    args = [sys.executable, "-m", "pycorosync.tools.keygen", "-k", str(key), "-r", str(random_file)]
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(BANNER)
    assert key.read_bytes() == random_file.read_bytes()[:256]
    bad = subprocess.run(
        [*args[:3], "-s", "1"], capture_output=True, text=True, check=False, timeout=60
    )
    assert (bad.returncode, bad.stderr) == (1, SIZE_ERROR)
