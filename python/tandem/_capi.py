"""libtandem's C API through ctypes, loaded on first use, and the C hot path
(tandem._native) bound to the same library."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Optional

import numpy as np

from .errors import ConnectError, error_for

# numpy types in tandem_dtype order (BF16 and BYTES have none).
DTYPES = [np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32,
          np.int64, np.float16, None, np.float32, np.float64, None]
CODES = {np.dtype(t): i for i, t in enumerate(DTYPES) if t is not None}

_lib: Optional[ctypes.CDLL] = None
native = None  # tandem._native once bound, else None (the ctypes path serves)


def find_library() -> str:
    """libtandem.so: $TANDEM_LIBRARY, else next to this package (installed
    or in the build tree), else the loader's search path."""
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
    raise ConnectError("TANDEM_ERR_CONNECT",
                       "libtandem.so not found: set TANDEM_LIBRARY (tandem run sets it for tasks)")


def lib() -> ctypes.CDLL:
    """The library, loaded and declared on first use."""
    global _lib
    if _lib is not None:
        return _lib
    loaded = ctypes.CDLL(find_library())
    p, i, c = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    pp = ctypes.POINTER(ctypes.c_void_p)
    pi, pc = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_char_p)
    for name, res, args in [
        ("tandem_last_error", c, []),
        ("tandem_last_config_error", i, [pc, pi, pi, pc, pc]),
        ("tandem_status_name", c, [i]),
        ("tandem_connect", i, [pp]),
        ("tandem_connect_to", i, [c, pp]),
        ("tandem_disconnect", None, [p]),
        ("tandem_session_start_comm", i, [p, c, pp]),
        ("tandem_session_is_app", i, [p]),
        ("tandem_session_app_comm_f", ctypes.c_int32, [p]),
        ("tandem_session_client", p, [p]),
        ("tandem_session_run_dir", c, [p]),
        ("tandem_session_finalize", i, [p]),
        ("tandem_session_finalize_code", i, [p, i]),
        ("tandem_session_abort", None, [p, i, c]),
        ("tandem_set_ready_timeout", i, [p, ctypes.c_double]),
        ("tandem_wait_ready", i, [p, c, ctypes.c_double]),
        ("tandem_scale", i, [p, c, ctypes.c_int]),
        ("tandem_tensor_view", i, [i, i, ctypes.POINTER(ctypes.c_int64), i, p, pp]),
        ("tandem_tensor_free", None, [p]),
        ("tandem_tensor_dtype", i, [p]),
        ("tandem_tensor_ndim", i, [p]),
        ("tandem_tensor_dim", ctypes.c_int64, [p, i]),
        ("tandem_tensor_nbytes", ctypes.c_size_t, [p]),
        ("tandem_tensor_data", p, [p]),
        ("tandem_infer_async", i, [p, c, i, ctypes.POINTER(c), ctypes.POINTER(p), pp]),
        ("tandem_test", i, [p, pi]),
        ("tandem_wait", i, [p, pp]),
        ("tandem_request_free", None, [p]),
        ("tandem_outputs_count", i, [p]),
        ("tandem_outputs_name", c, [p, i]),
        ("tandem_outputs_tensor", p, [p, i]),
        ("tandem_outputs_free", None, [p]),
        ("tandem_outputs_model_version", i, [p]),
        ("tandem_outputs_source", c, [p]),
        ("tandem_load_model", i, [p, c, c, i, pi]),
        ("tandem_unload_model", i, [p, c, i, pi]),
        ("tandem_call", i, [p, c, c, c, pp]),
        ("tandem_call_async", i, [p, c, c, c, pp]),
        ("tandem_wait_answer", i, [p, pp]),
        ("tandem_infer_async_opts", i, [p, c, i, ctypes.POINTER(c), ctypes.POINTER(p), p, pp]),
        ("tandem_free_string", None, [p]),
        ("tandem_steer", i, [p, c, pp]),
        ("tandem_infer_all_async_f", i, [p, ctypes.c_int32, c, i, ctypes.POINTER(c),
                                         ctypes.POINTER(p), pp]),
        ("tandem_collective_wait", i, [p, pp]),
    ]:
        f = getattr(loaded, name)
        f.restype = res
        f.argtypes = args
    _lib = loaded
    _bind_native(loaded)
    return loaded


def error(status: int):
    """The TandemError subclass instance for a failed call's status."""
    api = lib()
    name = api.tandem_status_name(status).decode()
    message = api.tandem_last_error().decode(errors="replace")
    where = None
    file, key, reason = ctypes.c_char_p(), ctypes.c_char_p(), ctypes.c_char_p()
    line, column = ctypes.c_int(), ctypes.c_int()
    if api.tandem_last_config_error(ctypes.byref(file), ctypes.byref(line), ctypes.byref(column),
                                    ctypes.byref(key), ctypes.byref(reason)):
        where = {"file": file.value.decode(errors="replace"), "line": line.value,
                 "column": column.value, "key": key.value.decode(errors="replace"),
                 "reason": reason.value.decode(errors="replace")}
    return error_for(name, message, where)


def check(status: int) -> None:
    """Raises the error of a failed call."""
    if status != 0:
        raise error(status)


def raise_status(status: int, message: str):
    """For tandem._native: raises the error a status and message stand for."""
    raise error_for(lib().tandem_status_name(status).decode(), message)


def _bind_native(loaded: ctypes.CDLL) -> None:
    global native
    if os.environ.get("TANDEM_PYTHON_NATIVE", "1") == "0":
        return  # the ctypes path, for comparison
    try:
        from . import _native
    except ImportError:
        return
    from .client import Outputs
    names = ["tandem_last_error", "tandem_tensor_view", "tandem_tensor_free",
             "tandem_tensor_dtype", "tandem_tensor_ndim", "tandem_tensor_dim",
             "tandem_tensor_nbytes", "tandem_tensor_data", "tandem_infer_async", "tandem_wait",
             "tandem_outputs_count", "tandem_outputs_name", "tandem_outputs_tensor",
             "tandem_outputs_free", "tandem_outputs_model_version", "tandem_outputs_source"]
    addresses = {n: ctypes.cast(getattr(loaded, n), ctypes.c_void_p).value for n in names}
    dtypes = [None if t is None else np.dtype(t) for t in DTYPES]
    _native.bind(addresses, raise_status, Outputs, np.ndarray, dtypes, np.ascontiguousarray)
    native = _native
