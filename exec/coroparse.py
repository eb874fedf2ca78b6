"""corosync.conf: Corosync's grammar, and its sections mapped onto cmap keys.

Theory of operation
-------------------
Reading is done in two layers, as in Corosync's ``coroparse.c``; :class:`_Grammar` is the
first, a mapper (:class:`_MainMapper` for corosync.conf, :class:`_UidgidMapper` for the files
of ``uidgid.d/``) the second.

**The grammar** is line based. A line holds at most 510 bytes before its newline (Corosync reads
into a 512-byte buffer): a longer one is ``Line too long``. One trailing ``\\r`` goes, then
trailing spaces, tabs and no-break spaces (U+00A0). A line that is then empty, or whose first
non-blank character is ``#``, is skipped; there are no trailing comments (``key: v # x`` has the
value ``v # x``), no quoting, no escapes, no includes and no continuation lines. The others are
classified in this order, which is why a value can never contain ``{`` but may contain ``}`` and
``:``:

1. a line with a ``{`` opens a section named by the text before it (trimmed, trailing ``:``
   allowed); anything after the ``{`` is an error, and so is an empty name;
2. else a line with a ``:`` is ``key: value``, split at the *first* colon (so IPv6 addresses
   work); the key may not be empty;
3. else a line with a ``}`` must be exactly ``}`` and closes the innermost section;
4. anything else is an error.

Section names and the key joined by dots form the key path; a path that would reach 255 bytes is
refused. End of file inside a section is ``Missing closing brace``. Every error carries the file
and the line, and reads ``FILE:LINE: reason`` with Corosync's reason text.

**The mapper** receives section starts, items and section ends and decides which cmap keys they
become. Most keys are simply ``<section path>.<key>`` and strings. The exceptions, each handled
by a small collector that writes its keys when its section closes, are: ``totem.interface``
(written as ``totem.interface.<linknumber>.<key>``), ``nodelist.node`` (numbered 0, 1, 2... in
file order), ``logging.logger_subsys`` (keyed by its ``subsys``), the legacy
``logging.logging_daemon``, and ``uidgid`` (``uidgid.config.uid.<uid>`` with names resolved
through the password and group databases). Which keys are integers, and which enumerations are
checked while reading, is in :mod:`pycorosync.exec.conftypes`. Unknown sections and keys are
kept as strings: real configurations carry keys Corosync never reads (pcs's
``totem.cluster_uuid``). A key is stored only if it is a valid cmap key name.

Where we differ from Corosync, on purpose:

* a second ``nodelist`` section continues the node numbering instead of restarting it at 0
  (which would silently merge its nodes' keys into the first ones');
* a line containing a NUL byte is refused with its own message (Corosync's ``fgets``/``strlen``
  turns it into a misleading ``Line too long``);
* a line that is not valid UTF-8 is read as Latin-1, so that no byte is ever lost;
* files in ``uidgid.d/`` are read in name order (Corosync uses directory order), and one that
  cannot be read is reported as a warning rather than skipped silently;
* ``pload { count, size }`` are stored as u32, as the reference notes list them.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, auto
from pathlib import Path
from typing import Protocol

from pycorosync.exec import conftypes
from pycorosync.exec.config_error import ConfigError
from pycorosync.lib.cmap_types import CmapValue, ValueType
from pycorosync.lib.errors import CsErrorCode, cs_strerror

MAX_LINE_BYTES = 510
"""Longest line Corosync accepts, newline excluded (its buffer is 512 bytes)."""

KEYNAME_MAXLEN = 255
"""Corosync's ``ICMAP_KEYNAME_MAXLEN``."""

_WHITESPACE = " \t\u00a0"
_KEY_NAME = re.compile(rf"[A-Za-z0-9._/:-]{{3,{KEYNAME_MAXLEN}}}")
_U32_MAX = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One cmap key read from the configuration."""

    key: str
    value: CmapValue
    vtype: ValueType
    file: str
    line: int | None
    """The line the value came from; None for a value the loader derived (a generated nodeid)."""


class ConfigSink(Protocol):
    """Whatever takes the keys: the cmap store, or a plain dict in a test."""

    def set(self, key: str, value: CmapValue, vtype: ValueType) -> None: ...


class ParsedConfig:
    """Every key of a corosync.conf (and its ``uidgid.d/``), in file order.

    A key given twice keeps its first position and its last value, as a map would.
    """

    def __init__(
        self,
        file: str,
        entries: Iterable[ConfigEntry],
        *,
        anchors: Mapping[str, tuple[str, int]] | None = None,
        warnings: Sequence[str] = (),
    ) -> None:
        self.file = file
        self._entries = {entry.key: entry for entry in entries}
        self._anchors = dict(anchors or {})
        self.warnings: tuple[str, ...] = tuple(warnings)

    def __iter__(self) -> Iterator[ConfigEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def entry(self, key: str) -> ConfigEntry | None:
        return self._entries.get(key)

    def get(self, key: str) -> CmapValue | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.value

    def get_str(self, key: str) -> str | None:
        """The string value of ``key``; None when absent."""
        value = self.get(key)
        if value is None or isinstance(value, str):
            return value
        raise ConfigError(f'Value of key "{key}" is expected to be a string', key=key)

    def get_int(self, key: str) -> int | None:
        """The integer value of ``key``; None when absent."""
        value = self.get(key)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise ConfigError(f'Value of key "{key}" is expected to be an integer', key=key)

    def under(self, prefix: str) -> list[ConfigEntry]:
        """The entries whose key starts with ``prefix``, in file order."""
        return [entry for key, entry in self._entries.items() if key.startswith(prefix)]

    def where(self, key: str) -> tuple[str, int | None]:
        """The file and line that ``key`` comes from.

        A key that was not read itself (``nodelist.node.2``, ``totem.interface.1``) is placed at
        the opening of the section it stands for.
        """
        entry = self._entries.get(key)
        if entry is not None and entry.line is not None:
            return entry.file, entry.line
        best = ""
        for anchor in self._anchors:
            covers = key == anchor or key.startswith(anchor + ".")
            if covers and len(anchor) > len(best):
                best = anchor
        if best:
            return self._anchors[best]
        return (entry.file if entry is not None else self.file), None

    def line_of(self, key: str) -> int | None:
        return self.where(key)[1]

    def locate(self, error: ConfigError) -> ConfigError:
        """``error`` placed at the line of its key (or at the file when it names none)."""
        if error.file is not None:
            return error
        if error.key is None:
            return error.located(self.file, None)
        return error.located(*self.where(error.key))

    def load_into(self, sink: ConfigSink) -> None:
        for entry in self._entries.values():
            sink.set(entry.key, entry.value, entry.vtype)


def parse_config_file(path: str | os.PathLike[str], *, read_uidgid_d: bool = True) -> ParsedConfig:
    """Read a corosync.conf and, beside it, the files of ``uidgid.d/``."""
    file = os.fspath(path)
    try:
        data = Path(file).read_bytes()
    except OSError as error:
        raise ConfigError(f"Can't read file {file}: {error.strerror}") from None
    mapper = _MainMapper(file)
    _Grammar(file, mapper).run(data)
    entries, anchors, warnings = mapper.entries, mapper.anchors, mapper.warnings
    if read_uidgid_d:
        directory = Path(file).parent / "uidgid.d"
        entries = {**entries, **_read_uidgid_dir(directory, warnings)}
    return ParsedConfig(file, entries.values(), anchors=anchors, warnings=warnings)


def parse_config_text(data: str | bytes, *, file: str = "corosync.conf") -> ParsedConfig:
    """Parse corosync.conf text that is not (or not yet) a file; ``file`` names it in errors."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    mapper = _MainMapper(file)
    _Grammar(file, mapper).run(raw)
    return ParsedConfig(
        file, mapper.entries.values(), anchors=mapper.anchors, warnings=mapper.warnings
    )


def parse_uidgid_text(data: str | bytes, *, file: str) -> list[ConfigEntry]:
    """Parse one ``uidgid.d/`` file: only ``uidgid { uid: ...  gid: ... }`` is allowed."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    mapper = _UidgidMapper(file)
    _Grammar(file, mapper).run(raw)
    return list(mapper.entries.values())


def _read_uidgid_dir(directory: Path, warnings: list[str]) -> dict[str, ConfigEntry]:
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as error:
        warnings.append(f"Can't read directory {directory}: {error.strerror}")
        return {}
    entries: dict[str, ConfigEntry] = {}
    for name in names:
        path = directory / name
        try:
            if not stat.S_ISREG(path.stat().st_mode):
                continue
            data = path.read_bytes()
        except OSError as error:
            warnings.append(f"Can't read file {path}: {error.strerror}")
            continue
        for entry in parse_uidgid_text(data, file=str(path)):
            entries[entry.key] = entry
    return entries


# --- the grammar -----------------------------------------------------------------------------


class _Mapper(Protocol):
    def section_start(self, path: str, line: int) -> None: ...

    def item(self, path: str, key: str, value: str, line: int) -> None: ...

    def section_end(self, path: str, line: int) -> None: ...


class _Grammar:
    """Corosync's line grammar; drives a mapper with section starts, items and section ends."""

    def __init__(self, file: str, mapper: _Mapper) -> None:
        self._file = file
        self._mapper = mapper
        self._paths: list[str] = []

    def run(self, data: bytes) -> None:
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()  # the newline that ends the last line does not start another
        for number, raw in enumerate(lines, start=1):
            try:
                self._line(raw, number)
            except ConfigError as error:
                raise error.located(self._file, number) from None
        if self._paths:
            raise ConfigError("Missing closing brace", self._file, len(lines))

    def _line(self, raw: bytes, number: int) -> None:
        text = _clean_line(raw)
        if text is None:
            return
        if "{" in text:
            self._open(text, number)
        elif ":" in text:
            self._item(text, number)
        elif "}" in text:
            self._close(text, number)
        else:
            raise ConfigError("Line is not opening or closing section or key value")

    def _open(self, text: str, number: int) -> None:
        before, after = _split_after(text, "{")
        name = _trim(before, strip_colon_and_brace=True)
        if not name:
            raise ConfigError("Missing section name before opening bracket '{'")
        if _trim(after, strip_colon_and_brace=False):
            raise ConfigError("Extra characters after opening bracket '{'")
        path = self._join(name, "Start of section makes total cmap path too long")
        self._mapper.section_start(path, number)
        self._paths.append(path)

    def _item(self, text: str, number: int) -> None:
        before, after = _split_after(text, ":")
        key = _trim(before, strip_colon_and_brace=True)
        if not key:
            raise ConfigError("Key name can't be empty")
        path = self._join(key, "New key makes total cmap path too long")
        self._mapper.item(path, key, _trim(after, strip_colon_and_brace=False), number)

    def _close(self, text: str, number: int) -> None:
        if _trim(text, strip_colon_and_brace=False) != "}":
            raise ConfigError("Extra characters before or after closing bracket '}'")
        if not self._paths:
            raise ConfigError("Unexpected closing brace")
        self._mapper.section_end(self._paths.pop(), number)

    def _join(self, name: str, too_long: str) -> str:
        parent = self._paths[-1] if self._paths else ""
        if len(parent.encode()) + len(name.encode()) + 1 >= KEYNAME_MAXLEN:
            raise ConfigError(too_long)
        return f"{parent}.{name}" if parent else name


def _clean_line(raw: bytes) -> str | None:
    """The line without its line end and trailing blanks; None for a blank or comment line."""
    if len(raw) > MAX_LINE_BYTES:
        raise ConfigError("Line too long")
    if b"\0" in raw:
        raise ConfigError("Line contains a NUL byte")
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    text = text.rstrip(_WHITESPACE)
    body = text.lstrip(_WHITESPACE)
    if not body or body.startswith("#"):
        return None
    return text


def _split_after(text: str, mark: str) -> tuple[str, str]:
    """Split where Corosync does: before = up to the blank run that follows the first ``mark``.

    Corosync cuts the line one character before the first non-blank after ``mark``, so the cut
    keeps ``mark`` itself in ``before`` when blanks follow it; :func:`_trim` removes it again,
    except when it is the only character (``"{ x"`` has the section name ``"{"``).
    """
    rest = text.index(mark) + 1
    while rest < len(text) and text[rest] in _WHITESPACE:
        rest += 1
    return text[: rest - 1], text[rest:]


def _trim(text: str, *, strip_colon_and_brace: bool) -> str:
    """Corosync's ``remove_whitespace``: never trims a name down to nothing from the right."""
    text = text.lstrip(_WHITESPACE)
    trailing = _WHITESPACE + (":{" if strip_colon_and_brace else "")
    end = len(text)
    while end > 1 and text[end - 1] in trailing:
        end -= 1
    return text[:end]


# --- the mapping onto cmap keys --------------------------------------------------------------


class _Kind(Enum):
    """Which rules apply to the items of a section (Corosync's ``main_cp_cb_data_state``)."""

    NORMAL = auto()
    TOTEM = auto()
    INTERFACE = auto()
    MEMBER = auto()
    LOGGER_SUBSYS = auto()
    LOGGING_DAEMON = auto()
    UIDGID = auto()
    QUORUM = auto()
    QDEVICE = auto()
    NODELIST = auto()
    NODE = auto()
    SYSTEM = auto()
    RESOURCES = auto()
    RESOURCES_POLL = auto()
    PLOAD = auto()


# A section with one of these paths switches to the kind; any other section keeps its parent's.
_SECTION_KINDS = {
    "totem": _Kind.TOTEM,
    "totem.interface": _Kind.INTERFACE,
    "totem.interface.member": _Kind.MEMBER,
    "system": _Kind.SYSTEM,
    "logging.logger_subsys": _Kind.LOGGER_SUBSYS,
    "logging.logging_daemon": _Kind.LOGGING_DAEMON,
    "uidgid": _Kind.UIDGID,
    "quorum": _Kind.QUORUM,
    "quorum.device": _Kind.QDEVICE,
    "nodelist": _Kind.NODELIST,
    "nodelist.node": _Kind.NODE,
    "resources": _Kind.RESOURCES,
    "resources.system": _Kind.RESOURCES_POLL,
    "resources.system.memory_used": _Kind.RESOURCES_POLL,
    "resources.process": _Kind.RESOURCES_POLL,
    "resources.process.memory_used": _Kind.RESOURCES_POLL,
    "pload": _Kind.PLOAD,
}


@dataclass(slots=True)
class _Interface:
    """A ``totem { interface { } }`` section, written when it closes."""

    line: int
    linknumber: int = 0
    fields: dict[str, tuple[CmapValue, ValueType, int]] = field(default_factory=dict)
    members: list[tuple[str, int]] = field(default_factory=list)


@dataclass(slots=True)
class _Logger:
    """A ``logging { logger_subsys { } }`` or legacy ``logging_daemon { }`` section."""

    subsys: tuple[str, int] | None = None
    name: tuple[str, int] | None = None
    items: list[tuple[str, str, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Frame:
    path: str
    kind: _Kind
    interface: _Interface | None = None
    logger: _Logger | None = None
    node_index: int | None = None


class _Store:
    """Entries keyed by cmap key, each name checked the way icmap checks it."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.entries: dict[str, ConfigEntry] = {}
        self.anchors: dict[str, tuple[str, int]] = {}
        self.warnings: list[str] = []
        self.line = 0

    def store(self, key: str, value: CmapValue, vtype: ValueType, line: int | None = None) -> None:
        if not _KEY_NAME.fullmatch(key):
            reason = cs_strerror(CsErrorCode.CS_ERR_NAME_TOO_LONG)
            raise ConfigError(f'Can\'t store key "{key}" into icmap, returned error is {reason}')
        self.entries[key] = ConfigEntry(key, value, vtype, self.file, line or self.line)

    def anchor(self, key: str, line: int) -> None:
        self.anchors.setdefault(key, (self.file, line))

    def uidgid(self, path: str, value: str) -> None:
        if path == "uidgid.uid":
            self.store(f"uidgid.config.uid.{_user_id(value)}", 1, ValueType.UINT8)
        elif path == "uidgid.gid":
            self.store(f"uidgid.config.gid.{_group_id(value)}", 1, ValueType.UINT8)
        else:
            raise ConfigError("uidgid: Only uid and gid are allowed items")


class _MainMapper(_Store):
    """Sections of corosync.conf → cmap keys (Corosync's ``main_config_parser_cb``)."""

    def __init__(self, file: str) -> None:
        super().__init__(file)
        self._frames = [_Frame("", _Kind.NORMAL)]
        self._nodes = 0

    def section_start(self, path: str, line: int) -> None:
        self.line = line
        parent = self._frames[-1]
        kind = _SECTION_KINDS.get(path, parent.kind)
        if kind is _Kind.UIDGID and path != "uidgid":
            raise ConfigError("Subsections are not allowed within uidgid section")
        if kind is _Kind.MEMBER and path != "totem.interface.member":
            raise ConfigError("Subsections are not allowed within totem.interface.member section")
        frame = _Frame(path, kind, parent.interface, parent.logger, parent.node_index)
        if path == "totem.interface":
            frame = _Frame(path, kind, interface=_Interface(self.line))
        elif path in ("logging.logger_subsys", "logging.logging_daemon"):
            frame = _Frame(path, kind, logger=_Logger())
        elif path == "nodelist.node":
            frame = _Frame(path, kind, node_index=self._nodes)
            self.anchor(f"nodelist.node.{self._nodes}", self.line)
        self.anchor(path, self.line)
        self._frames.append(frame)

    def section_end(self, path: str, line: int) -> None:
        self.line = line
        frame = self._frames.pop()
        if path == "totem.interface" and frame.interface is not None:
            self._write_interface(frame.interface)
        elif path == "logging.logger_subsys" and frame.logger is not None:
            self._write_logger_subsys(frame.logger)
        elif path == "logging.logging_daemon" and frame.logger is not None:
            self._write_logging_daemon(frame.logger)
        elif path == "nodelist.node":
            self._nodes += 1

    def item(self, path: str, key: str, value: str, line: int) -> None:
        self.line = line
        frame = self._frames[-1]
        handler = _ITEM_HANDLERS.get(frame.kind, _MainMapper._plain_item)
        handler(self, frame, path, key, value)

    # Item handlers, one per section kind.

    def _plain_item(self, frame: _Frame, path: str, key: str, value: str) -> None:
        self.store(path, value, ValueType.STRING)

    def _totem_item(self, frame: _Frame, path: str, key: str, value: str) -> None:
        if path in conftypes.TOTEM_U32_KEYS:
            number = conftypes.to_integer(path, value, ValueType.UINT32)
            self.store(path, number, ValueType.UINT32)
        elif path == "totem.knet_compression_level":
            number = conftypes.to_integer(path, value, ValueType.INT32)
            self.store(path, number, ValueType.INT32)
        elif path == "totem.config_version":
            self.store(path, conftypes.to_unsigned64(path, value), ValueType.UINT64)
        elif path == "totem.ip_dscp":
            self.store(path, conftypes.to_dscp(path, value), ValueType.UINT8)
        else:
            conftypes.check_enumerated(path, value)
            self.store(path, value, ValueType.STRING)

    def _system_item(self, frame: _Frame, path: str, key: str, value: str) -> None:
        conftypes.check_enumerated(path, value)
        self.store(path, value, ValueType.STRING)

    def _typed_item(
        self, path: str, key_name: str, value: str, table: Mapping[str, ValueType]
    ) -> None:
        vtype = table.get(path)
        if vtype is None:
            self.store(key_name, value, ValueType.STRING)
        else:
            self.store(key_name, conftypes.to_integer(key_name, value, vtype), vtype)

    def _quorum_item(self, frame: _Frame, path: str, key: str, value: str) -> None:
        self._typed_item(path, path, value, conftypes.QUORUM_TYPED_KEYS)

    def _qdevice_item(self, frame: _Frame, path: str, key: str, value: str) -> None:
        self._typed_item(path, path, value, conftypes.QDEVICE_TYPED_KEYS)

    def _pload_item(self, frame: _Frame, path: str, key: str, value: str) -> None:
        self._typed_item(path, path, value, conftypes.PLOAD_TYPED_KEYS)

    def _node_item(self, frame: _Frame, path: str, key: str, value: str) -> None:
        suffix = path.removeprefix("nodelist.node.")
        key_name = f"nodelist.node.{frame.node_index}.{suffix}"
        self._typed_item(path, key_name, value, _NODE_TYPED_PATHS)

    def _resources_item(self, frame: _Frame, path: str, key: str, value: str) -> None:
        if key == "watchdog_timeout":
            number = conftypes.to_integer(path, value, ValueType.UINT32)
            self.store(path, number, ValueType.UINT32)
        else:
            self.store(path, value, ValueType.STRING)

    def _resources_poll_item(self, frame: _Frame, path: str, key: str, value: str) -> None:
        if key == "poll_period":
            self.store(path, conftypes.to_unsigned64(path, value), ValueType.UINT64)
        else:
            self.store(path, value, ValueType.STRING)

    def _uidgid_item(self, frame: _Frame, path: str, key: str, value: str) -> None:
        self.uidgid(path, value)

    def _interface_item(self, frame: _Frame, path: str, key: str, value: str) -> None:
        interface = frame.interface
        assert interface is not None  # every INTERFACE frame descends from totem.interface
        name = path.removeprefix("totem.interface.")
        if path == "totem.interface.linknumber":
            interface.linknumber = conftypes.to_integer(path, value, ValueType.UINT8)
        elif name in conftypes.INTERFACE_FIELDS:
            vtype = conftypes.INTERFACE_FIELDS[name]
            typed: CmapValue = value
            if vtype is not ValueType.STRING:
                typed = conftypes.to_integer(path, value, vtype)
            interface.fields[name] = (typed, vtype, self.line)
        else:
            self.store(path, value, ValueType.STRING)

    def _member_item(self, frame: _Frame, path: str, key: str, value: str) -> None:
        if path != "totem.interface.member.memberaddr":
            raise ConfigError("Only memberaddr is allowed in member section")
        assert frame.interface is not None
        frame.interface.members.append((value, self.line))

    def _logger_item(self, frame: _Frame, path: str, key: str, value: str) -> None:
        logger = frame.logger
        assert logger is not None  # every logger frame descends from its section
        daemon = frame.kind is _Kind.LOGGING_DAEMON
        section = "logging.logging_daemon" if daemon else "logging.logger_subsys"
        if path == f"{section}.subsys":
            logger.subsys = (value, self.line)
        elif path == "logging.logging_daemon.name":
            logger.name = (value, self.line)
        else:
            logger.items.append((path.removeprefix(section + "."), value, self.line))

    # Collected sections, written when they close.

    def _write_interface(self, interface: _Interface) -> None:
        prefix = f"totem.interface.{interface.linknumber}"
        self.anchor(prefix, interface.line)
        for name, (value, vtype, line) in interface.fields.items():
            self.store(f"{prefix}.{name}", value, vtype, line)
        for index, (address, line) in enumerate(interface.members):
            self.store(f"{prefix}.member.{index}", address, ValueType.STRING, line)

    def _write_logger_subsys(self, logger: _Logger) -> None:
        if logger.subsys is None:
            raise ConfigError("No subsys key in logger_subsys directive")
        subsys, subsys_line = logger.subsys
        for name, value, line in logger.items:
            self.store(f"logging.logger_subsys.{subsys}.{name}", value, ValueType.STRING, line)
        self.store(f"logging.logger_subsys.{subsys}.subsys", subsys, ValueType.STRING, subsys_line)

    def _write_logging_daemon(self, logger: _Logger) -> None:
        if logger.name is None:
            raise ConfigError("No name key in logging_daemon directive")
        name, name_line = logger.name
        subsys = logger.subsys[0] if logger.subsys is not None else None
        if name == "corosync":
            prefix = "logging" if subsys is None else f"logging.logger_subsys.{subsys}"
        else:
            prefix = f"logging.logging_daemon.{name}" + ("" if subsys is None else f".{subsys}")
        for key, value, line in logger.items:
            self.store(f"{prefix}.{key}", value, ValueType.STRING, line)
        if logger.subsys is not None:
            self.store(f"{prefix}.subsys", logger.subsys[0], ValueType.STRING, logger.subsys[1])
        if name != "corosync":
            self.store(f"{prefix}.name", name, ValueType.STRING, name_line)


_NODE_TYPED_PATHS = {f"nodelist.node.{name}": vt for name, vt in conftypes.NODE_TYPED_KEYS.items()}

_ITEM_HANDLERS = {
    _Kind.TOTEM: _MainMapper._totem_item,
    _Kind.INTERFACE: _MainMapper._interface_item,
    _Kind.MEMBER: _MainMapper._member_item,
    _Kind.LOGGER_SUBSYS: _MainMapper._logger_item,
    _Kind.LOGGING_DAEMON: _MainMapper._logger_item,
    _Kind.UIDGID: _MainMapper._uidgid_item,
    _Kind.QUORUM: _MainMapper._quorum_item,
    _Kind.QDEVICE: _MainMapper._qdevice_item,
    _Kind.NODE: _MainMapper._node_item,
    _Kind.SYSTEM: _MainMapper._system_item,
    _Kind.RESOURCES: _MainMapper._resources_item,
    _Kind.RESOURCES_POLL: _MainMapper._resources_poll_item,
    _Kind.PLOAD: _MainMapper._pload_item,
}


class _UidgidMapper(_Store):
    """A file of ``uidgid.d/``: one or more ``uidgid { uid: ...  gid: ... }`` sections."""

    def section_start(self, path: str, line: int) -> None:
        self.line = line
        if path != "uidgid":
            raise ConfigError("uidgid: Can't add subsection different than uidgid")

    def item(self, path: str, key: str, value: str, line: int) -> None:
        self.line = line
        self.uidgid(path, value)

    def section_end(self, path: str, line: int) -> None:
        return


def _user_id(value: str) -> int:
    number = conftypes.c_decimal(value)
    if number is not None and 0 <= number <= _U32_MAX:
        return number
    try:
        return pwd.getpwnam(value).pw_uid
    except KeyError:
        raise ConfigError(
            f"The '{value}' user is not found in /etc/passwd, please read the documentation."
        ) from None
    except OSError as error:
        raise ConfigError(f"getpwnam_r(): {error.strerror}") from None


def _group_id(value: str) -> int:
    number = conftypes.c_decimal(value)
    if number is not None and 0 <= number <= _U32_MAX:
        return number
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise ConfigError(
            f"The '{value}' group is not found in /etc/group, please read the documentation."
        ) from None
    except OSError as error:
        raise ConfigError(f"getgrnam_r(): {error.strerror}") from None
