"""tandem.Session: Tandem inside an mpi4py program (SPMD mode)."""
from __future__ import annotations

import ctypes
import os
from typing import Optional, Union

from . import _capi
from .client import Client

__all__ = ["Session"]


class Session:
    """Starts the workflow's services inside an mpi4py program. Collective
    over ``comm``::

        from mpi4py import MPI
        import tandem

        with tandem.Session(MPI.COMM_WORLD, "coupling.toml") as session:
            if session.is_app:
                comm = session.app_comm          # use instead of COMM_WORLD
                y = session.client.infer("surrogate", x)["y"]

    The layout gives some ranks to the services (and the bridge). On those
    ranks the constructor serves until the application's ranks end the
    session, then returns with ``is_app`` false. The others are the
    application's: ``app_comm`` numbers them from 0, and ``client`` reaches
    the services over MPI. A bad workflow raises :class:`tandem.ConfigError`
    with its file, line and key, on every rank.

    Built on the C API's session functions (``tandem_session_start_comm``),
    as C and Fortran programs use them.
    """

    def __init__(self, comm=None, workflow: Union[str, os.PathLike] = "job.toml"):
        from mpi4py import MPI
        if comm is None:
            comm = MPI.COMM_WORLD
        lib = _capi.lib()
        handle = ctypes.c_void_p()
        _capi.check(lib.tandem_session_start_comm(MPI._addressof(comm), os.fsencode(workflow),
                                                  ctypes.byref(handle)))
        self._handle: Optional[int] = handle.value
        self._workflow = os.fspath(workflow)
        self._size = comm.Get_size()
        self.is_app: bool = bool(lib.tandem_session_is_app(self._handle))
        self._app_comm = MPI.Comm.f2py(lib.tandem_session_app_comm_f(self._handle))
        client = lib.tandem_session_client(self._handle)
        self._client = Client._over(client, "the session's MPI client") if client else None

    @property
    def app_comm(self):
        """The application's ranks as an mpi4py communicator
        (``MPI.COMM_NULL`` on the services' ranks). Owned by the session."""
        return self._app_comm

    @property
    def client(self) -> Optional[Client]:
        """The services' client on the application's ranks; None elsewhere."""
        return self._client

    def finalize(self) -> None:
        """Collective: the services drain and stop. Called by ``with`` at
        the block's end; calling it twice does nothing."""
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        if self._client is not None:
            self._client._handle = None  # the session's client goes with it
        _capi.check(_capi.lib().tandem_session_finalize(handle))

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.finalize()

    def __repr__(self) -> str:
        role = "application rank" if self.is_app else "service rank"
        state = "open" if self._handle is not None else "finalized"
        return (f"<tandem.Session {self._workflow!r}, {role}, {state}, "
                f"{self._size} rank(s)>")
