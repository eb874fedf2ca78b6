"""ConfigError: placement, text, and surviving the trip through Python's exception machinery."""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator

import pytest

from pycorosync.exec.config_error import ConfigError


def test_text_with_and_without_a_location() -> None:
    assert str(ConfigError("bad")) == "bad"
    assert str(ConfigError("bad", "f.conf")) == "f.conf: bad"
    assert str(ConfigError("bad", "f.conf", 3)) == "f.conf:3: bad"


def test_located_keeps_reason_and_key() -> None:
    placed = ConfigError("bad", key="totem.token").located("f.conf", 7)
    assert (placed.reason, placed.file, placed.line, placed.key) == (
        "bad",
        "f.conf",
        7,
        "totem.token",
    )


@contextlib.contextmanager
def _scope() -> Iterator[None]:
    yield


def test_passes_through_a_contextmanager_unchanged() -> None:
    # contextlib assigns __traceback__ on the way out; a frozen dataclass would turn the error
    # into a TypeError there.
    with pytest.raises(ConfigError, match="bad"), _scope():
        raise ConfigError("bad", key="k")


def test_notes_can_be_added() -> None:
    error = ConfigError("bad")
    error.add_note("while loading")
    assert error.__notes__ == ["while loading"]


def test_pickles_round_trip() -> None:
    error = ConfigError("bad", "f.conf", 2, "totem.token")
    assert pickle.loads(pickle.dumps(error)) == error


def test_fields_are_read_only() -> None:
    error = ConfigError("bad")
    with pytest.raises(AttributeError):
        error.reason = "other"  # type: ignore[misc]
