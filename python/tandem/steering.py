"""Adaptive workflows from Python: a steering task submits task instances
while the job runs and waits for them (docs/user-guide.md#adaptive-workflows).

A Python function task with ``steering = true`` does it through its
context (``ctx.submit``, ``ctx.wait``, ``ctx.as_completed``); an executable
task with ``steering = true`` through :class:`Steering`, which reaches the
coordinator through its worker's proxy::

    steer = tandem.Steering()
    handles = steer.submit_many("simulate", [{"x": x} for x in candidates])
    for done in steer.as_completed(handles):
        print(done.index, done.state, done.result)

Every submission is in the run's journal before ``submit`` returns. A
request without a ``key`` gets the submitter's next one, so that a steering
task rerun by ``--resume`` that submits in the same order gets its earlier
handles back instead of new instances.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Optional, Sequence

from .errors import ArgumentError

__all__ = ["Steering", "TaskResult"]


@dataclass(frozen=True)
class TaskResult:
    """How a submitted task instance ended."""

    #: The handle ``submit`` gave it.
    handle: int
    #: The workflow task it is an instance of.
    task: str
    #: Its index in that task (after the file's ``count`` instances).
    index: int
    #: ``"DONE"``, ``"FAILED"`` or ``"CANCELED"``.
    state: str
    #: The exit code of its last attempt.
    exit_code: int = 0
    #: Why it FAILED or was CANCELED ("" when DONE).
    reason: str = ""
    #: What it returned (JSON), or None.
    result: Any = None

    @property
    def ok(self) -> bool:
        """True when it ended DONE."""
        return self.state == "DONE"


def _refused(why: str) -> ArgumentError:
    return ArgumentError(ArgumentError.STATUS, why)


def _result(j: Mapping) -> TaskResult:
    return TaskResult(handle=j["handle"], task=j["task"], index=j["index"], state=j["state"],
                      exit_code=j.get("exit_code", 0), reason=j.get("reason", ""),
                      result=j.get("result"))


def _after(after: Iterable, takes: str = "after takes handles and task names") -> List:
    """Handles, and names of workflow tasks (every instance of each)."""
    out = []
    for a in after:
        if isinstance(a, TaskResult):
            a = a.handle
        if isinstance(a, str):
            out.append(a)
        elif isinstance(a, int) and not isinstance(a, bool):
            out.append(a)
        else:
            raise _refused(f"{takes}, not {a!r}")
    return out


def _handles(handles: Iterable[int]) -> List[int]:
    """Handles only (what wait takes)."""
    takes = "a task handle is an int from submit"
    out = _after(handles, takes)
    for h in out:
        if isinstance(h, str):
            raise _refused(f"{takes}, not {h!r}")
    return out


class Steering:
    """A steering task's line to the coordinator.

    :param line: how requests reach the coordinator (a callable from request
        text to answer text); None in an executable task: its worker's
        proxy, from ``TANDEM_SOCKET``.
    """

    def __init__(self, line: Optional[Callable[[str], str]] = None):
        if line is None:
            from .client import Client
            client = Client()
            line = client._steer
            self._client = client  # keeps the connection open
        self._line = line

    def _ask(self, request: dict) -> dict:
        answer = json.loads(self._line(json.dumps(request)))
        if "error" in answer:
            raise _refused(answer["error"])
        return answer

    def submit(self, task: str, args: Optional[Mapping] = None, *, priority: int = 0,
               after: Sequence = (), key: Optional[str] = None,
               round: Optional[int] = None, retries: Optional[int] = None,
               timeout: Optional[float] = None) -> int:
        """Adds one instance of workflow task ``task`` with ``args`` and
        returns its handle. It runs once every instance in ``after`` is DONE:
        handles, or names of workflow tasks (each of their instances there
        is now). ``priority`` as in the file; ``retries`` and ``timeout``
        (seconds) its own, else the task's. The same ``key`` gives back the
        same instance. ``round`` (>= 0) is the round ``tandem report`` shows
        it in; without one, each submit call is a round.

        :raises ArgumentError: an unknown task, one that cannot be
            submitted, an unknown handle, or a task that is not steering.
        """
        return self.submit_many(task, [args or {}], priority=priority, after=after,
                                keys=None if key is None else [key], round=round,
                                retries=retries, timeout=timeout)[0]

    def submit_many(self, task: str, args: Sequence[Mapping], *, priority: int = 0,
                    after: Sequence = (), keys: Optional[Sequence[str]] = None,
                    round: Optional[int] = None, retries: Optional[int] = None,
                    timeout: Optional[float] = None) -> List[int]:
        """Adds one instance of ``task`` per entry of ``args``, in one
        journal write; their handles, in order."""
        if keys is not None and len(keys) != len(args):
            raise _refused(f"submit_many: {len(keys)} keys for {len(args)} instances")
        waits_for = _after(after)
        requests = []
        for i, a in enumerate(args):
            if not isinstance(a, Mapping):
                raise _refused(f"submit: the args of a '{task}' request must be a dict, "
                                    f"not {type(a).__name__}")
            r = {"task": task, "args": dict(a), "priority": int(priority), "after": waits_for}
            if keys is not None:
                r["key"] = str(keys[i])
            if round is not None:
                r["round"] = int(round)
            if retries is not None:
                r["retries"] = int(retries)
            if timeout is not None:
                r["timeout"] = float(timeout)
            requests.append(r)
        return self._ask({"submit": requests})["handles"]

    def wait(self, handles: Iterable[int]) -> List[TaskResult]:
        """Waits until every instance in ``handles`` has ended; their
        results, in the same order."""
        return [_result(j) for j in self._ask({"wait": _handles(handles)})["results"]]

    def wait_any(self, handles: Iterable[int]) -> List[TaskResult]:
        """Waits until at least one instance in ``handles`` has ended;
        all that have."""
        return [_result(j) for j in self._ask({"wait": _handles(handles), "any": True})["results"]]

    def as_completed(self, handles: Iterable[int]) -> Iterator[TaskResult]:
        """Yields each instance's result as it ends."""
        left = _handles(handles)
        while left:
            ended = self.wait_any(left)
            gone = {r.handle for r in ended}
            left = [h for h in left if h not in gone]
            yield from ended
