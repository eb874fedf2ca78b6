"""Corosync's ``cs_error_t`` codes and the one exception hierarchy that carries them.

Every error that can reach a client or cross a process boundary is a :class:`CsError`
subclass whose class attribute ``code`` is the wire number. The IPC layer converts in one
place: ``raise error_for(code)`` on the client side, ``exc.code`` on the server side.
``CS_OK`` is 1, not 0, exactly as in Corosync.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class CsErrorCode(IntEnum):
    """``cs_error_t`` from Corosync's ``corotypes.h`` (29 is unused there too)."""

    CS_OK = 1
    CS_ERR_LIBRARY = 2
    CS_ERR_VERSION = 3
    CS_ERR_INIT = 4
    CS_ERR_TIMEOUT = 5
    CS_ERR_TRY_AGAIN = 6
    CS_ERR_INVALID_PARAM = 7
    CS_ERR_NO_MEMORY = 8
    CS_ERR_BAD_HANDLE = 9
    CS_ERR_BUSY = 10
    CS_ERR_ACCESS = 11
    CS_ERR_NOT_EXIST = 12
    CS_ERR_NAME_TOO_LONG = 13
    CS_ERR_EXIST = 14
    CS_ERR_NO_SPACE = 15
    CS_ERR_INTERRUPT = 16
    CS_ERR_NAME_NOT_FOUND = 17
    CS_ERR_NO_RESOURCES = 18
    CS_ERR_NOT_SUPPORTED = 19
    CS_ERR_BAD_OPERATION = 20
    CS_ERR_FAILED_OPERATION = 21
    CS_ERR_MESSAGE_ERROR = 22
    CS_ERR_QUEUE_FULL = 23
    CS_ERR_QUEUE_NOT_AVAILABLE = 24
    CS_ERR_BAD_FLAGS = 25
    CS_ERR_TOO_BIG = 26
    CS_ERR_NO_SECTIONS = 27
    CS_ERR_CONTEXT_NOT_FOUND = 28
    CS_ERR_TOO_MANY_GROUPS = 30
    CS_ERR_SECURITY = 100


def cs_strerror(code: int) -> str:
    """The text Corosync's ``cs_strerror`` gives, which the tools print verbatim."""
    if code == CsErrorCode.CS_OK:
        return "success"
    try:
        return CsErrorCode(code).name
    except ValueError:
        return "unknown error"


class CsError(Exception):
    """Root of every pycorosync error that maps onto a ``cs_error_t``."""

    code: ClassVar[CsErrorCode] = CsErrorCode.CS_ERR_LIBRARY

    def __str__(self) -> str:
        detail = super().__str__()
        name = cs_strerror(self.code)
        return f"{name}: {detail}" if detail else name


class LibraryError(CsError):
    code = CsErrorCode.CS_ERR_LIBRARY


class VersionError(CsError):
    code = CsErrorCode.CS_ERR_VERSION


class InitError(CsError):
    code = CsErrorCode.CS_ERR_INIT


class CsTimeoutError(CsError):
    code = CsErrorCode.CS_ERR_TIMEOUT


class TryAgainError(CsError):
    code = CsErrorCode.CS_ERR_TRY_AGAIN


class InvalidParamError(CsError):
    code = CsErrorCode.CS_ERR_INVALID_PARAM


class NoMemoryError(CsError):
    code = CsErrorCode.CS_ERR_NO_MEMORY


class BadHandleError(CsError):
    code = CsErrorCode.CS_ERR_BAD_HANDLE


class BusyError(CsError):
    code = CsErrorCode.CS_ERR_BUSY


class AccessError(CsError):
    code = CsErrorCode.CS_ERR_ACCESS


class NotExistError(CsError):
    code = CsErrorCode.CS_ERR_NOT_EXIST


class NameTooLongError(CsError):
    code = CsErrorCode.CS_ERR_NAME_TOO_LONG


class ExistError(CsError):
    code = CsErrorCode.CS_ERR_EXIST


class NoSpaceError(CsError):
    code = CsErrorCode.CS_ERR_NO_SPACE


class InterruptError(CsError):
    code = CsErrorCode.CS_ERR_INTERRUPT


class NameNotFoundError(CsError):
    code = CsErrorCode.CS_ERR_NAME_NOT_FOUND


class NoResourcesError(CsError):
    code = CsErrorCode.CS_ERR_NO_RESOURCES


class NotSupportedError(CsError):
    code = CsErrorCode.CS_ERR_NOT_SUPPORTED


class BadOperationError(CsError):
    code = CsErrorCode.CS_ERR_BAD_OPERATION


class FailedOperationError(CsError):
    code = CsErrorCode.CS_ERR_FAILED_OPERATION


class MessageError(CsError):
    code = CsErrorCode.CS_ERR_MESSAGE_ERROR


class QueueFullError(CsError):
    code = CsErrorCode.CS_ERR_QUEUE_FULL


class QueueNotAvailableError(CsError):
    code = CsErrorCode.CS_ERR_QUEUE_NOT_AVAILABLE


class BadFlagsError(CsError):
    code = CsErrorCode.CS_ERR_BAD_FLAGS


class TooBigError(CsError):
    code = CsErrorCode.CS_ERR_TOO_BIG


class NoSectionsError(CsError):
    code = CsErrorCode.CS_ERR_NO_SECTIONS


class ContextNotFoundError(CsError):
    code = CsErrorCode.CS_ERR_CONTEXT_NOT_FOUND


class TooManyGroupsError(CsError):
    code = CsErrorCode.CS_ERR_TOO_MANY_GROUPS


class SecurityError(CsError):
    code = CsErrorCode.CS_ERR_SECURITY


def _index_by_code() -> dict[CsErrorCode, type[CsError]]:
    table: dict[CsErrorCode, type[CsError]] = {}
    for cls in CsError.__subclasses__():
        table.setdefault(cls.code, cls)
    return table


_BY_CODE = _index_by_code()


def error_for(code: int, detail: str = "") -> CsError:
    """The exception for a wire code; an unknown code becomes a ``LibraryError``.

    ``CS_OK`` is not an error: asking for one is a programming mistake.
    """
    if code == CsErrorCode.CS_OK:
        raise ValueError("CS_OK is not an error")
    try:
        cls = _BY_CODE[CsErrorCode(code)]
    except ValueError:
        return LibraryError(f"unknown cs_error_t {code}" + (f": {detail}" if detail else ""))
    return cls(detail)
