"""tandem.results: what a run's task instances ended with, read from its
journal (``RUN_DIR/journal.jsonl``).

The journal holds one line per instance that reached a final state in any
job that worked on the run (a resumed run appends to it), plus a line per
attempt lost with its rank. An instance's *last* state line wins: after
``--resume`` an instance that one job CANCELED and the next ran has both
lines, and DONE, the later, is its state. ``tandem results RUN_DIR``
prints the same from the command line.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from .errors import IoError

__all__ = ["Result", "results"]


@dataclass(frozen=True)
class Result:
    """One task instance's final state in a run."""

    #: The task's name in the workflow file.
    task: str
    #: The instance's index in ``range(count)``.
    index: int
    #: ``"DONE"``, ``"FAILED"`` or ``"CANCELED"``.
    state: str
    #: What the task returned (a Python task's JSON-able return value, a
    #: C++ task's ``set_result``); None when it returned nothing.
    result: Any = None
    #: Why it FAILED or was CANCELED ("" when DONE).
    reason: str = ""
    #: Attempts it took, over every job of the run.
    attempts: int = 0
    #: The exit code of its last attempt (command and Python tasks).
    exit_code: int = 0
    #: The journal line it was read from (1-based), for finding it by hand.
    line: int = field(default=0, compare=False)

    @property
    def ok(self) -> bool:
        """True when the instance is DONE."""
        return self.state == "DONE"


def _journal_path(run_dir: Union[str, os.PathLike]) -> str:
    path = os.path.join(os.fspath(run_dir), "journal.jsonl")
    if not os.path.isfile(path):
        if not os.path.isdir(run_dir):
            raise IoError("TANDEM_ERR_IO", f"{os.fspath(run_dir)}: no such run directory")
        raise IoError("TANDEM_ERR_IO",
                      f"{path} does not exist: is {os.fspath(run_dir)} a Tandem run directory "
                      "(one of `tandem run`, not an SPMD session, which runs no tasks)?")
    return path


def results(run_dir: Union[str, os.PathLike], task: Optional[str] = None) -> List[Result]:
    """Every task instance of the run that reached a final state, in any of
    its jobs, with its last state: a list of :class:`Result` sorted by task
    name and index (only ``task``'s when given). Instances that have not
    finished are not in it. Raises :class:`tandem.IoError` when ``run_dir``
    is not a run directory. A line cut short by a crash is skipped, as
    ``--resume`` skips it."""
    final: Dict[Tuple[str, int], Result] = {}
    with open(_journal_path(run_dir), encoding="utf-8", errors="replace") as f:
        for number, text in enumerate(f, 1):
            try:
                j = json.loads(text)
            except ValueError:
                continue
            if not isinstance(j, dict) or "lost" in j or "state" not in j:
                continue  # a lost attempt's line says nothing of the final state
            name = j.get("task")
            if task is not None and name != task:
                continue
            key = (name, int(j.get("index", 0)))
            final[key] = Result(task=name, index=key[1], state=j["state"],
                                result=j.get("result"), reason=j.get("reason", ""),
                                attempts=int(j.get("attempts", 0)),
                                exit_code=int(j.get("exit_code", 0)), line=number)
    return [final[k] for k in sorted(final)]
