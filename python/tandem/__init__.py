"""Tandem from Python: the job's services, Python function tasks, and
Tandem inside an mpi4py program.

In an executable task that ``tandem run`` starts::

    import numpy as np
    import tandem

    client = tandem.Client()                 # the worker's proxy, from TANDEM_SOCKET
    client.wait_ready("surrogate")
    y = client.infer("surrogate", {"x": np.ones((8, 64), np.float32)})["y"]

In a Python function task (``python = "module:function"`` in the workflow),
the function gets a :class:`TaskContext` whose ``client`` reaches the
services straight over the worker's MPI client. In an mpi4py program,
:class:`Session` starts the services in the program's own job.

Inputs are passed without a copy when they are C-contiguous (others are
made so first); outputs are numpy arrays over the reply's memory, without a
copy, kept alive as long as any array (or view) of them is. Errors raise a
:class:`TandemError` subclass that says what went wrong.
"""
from ._task import TaskContext
from ._version import __version__
from .client import (ALL_COMPLETED, FIRST_COMPLETED, CallRequest, Client, CollectiveRequest,
                     Outputs, Request, as_completed, wait)
from .errors import (ArgumentError, ConfigError, ConnectError, DeadlineExceeded, InternalError,
                     IoError,
                     MissingOutput, MPIError, ProtocolError, RequestError, ServiceError,
                     TandemError, WaitTimeout)
from .results import Result, results
from .session import Session
from .steering import Steering, TaskResult

__all__ = ["__version__", "Client", "Request", "CallRequest", "CollectiveRequest", "Outputs",
           "Session",
           "TaskContext", "Result", "results", "Steering", "TaskResult", "wait", "as_completed",
           "FIRST_COMPLETED",
           "ALL_COMPLETED", "TandemError", "WaitTimeout",
           "ArgumentError", "ConfigError", "ConnectError", "InternalError", "IoError",
           "MissingOutput", "MPIError", "ProtocolError", "RequestError", "ServiceError",
           "DeadlineExceeded"]
