"""tandem.Session: Tandem inside an mpi4py program (SPMD mode)."""
from __future__ import annotations

import ctypes
import os
import sys
import traceback
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

    An exception that leaves the ``with`` block on any rank prints its
    traceback and ends the whole job (``MPI_Abort``, exit code 1), since
    the other ranks may be waiting for that one; ``tandem report`` shows
    which rank ended it and why. ``sys.exit(n)`` finalizes with ``n``.

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
        self._world_rank = comm.Get_rank()
        self._is_app = bool(lib.tandem_session_is_app(self._handle))
        self._run_dir = lib.tandem_session_run_dir(self._handle).decode(errors="replace")
        self._app_comm = MPI.Comm.f2py(lib.tandem_session_app_comm_f(self._handle))
        client = lib.tandem_session_client(self._handle)
        self._client = Client._over(client, "the session's MPI client") if client else None

    @property
    def is_app(self) -> bool:
        """True on the application's ranks; False on the ranks that served
        the job's services (and the bridge) inside the constructor."""
        return self._is_app

    @property
    def run_dir(self) -> str:
        """The session's run directory (logs, ``summary.json``)."""
        return self._run_dir

    @property
    def app_comm(self):
        """The application's ranks as an mpi4py communicator
        (``MPI.COMM_NULL`` on the services' ranks). Owned by the session."""
        return self._app_comm

    @property
    def client(self) -> Optional[Client]:
        """The services' client on the application's ranks; None elsewhere."""
        return self._client

    def finalize(self, exit_code: int = 0) -> None:
        """Collective: the services drain and stop. Called by ``with`` at
        the block's end; calling it twice does nothing. ``exit_code`` says
        how this rank's part ended: the largest of all ranks is the run's
        exit code in ``summary.json`` and ``tandem report``."""
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        if self._client is not None:
            self._client._handle = None  # the session's client goes with it
        _capi.check(_capi.lib().tandem_session_finalize_code(handle, int(exit_code)))

    def abort(self, exit_code: int = 1, reason: str = "aborted") -> None:
        """Ends the whole job now, from this rank alone: records ``reason``
        in ``RUN_DIR/aborts.jsonl`` (``tandem report`` shows it) and calls
        ``MPI_Abort`` with ``exit_code``. Does not return."""
        handle, self._handle = self._handle, None
        sys.stdout.flush()
        sys.stderr.flush()
        _capi.lib().tandem_session_abort(handle, int(exit_code) or 1, reason.encode(errors="replace"))

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finalize()
            return
        if issubclass(exc_type, SystemExit):
            # sys.exit(n) on every rank ends the session as n says; the
            # largest is the run's exit code.
            code = exc.code
            self.finalize(code if isinstance(code, int) else (0 if code is None else 1))
            return
        # One rank raised: the others may be waiting for it in a collective,
        # where finalize would hang them all. End the job, as
        # `python -m mpi4py` does, with the traceback where the user looks.
        rank = self._world_rank
        print(f"tandem.Session: rank {rank} raised; ending the job:", file=sys.stderr)
        traceback.print_exception(exc_type, exc, tb, file=sys.stderr)
        last = traceback.format_exception_only(exc_type, exc)[-1].strip()
        self.abort(1, f"rank {rank}: {last}")

    def __repr__(self) -> str:
        role = "application rank" if self.is_app else "service rank"
        state = "open" if self._handle is not None else "finalized"
        return (f"<tandem.Session {self._workflow!r}, {role}, {state}, "
                f"{self._size} rank(s)>")
