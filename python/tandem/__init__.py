"""Tandem's services from Python.

A thin module over libtandem's C API with ctypes: no build step, numpy
arrays in and out. In an executable task that `tandem run` starts::

    import numpy as np
    import tandem

    client = tandem.Client()                 # the worker's proxy, from TANDEM_SOCKET
    client.wait_ready("surrogate")
    y = client.infer("surrogate", {"x": np.ones((8, 64), np.float32)})["y"]

Inputs are passed without a copy when they are C-contiguous (others are
made so first); outputs are numpy arrays over the reply's memory, without a
copy, kept alive as long as any array (or view) of them is.

Errors raise tandem.TandemError with the status name and Tandem's message.
"""
import ctypes
import ctypes.util
import json
import os

import numpy as np

__all__ = ["Client", "Request", "TandemError"]

# The C API's dtypes, in tandem_dtype order (BF16 and BYTES have no numpy type).
_DTYPES = [np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32,
           np.int64, np.float16, None, np.float32, np.float64, None]
_CODES = {np.dtype(t): i for i, t in enumerate(_DTYPES) if t is not None}


class TandemError(Exception):
    """A failed call: .status is the C API's status name, str(e) its message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _find_library():
    path = os.environ.get("TANDEM_LIBRARY")
    if path:
        return path
    here = os.path.dirname(os.path.abspath(__file__))
    # Installed: PREFIX/lib/tandem/python/tandem/ -> PREFIX/lib/libtandem.so;
    # build tree: build/python/tandem/ -> build/src/libtandem.so.
    for candidate in (os.path.join(here, "..", "..", "..", "libtandem.so"),
                      os.path.join(here, "..", "..", "src", "libtandem.so")):
        if os.path.exists(candidate):
            return os.path.normpath(candidate)
    found = ctypes.util.find_library("tandem")
    if found:
        return found
    raise TandemError("TANDEM_ERR_CONNECT",
                      "libtandem.so not found: set TANDEM_LIBRARY (tandem run sets it for tasks)")


_lib = None


def _c():
    """The library, loaded and declared on first use."""
    global _lib
    if _lib is not None:
        return _lib
    lib = ctypes.CDLL(_find_library())
    p, i, c = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    pp = ctypes.POINTER(ctypes.c_void_p)
    for name, res, args in [
        ("tandem_last_error", c, []),
        ("tandem_status_name", c, [i]),
        ("tandem_connect", i, [pp]),
        ("tandem_connect_to", i, [c, pp]),
        ("tandem_disconnect", None, [p]),
        ("tandem_wait_ready", i, [p, c, ctypes.c_double]),
        ("tandem_tensor_view", i, [i, i, ctypes.POINTER(ctypes.c_int64), i, p, pp]),
        ("tandem_tensor_free", None, [p]),
        ("tandem_tensor_dtype", i, [p]),
        ("tandem_tensor_ndim", i, [p]),
        ("tandem_tensor_dim", ctypes.c_int64, [p, i]),
        ("tandem_tensor_nbytes", ctypes.c_size_t, [p]),
        ("tandem_tensor_data", p, [p]),
        ("tandem_infer_async", i, [p, c, i, ctypes.POINTER(c), ctypes.POINTER(p), pp]),
        ("tandem_test", i, [p, ctypes.POINTER(i)]),
        ("tandem_wait", i, [p, pp]),
        ("tandem_request_free", None, [p]),
        ("tandem_outputs_count", i, [p]),
        ("tandem_outputs_name", c, [p, i]),
        ("tandem_outputs_tensor", p, [p, i]),
        ("tandem_outputs_free", None, [p]),
        ("tandem_outputs_model_version", i, [p]),
        ("tandem_load_model", i, [p, c, c, i, ctypes.POINTER(i)]),
        ("tandem_unload_model", i, [p, c, i, ctypes.POINTER(i)]),
        ("tandem_call", i, [p, c, c, c, ctypes.POINTER(ctypes.c_void_p)]),
        ("tandem_free_string", None, [p]),
    ]:
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    _lib = lib
    return lib


def _check(status):
    if status != 0:
        lib = _c()
        raise TandemError(lib.tandem_status_name(status).decode(),
                          lib.tandem_last_error().decode(errors="replace"))


class _Outputs:
    """Owns a tandem_outputs; freed when the last array over it goes."""

    def __init__(self, handle):
        self.handle = handle

    def __del__(self):
        if self.handle and _lib is not None:
            _lib.tandem_outputs_free(self.handle)
            self.handle = None


class MissingOutput(TandemError, KeyError):
    """An output name the reply does not have (a TandemError and a KeyError)."""

    def __str__(self):
        return TandemError.__str__(self)


class Outputs(dict):
    """A reply's outputs: name -> numpy array. A missing name raises
    MissingOutput, which names the outputs there are. model_version is the
    version of the model that computed them (0 if the service has none)."""

    model_version = 0

    def __missing__(self, name):
        have = ", ".join(self) or "none"
        raise MissingOutput("TANDEM_ERR_ARGUMENT", f"no output '{name}' (have: {have})")


def _to_arrays(handle):
    lib = _c()
    owner = _Outputs(handle)
    result = Outputs()
    result.model_version = lib.tandem_outputs_model_version(handle)
    for k in range(lib.tandem_outputs_count(handle)):
        name = lib.tandem_outputs_name(handle, k).decode()
        t = lib.tandem_outputs_tensor(handle, k)
        code = lib.tandem_tensor_dtype(t)
        dtype = _DTYPES[code]
        if dtype is None:
            raise TandemError("TANDEM_ERR_ARGUMENT", f"output '{name}' has a dtype numpy lacks")
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
    """An inference request in flight, from Client.infer_async."""

    def __init__(self, handle, keep):
        self._handle = handle
        self._keep = keep  # the inputs' arrays and tensors, until the reply

    def test(self):
        """True once the reply is here; never blocks."""
        done = ctypes.c_int(0)
        _check(_c().tandem_test(self._handle, ctypes.byref(done)))
        return bool(done.value)

    def wait(self):
        """The outputs, as a dict of numpy arrays."""
        if self._handle is None:
            raise TandemError("TANDEM_ERR_ARGUMENT", "wait() was already called")
        out = ctypes.c_void_p()
        handle, self._handle = self._handle, None
        try:
            _check(_c().tandem_wait(handle, ctypes.byref(out)))
        finally:
            self._release()
        return _to_arrays(out)

    def _release(self):
        if self._keep is not None:
            for t in self._keep[1]:
                _c().tandem_tensor_free(t)
            self._keep = None

    def __del__(self):
        # Dropped without wait(): the reply is discarded when it comes.
        if getattr(self, "_handle", None) is not None and _lib is not None:
            _lib.tandem_request_free(self._handle)
            self._handle = None
            self._release()


class Client:
    """A connection to the job's services through the worker's proxy."""

    def __init__(self, socket=None):
        lib = _c()
        handle = ctypes.c_void_p()
        if socket is None:
            _check(lib.tandem_connect(ctypes.byref(handle)))
        else:
            _check(lib.tandem_connect_to(socket.encode(), ctypes.byref(handle)))
        self._handle = handle

    @classmethod
    def _over(cls, address):
        """A client over a C API handle that its owner frees (a Python
        function task's: the worker's own MPI client)."""
        self = cls.__new__(cls)
        self._handle = ctypes.c_void_p(address)
        self._owned = False
        return self

    def close(self):
        if not getattr(self, "_owned", True):
            self._handle = None
            return
        if self._handle:
            _c().tandem_disconnect(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def wait_ready(self, service, timeout=300.0):
        _check(_c().tandem_wait_ready(self._handle, service.encode(), float(timeout)))

    def infer_async(self, service, inputs):
        """Sends a request; inputs: a dict name -> array, or one array for a
        service with one input (whatever its name)."""
        lib = _c()
        if not isinstance(inputs, dict):
            inputs = {"": inputs}  # the service's only input
        arrays, tensors, names = [], [], []
        try:
            for name, value in inputs.items():
                a = np.ascontiguousarray(value)
                code = _CODES.get(a.dtype)
                if code is None:
                    raise TandemError("TANDEM_ERR_ARGUMENT",
                                      f"input '{name}' has dtype {a.dtype}, which Tandem lacks")
                dims = (ctypes.c_int64 * a.ndim)(*a.shape)
                t = ctypes.c_void_p()
                _check(lib.tandem_tensor_view(code, a.ndim, dims, 0,
                                              ctypes.c_void_p(a.ctypes.data), ctypes.byref(t)))
                arrays.append(a)
                tensors.append(t)
                names.append(name.encode())
            c_names = (ctypes.c_char_p * len(names))(*names)
            c_tensors = (ctypes.c_void_p * len(tensors))(*[t.value for t in tensors])
            handle = ctypes.c_void_p()
            _check(lib.tandem_infer_async(self._handle, service.encode(), len(names), c_names,
                                          c_tensors, ctypes.byref(handle)))
        except BaseException:
            for t in tensors:
                lib.tandem_tensor_free(t)
            raise
        return Request(handle, (arrays, tensors))

    def infer(self, service, inputs):
        """Sends a request and waits: a dict name -> numpy array."""
        return self.infer_async(service, inputs).wait()

    def load_model(self, service, path, version):
        """Loads the TorchScript file path as model version `version` of the
        service on every replica (they go on serving meanwhile); returns the
        version served afterwards. Raises TandemError naming each replica
        that could not load it and why."""
        serving = ctypes.c_int(0)
        _check(_c().tandem_load_model(self._handle, service.encode(), os.fspath(path).encode(),
                                      int(version), ctypes.byref(serving)))
        return serving.value

    def unload_model(self, service, version):
        """Drops a model version from every replica; returns the version served now."""
        serving = ctypes.c_int(0)
        _check(_c().tandem_unload_model(self._handle, service.encode(), int(version),
                                        ctypes.byref(serving)))
        return serving.value

    def call(self, service, body, path=None):
        """A JSON service (OpenAI-compatible): POSTs body, returns the answer's text."""
        lib = _c()
        if not isinstance(body, str):
            body = json.dumps(body)
        answer = ctypes.c_void_p()
        _check(lib.tandem_call(self._handle, service.encode(),
                               path.encode() if path else None, body.encode(),
                               ctypes.byref(answer)))
        try:
            return ctypes.string_at(answer).decode()
        finally:
            lib.tandem_free_string(answer)
