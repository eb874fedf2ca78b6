"""The one error type for a bad configuration, wherever it is detected.

The parser knows the line of every key; later validators (totem values, nodelist, logging)
know only the key. They raise :class:`ConfigError` with ``key=`` and whoever holds the parsed
file fills in the location, so that every message reads ``FILE:LINE: reason`` as Corosync's
``parser error: FILE:LINE: reason`` does. corosync-exec exits with code 8 on it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class ConfigError(Exception):
    reason: str
    file: str | None = None
    line: int | None = None
    key: str | None = None
    """The cmap key the reason is about, when a validator (not the parser) raised it."""

    def __str__(self) -> str:
        if self.file is not None and self.line is not None:
            return f"{self.file}:{self.line}: {self.reason}"
        if self.file is not None:
            return f"{self.file}: {self.reason}"
        return self.reason

    def located(self, file: str, line: int | None) -> ConfigError:
        """The same error placed at ``file:line``."""
        return replace(self, file=file, line=line)
