"""The Python side of Python function tasks.

A worker rank that runs tasks named ``python = "module:function"`` embeds
CPython (libtandem_python.so) and calls :func:`find` once per task at start
and :func:`run` once per attempt. Users meet only :class:`TaskContext`, the
object their function receives.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import json
import os
import sys
import sysconfig
import traceback
from typing import Any, Callable, Optional, Tuple

__all__ = ["TaskContext"]

# A return value larger than this (as JSON) is not recorded: it is a line of
# the journal. The worker sets it from its own (kMaxResultBytes) at start.
MAX_RESULT_BYTES = 16 * 1024


class TaskContext:
    """What a running Python function task knows about itself.

    Made by the worker for each attempt and passed to the function as its
    only argument::

        def simulate(ctx: tandem.TaskContext):
            steps = ctx.args.get("steps", 100)
            y = ctx.client.infer("surrogate", x)["y"]
            return {"energy": float(y.sum())}
    """

    __slots__ = ("name", "index", "count", "attempt", "run_dir", "output_dir", "args",
                 "_client", "_fcomm", "rank", "size", "_comm", "gpus", "_steering")

    #: The task's name in the workflow file.
    name: str
    #: This instance's index in ``range(count)``.
    index: int
    #: How many instances the task has.
    count: int
    #: The attempt, from 1, counted over all the jobs of a resumed run:
    #: above 1 when the task is being retried or run again after --resume.
    attempt: int
    #: The run directory.
    run_dir: str
    #: ``RUN_DIR/tasks/NAME``, shared by the task's instances; it exists.
    output_dir: str
    #: The task's ``args`` table from the workflow file (a fresh dict each call).
    args: dict
    #: This rank's rank in :attr:`comm` (0 for a one-rank task).
    rank: int
    #: The number of ranks of the task (``ranks`` in the workflow).
    size: int
    #: The ids of the GPUs this rank was given (``gpus_per_task``), as
    #: CUDA_VISIBLE_DEVICES names them; empty without any.
    gpus: tuple

    def __init__(self, name, index, count, attempt, run_dir, output_dir, args, client, fcomm,
                 rank, size, gpus=(), steer=None):
        self.name = name
        self.index = index
        self.count = count
        self.attempt = attempt
        self.run_dir = run_dir
        self.output_dir = output_dir
        self.args = args
        self._client = client
        self._fcomm = fcomm
        self.rank = rank
        self.size = size
        self.gpus = gpus
        self._comm = None
        self._steering = None
        if steer is not None:
            from .steering import Steering
            self._steering = Steering(steer)

    def _steer(self):
        if self._steering is None:
            from .errors import ArgumentError
            raise ArgumentError(ArgumentError.STATUS,
                                f"task '{self.name}' submits or waits for tasks but is not "
                                "marked steering = true in the workflow file")
        return self._steering

    def submit(self, task: str, args=None, *, priority: int = 0, after=(), key=None,
               round=None, retries=None, timeout=None) -> int:
        """Adds an instance of workflow task ``task`` to the run and returns
        its handle (a steering task only: ``steering = true``). See
        :meth:`tandem.Steering.submit`."""
        return self._steer().submit(task, args, priority=priority, after=after, key=key,
                                    round=round, retries=retries, timeout=timeout)

    def submit_many(self, task: str, args, *, priority: int = 0, after=(), keys=None,
                    round=None, retries=None, timeout=None):
        """One instance of ``task`` per dict in ``args``, in one journal
        write; their handles. See :meth:`tandem.Steering.submit_many`."""
        return self._steer().submit_many(task, args, priority=priority, after=after, keys=keys,
                                         round=round, retries=retries, timeout=timeout)

    def wait(self, handles):
        """Waits for every instance in ``handles`` to end: a list of
        :class:`tandem.TaskResult`, in order."""
        return self._steer().wait(handles)

    def wait_any(self, handles):
        """Waits for at least one instance in ``handles`` to end: those
        that have."""
        return self._steer().wait_any(handles)

    def as_completed(self, handles):
        """Yields a :class:`tandem.TaskResult` for each instance in
        ``handles`` as it ends."""
        return self._steer().as_completed(handles)

    @property
    def client(self):
        """The job's services, straight over this worker's MPI client (no
        proxy, no socket): a :class:`tandem.Client`. None in an isolated
        task, which runs in a forked child that cannot use MPI."""
        return self._client

    @property
    def comm(self):
        """An mpi4py communicator over the task's ranks (``ranks > 1``), or
        ``MPI.COMM_SELF``. Valid during the call only; Tandem frees it."""
        if self._comm is None:
            if self._fcomm is None:
                raise RuntimeError("an isolated task runs in a forked child that cannot use MPI")
            from mpi4py import MPI
            self._comm = MPI.Comm.f2py(self._fcomm)
        return self._comm

    def results(self, task: str):
        """The results of ``task``'s instances in this run, as
        :func:`tandem.results` gives them: a list of :class:`tandem.Result`
        by index. Meant for a task that runs ``after`` it, when they are all
        recorded; instances not yet finished are not in the list."""
        from .results import results
        return results(self.run_dir, task)

    def __repr__(self):
        ranks = f", rank {self.rank} of {self.size}" if self.size > 1 else ""
        return (f"<tandem.TaskContext {self.name}[{self.index}] of {self.count}, "
                f"attempt {self.attempt}{ranks}>")


class _LazyFile:
    """A text stream that creates its file on the first write, so that an
    attempt that prints nothing costs no file. One per stream serves every
    attempt (open() names the attempt's file; no object per task)."""

    def __init__(self, suffix):
        self._suffix = suffix
        self._ctx = None
        self._file = None

    def open(self, ctx):
        self._ctx = ctx  # the file is named only if the attempt prints

    def write(self, text):
        if self._file is None:
            self._file = open(_stem(self._ctx) + self._suffix, "w", encoding="utf-8",
                              errors="replace")
        return self._file.write(text)

    def flush(self):
        if self._file is not None:
            self._file.flush()

    def close(self):
        self._ctx = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def isatty(self):
        return False

    @property
    def encoding(self):
        return "utf-8"


_OUT, _ERR = _LazyFile(".out"), _LazyFile(".err")


def _stem(ctx) -> str:
    """OUTPUT_DIR/INDEX, or OUTPUT_DIR/INDEX.tryN for a retry: the names the
    worker gives every attempt's files (attempt_stem, src/worker/worker.cpp).
    A multi-rank task's ranks other than 0 add .rankR, so that each keeps
    its own output."""
    retry = f".try{ctx.attempt}" if ctx.attempt > 1 else ""
    rank = f".rank{ctx.rank}" if ctx.size > 1 and ctx.rank > 0 else ""
    return f"{ctx.output_dir}/{ctx.index}{retry}{rank}"


class _Routed:
    """sys.stdout or sys.stderr of a worker rank: while a task runs, its
    attempt's file; otherwise the worker's own stream. Installed once, so
    that a logging handler made at import time (logging.basicConfig, which
    keeps the stream it saw) writes into the running task's .err file like
    print does, not into the worker's log."""

    def __init__(self, fallback, lazy: "_LazyFile"):
        self._fallback = fallback
        self._lazy = lazy

    def _target(self):
        # The attempt's file while one is open (run() opens it): no flag of
        # our own to set per task.
        return self._lazy if self._lazy._ctx is not None else self._fallback

    def write(self, text):
        return self._target().write(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        self._target().flush()

    def isatty(self):
        return False if self._lazy._ctx is not None else self._fallback.isatty()

    def __getattr__(self, name):  # encoding, fileno, errors, ...: the worker's stream's
        return getattr(self._fallback, name)


_ROUTED: Optional[Tuple[_Routed, _Routed]] = None


def install_streams() -> None:
    """Called by the worker's embedded interpreter at start (never in a user's
    own program): sys.stdout and sys.stderr follow the running task."""
    global _ROUTED
    if _ROUTED is None:
        _ROUTED = (_Routed(sys.stdout, _OUT), _Routed(sys.stderr, _ERR))
        sys.stdout, sys.stderr = _ROUTED


class LoadError(Exception):
    """Why a task's function cannot be found; the worker turns it into the
    workflow's config error."""


def _library_dirs() -> Tuple[str, ...]:
    """Where the standard library and installed packages live: frames there
    are not the user's."""
    dirs = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    return tuple(os.path.realpath(d) + os.sep for d in dirs if d)


def _is_library(filename: str) -> bool:
    return os.path.realpath(filename).startswith(_library_dirs())


def _where_it_failed(exc: BaseException, module: str) -> str:
    """'FILE:LINE' of the import's failure: a syntax error's own place, else
    the innermost frame of the user's own code (not importlib, the standard
    library or an installed package), else the innermost frame."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "importlib" not in f.filename and not f.filename.startswith("<")]
    own = [f for f in frames if not _is_library(f.filename)]
    for chosen in (own, frames):
        if chosen:
            return f"{chosen[-1].filename}:{chosen[-1].lineno}"
    return module


def _shadowed(module_name: str, module) -> Optional[str]:
    """The user's own file that a standard-library module of the same name
    hides (a random.py beside the workflow), if there is one."""
    top = module_name.split(".")[0]
    file = getattr(module, "__file__", None)
    if not file or not _is_library(file):
        return None
    for d in sys.path:
        if not d or _is_library(os.path.join(d, "x")):
            continue
        for candidate in (os.path.join(d, top + ".py"), os.path.join(d, top, "__init__.py")):
            if os.path.isfile(candidate) and os.path.realpath(candidate) != os.path.realpath(file):
                return candidate
    return None


def find(spec: str) -> Callable:
    """The function that ``python = "module:function"`` names. Raises
    LoadError saying which module, file and line are at fault; the whole
    traceback of a module that does not import goes to stderr (the
    worker's log)."""
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            path = ", ".join(p for p in sys.path if p) or "(empty)"
            raise LoadError(f"no module named '{module_name}': put {module_name.split('.')[0]}.py "
                            f"in the workflow's directory or on [job] pythonpath "
                            f"(sys.path: {path})") from None
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
        raise LoadError(f"module '{module_name}' does not import "
                        f"({_where_it_failed(e, module_name)}): {type(e).__name__}: {e}") from None
    except BaseException as e:  # a SyntaxError, or anything the module raised as it ran
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
        raise LoadError(f"module '{module_name}' does not import "
                        f"({_where_it_failed(e, module_name)}): {type(e).__name__}: {e}") from None
    where = getattr(module, "__file__", None) or module_name
    hidden = _shadowed(module_name, module)
    if hidden:
        raise LoadError(f"'{module_name}' is the standard library's module ({where}), which "
                        f"hides your {hidden}: rename it (and the workflow's python key) to a "
                        f"name the standard library does not use")
    fn = getattr(module, function_name, None)
    if fn is None:
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        close = difflib.get_close_matches(function_name, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else (
            f"; it has: {', '.join(sorted(names))}" if names else "")
        raise LoadError(f"module '{module_name}' ({where}) has no function "
                        f"'{function_name}'{hint}")
    if not callable(fn):
        raise LoadError(f"'{function_name}' in module '{module_name}' ({where}) is "
                        f"{_a(type(fn).__name__)}, not a function")
    code = getattr(fn, "__code__", None)
    if code is not None:
        where = f"{code.co_filename}:{code.co_firstlineno}"
    _check_signature(fn, module_name, function_name, where)
    return fn


def _a(noun: str) -> str:
    """'an int', 'a str'."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _check_signature(fn: Callable, module_name: str, function_name: str, where: str) -> None:
    """Refuses, at start and in `tandem validate`, a function that cannot
    work as a task: a coroutine (Tandem does not run an event loop for it),
    a generator (its values would be lost), or one that cannot take the
    context as its only argument."""
    name = f"'{function_name}' in module '{module_name}' ({where})"
    target = inspect.unwrap(fn)
    if inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target):
        raise LoadError(f"{name} is an async function: Tandem calls task functions on the "
                        f"worker's thread and runs no event loop for them; make it a plain "
                        f"function that calls asyncio.run(...) itself")
    if inspect.isgeneratorfunction(target):
        raise LoadError(f"{name} is a generator (it yields): its values would be lost; return "
                        f"a value (a list, say) instead")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or extension without one: let the call say
    try:
        sig.bind(object())
    except TypeError:
        params = ", ".join(sig.parameters) or "none"
        raise LoadError(f"{name} must take one argument, the task's context (def "
                        f"{function_name}(ctx): ...); its parameters are: {params}") from None


def _plain(value: Any) -> Any:
    """JSON for what json does not know: numpy scalars and small arrays, paths."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"a {type(value).__name__} is not JSON-able")


def run(fn: Callable, ctx: TaskContext, redirect: bool) -> Tuple[Optional[str], str, int]:
    """Calls fn(ctx) with the attempt's print output in OUTPUT_DIR/INDEX.out
    and .err (redirect false: leave sys.stdout as it is, for an isolated
    task, whose files are its descriptors). Returns (error, result_json,
    exit_code): error is None when the function returned, else the reason
    the attempt failed; exit_code is what ``sys.exit(n)`` asked for.

    A return value that cannot be recorded (not JSON-able, or over
    MAX_RESULT_BYTES) fails the attempt: a finished result that the journal
    lacks would be lost without a word. ``sys.exit(0)`` or ``sys.exit()``
    ends the function as a return of None does."""
    # In a worker, sys.stdout and sys.stderr follow the open attempt
    # (install_streams); elsewhere they are swapped for the call.
    swap = redirect and _ROUTED is None
    saved = None
    if redirect:
        _OUT.open(ctx)
        _ERR.open(ctx)
        if swap:
            saved = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = _OUT, _ERR
    error, result, exit_code = None, "", 0
    try:
        try:
            value = fn(ctx)
        except SystemExit as e:
            if e.code is None or e.code == 0:
                value = None
            else:
                raise
        if value is not None:
            try:
                result = json.dumps(value, default=_plain, allow_nan=False)
            except (TypeError, ValueError) as e:
                error = (f"the return value cannot be recorded: {e}; return JSON-able values "
                         f"(dicts, lists, numbers, strings, numpy scalars and small arrays)")
                result = ""
            else:
                if len(result) > MAX_RESULT_BYTES:
                    error = (f"the return value cannot be recorded: {len(result)} bytes of "
                             f"JSON, over the {MAX_RESULT_BYTES} a journal line holds; write "
                             f"large results to ctx.output_dir and return their path")
                    result = ""
        if error:
            print(f"tandem: {error}", file=sys.stderr)
    except BaseException as e:  # SystemExit(n) and KeyboardInterrupt fail the attempt too
        # From the user's function down: this frame is not theirs.
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        traceback.print_exception(type(e), e, tb or e.__traceback__, file=sys.stderr)
        # Named only on failure: relpath costs more than a null task.
        where = os.path.relpath(_stem(ctx) + ".err", ctx.run_dir) if redirect else "its stderr"
        if isinstance(e, SystemExit):
            exit_code = e.code if isinstance(e.code, int) else 1
            error = f"sys.exit({e.code!r}): exit code {exit_code} (traceback in {where})"
        else:
            error = f"{type(e).__name__}: {e} (traceback in {where})"
    finally:
        if redirect:
            if swap:
                sys.stdout, sys.stderr = saved
            _OUT.close()
            _ERR.close()
        else:  # an isolated child leaves through _exit: nothing flushes for it
            sys.stdout.flush()
            sys.stderr.flush()
        ctx._comm = None  # the communicator is freed after the call
    return error, result, exit_code
