"""The one error type for a bad configuration, wherever it is detected.

The parser knows the line of every key; later validators (totem values, nodelist, logging)
know only the key. They raise :class:`ConfigError` with ``key=`` and whoever holds the parsed
file fills in the location, so that every message reads ``FILE:LINE: reason`` as Corosync's
``parser error: FILE:LINE: reason`` does. corosync-exec exits with code 8 on it.

A plain exception class with read-only properties, not a frozen dataclass: Python sets
``__traceback__`` and ``__notes__`` on an exception as it travels (``contextlib`` does, on the
way out of a ``with`` block), which a frozen dataclass refuses with a ``TypeError`` that would
replace the error itself.
"""

from __future__ import annotations


class ConfigError(Exception):
    def __init__(
        self,
        reason: str,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(reason, file, line, key)
        self._reason = reason
        self._file = file
        self._line = line
        self._key = key

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def file(self) -> str | None:
        return self._file

    @property
    def line(self) -> int | None:
        return self._line

    @property
    def key(self) -> str | None:
        """The cmap key the reason is about, when a validator (not the parser) raised it."""
        return self._key

    def __str__(self) -> str:
        if self.file is not None and self.line is not None:
            return f"{self.file}:{self.line}: {self.reason}"
        if self.file is not None:
            return f"{self.file}: {self.reason}"
        return self.reason

    def __repr__(self) -> str:
        return (
            f"ConfigError(reason={self.reason!r}, file={self.file!r}, line={self.line!r}, "
            f"key={self.key!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfigError):
            return NotImplemented
        return self.args == other.args

    def __hash__(self) -> int:
        return hash(self.args)

    def located(self, file: str, line: int | None) -> ConfigError:
        """The same error placed at ``file:line``."""
        return ConfigError(self.reason, file, line, self.key)
