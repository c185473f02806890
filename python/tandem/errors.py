"""Tandem's errors in Python, one class per kind, as in C++ (tandem/error.hpp).

Every failing call raises a :class:`TandemError` subclass; ``status`` is the
C API's status name and ``str(e)`` Tandem's message::

    try:
        y = client.infer("surrogate", x)
    except tandem.ServiceError as e:   # unknown, FAILED, or not READY in time
        ...
    except tandem.DeadlineExceeded as e:  # not answered within deadline_ms
        ...
    except tandem.RequestError as e:   # the service answered with an error
        ...
"""
from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = ["TandemError", "ArgumentError", "ConnectError", "ServiceError", "RequestError",
           "DeadlineExceeded",
           "ProtocolError", "MPIError", "InternalError", "ConfigError", "IoError",
           "MissingOutput"]


class TandemError(Exception):
    """A failed Tandem call. ``status`` is the C API's status name
    ("TANDEM_ERR_SERVICE", ...), ``str(e)`` the message."""

    #: The status this class stands for (the base class: any).
    STATUS = ""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status!r}, {str(self)!r})"


class ArgumentError(TandemError, ValueError):
    """A call that cannot be done as asked: a bad dtype or shape, an
    unknown name (also a ValueError)."""
    STATUS = "TANDEM_ERR_ARGUMENT"


class ConnectError(TandemError):
    """No way to the services: no proxy socket (TANDEM_SOCKET unset, or the
    worker gone), or no libtandem."""
    STATUS = "TANDEM_ERR_CONNECT"


class RequestError(TandemError):
    """The service answered the request with an error (a failing model,
    inputs that do not fit its signature, a remote endpoint's error)."""
    STATUS = "TANDEM_ERR_REQUEST"


class ServiceError(RequestError):
    """The service is unknown, FAILED, or not READY in time."""
    STATUS = "TANDEM_ERR_SERVICE"


class DeadlineExceeded(RequestError, TimeoutError):
    """The request was not answered before its deadline (``deadline_ms``):
    the replica dropped it uncomputed, or the client stopped waiting (also
    a TimeoutError)."""
    STATUS = "TANDEM_ERR_DEADLINE"


class ProtocolError(TandemError):
    """An answer that made no sense; the connection is closed."""
    STATUS = "TANDEM_ERR_PROTOCOL"


class MPIError(TandemError):
    """SPMD mode: MPI is not initialised, or a collective failed."""
    STATUS = "TANDEM_ERR_MPI"


class InternalError(TandemError):
    """A bug in Tandem: please report it with the message."""
    STATUS = "TANDEM_ERR_INTERNAL"


class ConfigError(TandemError):
    """A workflow file that cannot run: ``file``, ``line``, ``column`` and
    ``key`` say where, ``reason`` what is wrong there."""
    STATUS = "TANDEM_ERR_CONFIG"

    def __init__(self, status: str, message: str, file: str = "", line: int = 0,
                 column: int = 0, key: str = "", reason: str = ""):
        super().__init__(status, message)
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.reason = reason or message


class IoError(TandemError):
    """A file or directory Tandem needs; the message names it and the cause."""
    STATUS = "TANDEM_ERR_IO"


class WaitTimeout(TandemError, TimeoutError):
    """``Request.wait(timeout=...)`` or :func:`tandem.wait` ran out of time;
    the request is still in flight and may be waited for again. Also a
    ``TimeoutError``."""

    def __init__(self, message: str):
        super().__init__("TANDEM_ERR_TIMEOUT", message)


class MissingOutput(ArgumentError, KeyError):
    """An output name the reply does not have (an ArgumentError and a
    KeyError); the message names the outputs there are."""

    def __str__(self) -> str:
        return TandemError.__str__(self)


_BY_STATUS: Dict[str, Type[TandemError]] = {
    c.STATUS: c for c in (ArgumentError, ConnectError, ServiceError, RequestError,
                          DeadlineExceeded, ProtocolError, MPIError, InternalError, ConfigError, IoError)}


def error_for(status: str, message: str, where: Optional[dict] = None) -> TandemError:
    """The exception for a status name and message (where: a config
    error's file, line, column, key and reason)."""
    cls = _BY_STATUS.get(status, TandemError)
    if cls is ConfigError and where:
        return ConfigError(status, message, **where)
    return cls(status, message)
