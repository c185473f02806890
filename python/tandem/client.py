"""tandem.Client: the job's services from Python, numpy arrays in and out."""
from __future__ import annotations

import ctypes
import json
import os
import time
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import _capi
from .errors import ArgumentError, ConnectError, MissingOutput, WaitTimeout

__all__ = ["Client", "Request", "CallRequest", "Outputs", "wait", "as_completed",
           "FIRST_COMPLETED", "ALL_COMPLETED"]

#: What :func:`wait` waits for (the names concurrent.futures uses).
FIRST_COMPLETED = "FIRST_COMPLETED"
ALL_COMPLETED = "ALL_COMPLETED"

#: Transport names for ``infer(..., transport=...)``, as in the workflow file.
_TRANSPORTS = {None: -1, "auto": -1, "inline": 0, "shm": 1, "hdf5": 2}


class _InferOptions(ctypes.Structure):
    _fields_ = [("version", ctypes.c_int), ("transport", ctypes.c_int),
                ("deadline_ms", ctypes.c_double)]


class _Pause:
    """Waits between looks at requests in flight: 20 µs at first, doubling
    to 1 ms, in time.sleep (which lets go of the GIL and the core), so that
    waiting on many requests does not spin."""

    def __init__(self):
        self.s = 20e-6

    def __call__(self, deadline: Optional[float]) -> None:
        pause = self.s
        if deadline is not None:
            pause = max(0.0, min(pause, deadline - time.monotonic()))
        time.sleep(pause)
        self.s = min(self.s * 2, 1e-3)

#: What infer() takes: a dict of input name -> array, or one array for a
#: service with a single input (whatever its name).
Inputs = Union[Mapping[str, Any], np.ndarray]


class Outputs(dict):
    """A reply's outputs: name -> numpy array over the reply's memory (no
    copy), alive as long as any array or view of them is. A missing name
    raises :class:`tandem.MissingOutput`, which names the outputs there
    are. ``model_version`` is the version of the model that computed them
    (0 if the service has none); ``source`` the service that answered: the
    one asked, or its ``fallback`` when that one missed the deadline or
    could not serve ("" for collective calls)."""

    model_version: int = 0
    source: str = ""

    def __missing__(self, name):
        have = ", ".join(self) or "none"
        raise MissingOutput("TANDEM_ERR_ARGUMENT", f"no output '{name}' (have: {have})")

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in self.items())
        version = f", model version {self.model_version}" if self.model_version else ""
        return f"<tandem.Outputs {{{parts}}}{version}>"


def _named(inputs: Inputs):
    """(names, contiguous arrays), checked."""
    if not isinstance(inputs, Mapping):
        inputs = {"": inputs}  # the service's only input
    names, arrays = [], []
    for name, value in inputs.items():
        a = np.ascontiguousarray(value)
        if a.dtype not in _capi.CODES:
            raise ArgumentError("TANDEM_ERR_ARGUMENT",
                                f"input '{name}' has dtype {a.dtype}, which Tandem lacks")
        names.append(name)
        arrays.append(a)
    return tuple(names), tuple(arrays)


def _views(lib, names, arrays):
    """C tensor views over the arrays (freed by the caller, with
    tandem_tensor_free) and the C arrays of names (None for one unnamed
    input) and of tensors that the C API takes."""
    tensors = []
    for a in arrays:
        dims = (ctypes.c_int64 * a.ndim)(*a.shape)
        t = ctypes.c_void_p()
        try:
            _capi.check(lib.tandem_tensor_view(_capi.CODES[a.dtype], a.ndim, dims, 0,
                                               a.ctypes.data, ctypes.byref(t)))
        except BaseException:
            for made in tensors:
                lib.tandem_tensor_free(made)
            raise
        tensors.append(t)
    single = len(names) == 1 and names[0] == ""
    c_names = None if single else (ctypes.c_char_p * len(names))(*[n.encode() for n in names])
    c_tensors = (ctypes.c_void_p * len(tensors))(*[t.value for t in tensors])
    return tensors, c_names, c_tensors


def _as_dict(inputs: Inputs):
    """What tandem._native takes: a dict, or one array (a Mapping that is
    not a dict becomes one)."""
    if type(inputs) is dict or isinstance(inputs, np.ndarray) or not isinstance(inputs, Mapping):
        return inputs
    return dict(inputs)


class _Owner:
    """Owns a tandem_outputs (the ctypes path); freed with the last array."""

    def __init__(self, handle):
        self.handle = handle

    def __del__(self):
        if self.handle and _capi._lib is not None:
            _capi._lib.tandem_outputs_free(self.handle)
            self.handle = None


class CollectiveRequest:
    """A collective request in flight, from :meth:`Client.infer_all_async`."""

    def __init__(self, handle: int, service: str):
        self._handle = handle
        self.service = service

    def wait(self) -> Outputs:
        """This rank's rows of every output. Collective: every rank of the
        communicator calls it. Raises the same error on every rank."""
        if self._handle is None:
            raise ArgumentError("TANDEM_ERR_ARGUMENT", "this collective request was waited for")
        handle, self._handle = self._handle, None
        out = ctypes.c_void_p()
        _capi.check(_capi.lib().tandem_collective_wait(handle, ctypes.byref(out)))
        return _outputs_ctypes(out)

    def __repr__(self) -> str:
        state = "waited for" if self._handle is None else "in flight"
        return f"<tandem.CollectiveRequest to '{self.service}', {state}>"


def _outputs_ctypes(handle) -> Outputs:
    lib = _capi.lib()
    owner = _Owner(handle)
    result = Outputs()
    result.model_version = lib.tandem_outputs_model_version(handle)
    result.source = lib.tandem_outputs_source(handle).decode()
    for k in range(lib.tandem_outputs_count(handle)):
        name = lib.tandem_outputs_name(handle, k).decode()
        t = lib.tandem_outputs_tensor(handle, k)
        dtype = _capi.DTYPES[lib.tandem_tensor_dtype(t)]
        if dtype is None:
            raise ArgumentError("TANDEM_ERR_ARGUMENT", f"output '{name}' has a dtype numpy lacks")
        shape = tuple(lib.tandem_tensor_dim(t, d) for d in range(lib.tandem_tensor_ndim(t)))
        nbytes = lib.tandem_tensor_nbytes(t)
        if nbytes == 0:
            result[name] = np.zeros(shape, dtype)
            continue
        raw = (ctypes.c_char * nbytes).from_address(lib.tandem_tensor_data(t))
        raw._tandem_owner = owner  # the memory lives as long as any array over it
        result[name] = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return result


class Request:
    """An inference request in flight, from :meth:`Client.infer_async`.
    Dropped without :meth:`wait`, its reply is discarded when it comes."""

    def __init__(self, handle: int, service: str):
        self._handle = handle
        self.service = service

    def test(self) -> bool:
        """True once the reply is here; never blocks."""
        if self._handle is None:
            return True
        done = ctypes.c_int(0)
        _capi.check(_capi.lib().tandem_test(self._handle, ctypes.byref(done)))
        return bool(done.value)

    def wait(self, timeout: Optional[float] = None) -> Outputs:
        """Waits for the reply: the outputs, or the request's error raised.
        With ``timeout`` (seconds), raises :class:`tandem.WaitTimeout` if
        the reply is not here by then; the request stays in flight and can
        be waited for again."""
        if self._handle is None:
            raise ArgumentError("TANDEM_ERR_ARGUMENT", "wait() was already called")
        if timeout is not None:
            _wait_or_raise(self, float(timeout))
        handle, self._handle = self._handle, None
        if _capi.native is not None:
            return _capi.native.wait(handle)
        out = ctypes.c_void_p()
        _capi.check(_capi.lib().tandem_wait(handle, ctypes.byref(out)))
        return _outputs_ctypes(out)

    def done(self) -> bool:
        """The same as :meth:`test` (the name concurrent.futures uses)."""
        return self.test()

    def __repr__(self) -> str:
        state = "waited for" if self._handle is None else "in flight"
        return f"<tandem.Request to '{self.service}', {state}>"

    def __del__(self):
        if getattr(self, "_handle", None) is not None and _capi._lib is not None:
            _capi._lib.tandem_request_free(self._handle)
            self._handle = None


class CallRequest(Request):
    """A JSON call in flight, from :meth:`Client.call_async`: :meth:`wait`
    returns the endpoint's answer as text."""

    def wait(self, timeout: Optional[float] = None) -> str:  # type: ignore[override]
        """Waits for the answer (text); see :meth:`Request.wait`."""
        if self._handle is None:
            raise ArgumentError("TANDEM_ERR_ARGUMENT", "wait() was already called")
        if timeout is not None:
            _wait_or_raise(self, float(timeout))
        handle, self._handle = self._handle, None
        lib = _capi.lib()
        answer = ctypes.c_void_p()
        _capi.check(lib.tandem_wait_answer(handle, ctypes.byref(answer)))
        try:
            return ctypes.string_at(answer).decode()
        finally:
            lib.tandem_free_string(answer)

    def __repr__(self) -> str:
        state = "answered" if self._handle is None else "in flight"
        return f"<tandem.CallRequest to '{self.service}', {state}>"


def _wait_for(requests: List[Request], timeout: Optional[float],
              return_when: str) -> Tuple[List[Request], List[Request]]:
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = _Pause()
    while True:
        done = [r for r in requests if r.test()]
        if (len(done) == len(requests) or (done and return_when == FIRST_COMPLETED)):
            return done, [r for r in requests if r not in done]
        if deadline is not None and time.monotonic() >= deadline:
            return done, [r for r in requests if r not in done]
        pause(deadline)


def _wait_or_raise(request: Request, timeout: float) -> None:
    done, _ = _wait_for([request], timeout, ALL_COMPLETED)
    if not done:
        raise WaitTimeout(f"no reply from '{request.service}' within {timeout:g} s; the request "
                          f"is still in flight: wait() for it again, or drop it")


def wait(requests: Iterable[Request], timeout: Optional[float] = None,
         return_when: str = ALL_COMPLETED) -> Tuple[List[Request], List[Request]]:
    """Waits for requests (from ``infer_async`` or ``call_async``) as
    ``concurrent.futures.wait`` waits for futures: until all are answered
    (``ALL_COMPLETED``), or one (``FIRST_COMPLETED``), or ``timeout``
    seconds pass. Returns ``(done, not_done)``; take each reply with
    ``request.wait()``. Does not spin: it sleeps between looks, from 20 µs
    up to 1 ms."""
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED):
        raise ArgumentError("TANDEM_ERR_ARGUMENT",
                            f"return_when is {return_when!r}, not tandem.ALL_COMPLETED or "
                            f"tandem.FIRST_COMPLETED")
    requests = list(requests)
    if not requests:
        return [], []
    return _wait_for(requests, timeout, return_when)


def as_completed(requests: Iterable[Request], timeout: Optional[float] = None) -> Iterator[Request]:
    """Yields requests as their replies arrive, as
    ``concurrent.futures.as_completed`` does; raises
    :class:`tandem.WaitTimeout` if ``timeout`` seconds pass first."""
    pending = list(requests)
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = _Pause()
    while pending:
        ready = [r for r in pending if r.test()]
        for r in ready:
            pending.remove(r)
            yield r
        if ready:
            pause = _Pause()
            continue
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(f"{len(pending)} request(s) unanswered after {timeout:g} s")
        pause(deadline)


class Client:
    """A connection to the job's services.

    - In an executable task of ``tandem run``: ``tandem.Client()`` reaches
      them through the worker's proxy (``TANDEM_SOCKET``).
    - In a Python function task: ``ctx.client``, straight over the worker's
      MPI client.
    - In an mpi4py program: ``tandem.Session(...).client``.
    """

    def __init__(self, socket: Optional[str] = None, ready_timeout: Optional[float] = None):
        """Connects to the worker's proxy: ``socket``, else $TANDEM_SOCKET.
        Raises :class:`tandem.ConnectError` when there is none.
        ``ready_timeout``: see :attr:`ready_timeout`."""
        lib = _capi.lib()
        handle = ctypes.c_void_p()
        if socket is None and not os.environ.get("TANDEM_SOCKET"):
            raise ConnectError(
                "TANDEM_ERR_CONNECT",
                "tandem.Client() reaches the services through the worker's proxy, which "
                "`tandem run` gives executable tasks (TANDEM_SOCKET is not set here). In a Python "
                "function task use ctx.client; in your own mpi4py program, "
                "tandem.Session(MPI.COMM_WORLD, \"job.toml\").client")
        if socket is None:
            _capi.check(lib.tandem_connect(ctypes.byref(handle)))
        else:
            _capi.check(lib.tandem_connect_to(os.fsencode(socket), ctypes.byref(handle)))
        self._handle = handle.value
        self._owned = True
        self._via = f"proxy {socket or os.environ.get('TANDEM_SOCKET', '')}"
        self._ready_timeout: Optional[float] = None
        if ready_timeout is not None:
            self.ready_timeout = ready_timeout

    @property
    def ready_timeout(self) -> Optional[float]:
        """How long :meth:`infer`, :meth:`infer_async` and :meth:`call`
        wait for a service that is still STARTING (loading its model)
        before they raise :class:`tandem.ServiceError`: seconds, or None
        (the default) for the service's ``start_timeout`` (600 s unless the
        workflow says). A FAILED or unknown service raises at once."""
        return getattr(self, "_ready_timeout", None)

    @ready_timeout.setter
    def ready_timeout(self, seconds: Optional[float]) -> None:
        value = -1.0 if seconds is None else float(seconds)
        if value < 0 and seconds is not None:
            raise ArgumentError("TANDEM_ERR_ARGUMENT", "ready_timeout must be >= 0 seconds or None")
        _capi.check(_capi.lib().tandem_set_ready_timeout(self._live(), value))
        self._ready_timeout = seconds

    @classmethod
    def _over(cls, address: int, via: str = "the worker's MPI client") -> "Client":
        """A client over a C API handle that its owner frees (a Python
        function task's: the worker's; a session's)."""
        self = cls.__new__(cls)
        self._handle = address
        self._owned = False
        self._via = via
        return self

    def close(self) -> None:
        """Closes a proxy connection (a task's or a session's client is
        Tandem's to close; this only forgets it)."""
        if self._handle and self._owned:
            _capi.lib().tandem_disconnect(self._handle)
        self._handle = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = self._via if self._handle else "closed"
        return f"<tandem.Client over {state}>"

    def _live(self) -> int:
        if not self._handle:
            raise ArgumentError("TANDEM_ERR_ARGUMENT", "the client is closed")
        return self._handle

    def wait_ready(self, service: str, timeout: float = 300.0) -> None:
        """Waits until the service is READY. Raises
        :class:`tandem.ServiceError` if it is unknown, FAILED, or not READY
        within ``timeout`` seconds."""
        _capi.check(_capi.lib().tandem_wait_ready(self._live(), service.encode(), float(timeout)))

    def scale(self, service: str, replicas: int) -> None:
        """Asks for ``replicas`` replicas of an elastic service
        (``replicas = { min, max }``) from now on; returns at once. Raises
        :class:`tandem.ServiceError` for a service of fixed size or a count
        outside its min and max."""
        _capi.check(_capi.lib().tandem_scale(self._live(), service.encode(), int(replicas)))

    def infer_async(self, service: str, inputs: Inputs, *, version: int = 0,
                    transport: Optional[str] = None, deadline_ms: float = 0) -> Request:
        """Sends a request and returns at once. Inputs are sent without a
        copy when C-contiguous (others are made so first). ``version``: the
        model version to run (0: the one the service serves); ``transport``:
        ``"inline"``, ``"shm"`` or ``"hdf5"`` to choose how the tensors
        travel (None: by size and locality); ``deadline_ms``: how long the
        answer is of use (0: the service's ``deadline_ms``, if any), past
        which :class:`tandem.DeadlineExceeded` is raised unless the
        service's ``fallback`` answers. A service that is still STARTING is
        waited for (see :attr:`ready_timeout`)."""
        handle = self._handle or self._live()
        if _capi.native is not None and not version and transport is None and not deadline_ms:
            return Request(_capi.native.send(handle, service, _as_dict(inputs)), service)
        names, arrays = _named(inputs)
        return Request(self._send_ctypes(handle, service, names, arrays, version, transport,
                                         deadline_ms), service)

    def infer(self, service: str, inputs: Inputs, *, version: int = 0,
              transport: Optional[str] = None, deadline_ms: float = 0) -> Outputs:
        """Sends a request and waits: the outputs, name -> numpy array.
        Raises :class:`tandem.RequestError` when the service answers with an
        error, :class:`tandem.ServiceError` when it cannot be reached (it
        FAILED, is unknown, or did not start within :attr:`ready_timeout`),
        :class:`tandem.DeadlineExceeded` when it did not answer in time.
        ``version``, ``transport`` and ``deadline_ms`` as for
        :meth:`infer_async`."""
        if _capi.native is not None and not version and transport is None and not deadline_ms:
            return _capi.native.infer(self._handle or self._live(), service, _as_dict(inputs))
        return self.infer_async(service, inputs, version=version, transport=transport,
                                deadline_ms=deadline_ms).wait()

    def infer_all_async(self, comm, service: str, inputs: Inputs) -> "CollectiveRequest":
        """Collective inference, returning once the node's request is sent
        (so that halos can be exchanged meanwhile); ``wait()`` on what it
        returns, on every rank, gives the outputs. ``comm``: an mpi4py
        communicator, or its Fortran handle as an int. See
        :meth:`infer_all`."""
        fcomm = comm if isinstance(comm, int) else comm.py2f()
        names, arrays = _named(inputs)
        lib = _capi.lib()
        tensors, c_names, c_tensors = _views(lib, names, arrays)
        try:
            call = ctypes.c_void_p()
            _capi.check(lib.tandem_infer_all_async_f(self._handle or self._live(), fcomm,
                                                     service.encode(), len(names), c_names,
                                                     c_tensors, ctypes.byref(call)))
            return CollectiveRequest(call.value, service)
        finally:
            for t in tensors:  # copied into the node's shared window
                lib.tandem_tensor_free(t)

    def infer_all(self, comm, service: str, inputs: Inputs) -> Outputs:
        """Collective inference: every rank of ``comm`` (an mpi4py
        communicator, or its Fortran handle as an int) calls this with its
        own rows (0 allowed) and gets back its own rows of every output.
        The ranks on one node send one request together (see the user
        guide's "Collective inference"). Raises the same
        :class:`tandem.RequestError` on every rank when any rank's inputs do
        not fit the signature or the request fails."""
        return self.infer_all_async(comm, service, inputs).wait()

    def _send_ctypes(self, handle, service, names, arrays, version=0, transport=None,
                     deadline_ms=0) -> int:
        lib = _capi.lib()
        if transport not in _TRANSPORTS:
            raise ArgumentError("TANDEM_ERR_ARGUMENT",
                                f"transport is {transport!r}, not one of \"inline\", \"shm\", "
                                f"\"hdf5\" or None (by size and locality)")
        options = _InferOptions(int(version), _TRANSPORTS[transport], float(deadline_ms))
        tensors, c_names, c_tensors = _views(lib, names, arrays)
        try:
            request = ctypes.c_void_p()
            _capi.check(lib.tandem_infer_async_opts(handle, service.encode(), len(names),
                                                    c_names, c_tensors, ctypes.byref(options),
                                                    ctypes.byref(request)))
            return request.value
        finally:
            for t in tensors:  # the inputs were copied when the request was sent
                lib.tandem_tensor_free(t)

    def load_model(self, service: str, path: Union[str, os.PathLike], version: int) -> int:
        """Loads the TorchScript file ``path`` as model version ``version``
        of the service on every replica (they go on serving meanwhile) and
        returns the version served afterwards. Raises
        :class:`tandem.RequestError` naming each replica that could not
        load it and why; they go on serving what they had."""
        serving = ctypes.c_int(0)
        _capi.check(_capi.lib().tandem_load_model(self._live(), service.encode(),
                                                  os.fsencode(path), int(version),
                                                  ctypes.byref(serving)))
        return serving.value

    def unload_model(self, service: str, version: int) -> int:
        """Drops a model version from every replica; returns the version
        served now."""
        serving = ctypes.c_int(0)
        _capi.check(_capi.lib().tandem_unload_model(self._live(), service.encode(), int(version),
                                                    ctypes.byref(serving)))
        return serving.value

    def call_async(self, service: str, body: Union[str, Dict[str, Any]],
                   path: Optional[str] = None) -> CallRequest:
        """:meth:`call`, returning at once: a :class:`CallRequest` whose
        ``wait()`` gives the answer's text."""
        if not isinstance(body, str):
            body = json.dumps(body)
        request = ctypes.c_void_p()
        _capi.check(_capi.lib().tandem_call_async(self._live(), service.encode(),
                                                  path.encode() if path else None,
                                                  body.encode(), ctypes.byref(request)))
        return CallRequest(request.value, service)

    def _steer(self, request: str) -> str:
        """A steering task's request (JSON text) to the coordinator, through
        the worker's proxy; the answer's text (tandem.Steering uses it)."""
        lib = _capi.lib()
        answer = ctypes.c_void_p()
        _capi.check(lib.tandem_steer(self._live(), request.encode(), ctypes.byref(answer)))
        try:
            return ctypes.string_at(answer).decode()
        finally:
            lib.tandem_free_string(answer)

    def call(self, service: str, body: Union[str, Dict[str, Any]],
             path: Optional[str] = None) -> str:
        """A JSON service (an OpenAI-compatible endpoint): POSTs ``body`` (a
        dict is sent as JSON) to ``path`` (None: the service's default) and
        returns the answer's text."""
        lib = _capi.lib()
        if not isinstance(body, str):
            body = json.dumps(body)
        answer = ctypes.c_void_p()
        _capi.check(lib.tandem_call(self._live(), service.encode(),
                                    path.encode() if path else None, body.encode(),
                                    ctypes.byref(answer)))
        try:
            return ctypes.string_at(answer).decode()
        finally:
            lib.tandem_free_string(answer)
