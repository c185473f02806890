"""Steering from Python function tasks, Python executables and C
executables (issue 20): one `tandem run` of four steering tasks that submit
`square` instances, then one test per property, read from the run's
journal and the tasks' files.

Environment (tests/CMakeLists.txt): TANDEM (the launcher), MPIEXEC,
TANDEM_MPIEXEC_FLAGS, STEER_C (tests/steering/steer_task.c, built)."""
import json
import os
import shlex
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def workflow(tmp_path):
    text = f"""
[job]
pythonpath = [{json.dumps(HERE)}]
gpus_per_node = 2   # pretend: only ids are handed out

[[task]]
name = "think"
python = "steer_tasks:think"
steering = true

[[task]]
name = "think_exe"
command = [{json.dumps(sys.executable)}, {json.dumps(os.path.join(HERE, "think_exe.py"))}]
steering = true

[[task]]
name = "think_c"
command = [{json.dumps(os.environ["STEER_C"])}]
steering = true

[[task]]
name = "not_steering"
command = [{json.dumps(sys.executable)}, {json.dumps(os.path.join(HERE, "not_steering.py"))}]

[[task]]
name = "square"
python = "steer_tasks:square"
count = 0

[[task]]
name = "prep"
python = "steer_tasks:prep"
count = 2

[[task]]
name = "flaky"
python = "steer_tasks:flaky"
count = 0

[[task]]
name = "pair"
python = "steer_tasks:pair"
ranks = 2
count = 0

[[task]]
name = "gpu"
python = "steer_tasks:gpu"
gpus_per_task = 1
count = 0

[[task]]
name = "nap"
command = ["sleep", "5"]
count = 0
"""
    path = tmp_path / "steering.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("steering")
    run_dir = tmp / "run"
    flags = shlex.split(os.environ.get("TANDEM_MPIEXEC_FLAGS",
                                       "--oversubscribe --mca btl self,vader"))
    # The coordinator and 4 workers: 3 steer, one is always left to run
    # what they submit.
    done = subprocess.run([os.environ.get("MPIEXEC", "mpiexec"), *flags, "-n", "5",
                           os.environ["TANDEM"], "run", str(workflow(tmp)), "--run-dir",
                           str(run_dir)],
                          capture_output=True, text=True, timeout=240, check=False)
    journal, submitted = {}, {}
    with open(run_dir / "journal.jsonl") as f:
        for line in f:
            e = json.loads(line)
            if "submitted" in e:
                submitted[(e["task"], e["index"])] = e
            elif "task" in e:
                journal.setdefault((e["task"], e["index"]), []).append(e)
    return {"dir": run_dir, "journal": journal, "submitted": submitted, "rc": done.returncode,
            "log": done.stdout + done.stderr}


def out(run, task):
    return (run["dir"] / "tasks" / task / "0.out").read_text()


def test_every_submitted_instance_ran_exactly_once(run):
    squares = {k: v for k, v in run["journal"].items() if k[0] == "square"}
    # think: 3 x 20 + 1 + 1; think_exe: 10 + 1 (a key of its own); think_c: 3.
    assert sorted(i for _, i in squares) == list(range(76)), run["log"][-3000:]
    for (_, i), lines in squares.items():
        assert len(lines) == 1, f"square[{i}] journaled {len(lines)} times"
    # The one that was made to fail is the only square that failed.
    failed = [k for k, v in squares.items() if v[0]["state"] != "DONE"]
    assert len(failed) == 1 and run["rc"] != 0


def test_a_python_function_task_steers_rounds_as_they_complete(run):
    (line,) = run["journal"][("think", 0)]
    assert line["state"] == "DONE", line
    rounds = line["result"]["rounds"]
    assert rounds == [sorted((100 * r + i) ** 2 for i in range(20)) for r in range(3)]
    log = dict((entry[0], entry[1:]) for entry in line["result"]["log"])
    assert "no task 'nonesuch'" in log["unknown"][0]
    assert log["failed"][0] == "FAILED" and "square of 1 refused" in log["failed"][1]


def test_rounds_ran_after_the_round_before(run):
    # Each of think's rounds runs `after` the round before: by the
    # submissions' args (journaled with them), the instances of each round.
    by_round = {}
    for (task, index), sub in run["submitted"].items():
        if "round" in sub["args"]:
            (line,) = run["journal"][(task, index)]
            by_round.setdefault(sub["args"]["round"], []).append(line)
    assert sorted(by_round) == [0, 1, 2] and all(len(v) == 20 for v in by_round.values())
    for r in (1, 2):
        started = min(line["started_us"] for line in by_round[r])
        ended = max(line["ended_us"] for line in by_round[r - 1])
        assert started >= ended, f"round {r} started before round {r - 1} ended"
    # The submissions say what they waited for, by task and index.
    assert all(len(run["submitted"][("square", line["index"])]["after"]) == 20
               for line in by_round[2])


def test_a_python_executable_steers_through_the_proxy(run):
    (line,) = run["journal"][("think_exe", 0)]
    assert line["state"] == "DONE", line
    lines = out(run, "think_exe").splitlines()
    got = json.loads(lines[0])
    assert got["ys"] == [x * x for x in range(1000, 1010)] + [1000 * 1000]
    assert got["states"] == ["DONE"]
    assert lines[1].startswith("unknown handle:") and "no task instance with handle" in lines[1]


def test_a_c_executable_steers_through_the_proxy(run):
    (line,) = run["journal"][("think_c", 0)]
    assert line["state"] == "DONE", (line, run["log"][-2000:])
    text = out(run, "think_c")
    ys = sorted(json.loads(l.split(" ", 2)[2])["y"] for l in text.splitlines()
                if l.startswith("square["))
    assert ys == [49, 64, 81]
    assert "unknown: submit: the workflow has no task 'nonesuch'" in text
    assert "not an object:" in text


def test_a_task_that_is_not_steering_is_refused(run):
    assert "refused: only a running task with steering = true" in out(run, "not_steering")


def test_the_report_shows_each_steering_tasks_rounds(run):
    report = subprocess.run([os.environ["TANDEM"], "report", str(run["dir"]), "--json"],
                            capture_output=True, text=True, timeout=60, check=True)
    rounds = [g for g in json.loads(report.stdout)["steering_rounds"]
              if g["submitter"] == "think[0]"]
    # The call that named an unknown task added nothing and is no round.
    assert [(g["round"], g["instances"], g["done"], g["failed"]) for g in rounds][:4] == \
        [(1, 20, 20, 0), (2, 20, 20, 0), (3, 20, 20, 0), (4, 1, 0, 1)]
    assert len(rounds) == 9  # then pair, gpu, flaky, nap and square, one call each
    for before, after in zip(rounds, rounds[1:]):
        assert before["at_s"] <= after["at_s"]
        assert before["last_end_s"] <= after["first_start_s"] or after["round"] >= 4
    text = subprocess.run([os.environ["TANDEM"], "report", str(run["dir"])],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert "steering rounds" in text
    assert "think[0] round   4 at" in text and "1 x square; 0 done, 1 failed" in text


def test_a_submission_has_its_own_retries_and_timeout(run):
    (line,) = run["journal"][("think", 0)]
    log = dict((entry[0], entry[1:]) for entry in line["result"]["log"])
    states, nap_reason = log["own"]
    assert states == ["DONE", "FAILED", "DONE"]
    (flaky,) = run["journal"][("flaky", 0)]
    assert flaky["state"] == "DONE" and flaky["attempts"] == 3  # the task has no retries
    assert "timed out" in nap_reason or "timeout" in nap_reason, nap_reason
    (nap,) = run["journal"][("nap", 0)]
    assert nap["ended_us"] - nap["started_us"] < 3_000_000  # not the 5 s it sleeps
    assert "retries" in log["retries"][0] and "0 or more" in log["retries"][0]
    assert "task 'nonesuch'" in log["after"][0]


def test_after_a_workflow_task_waits_for_all_its_instances(run):
    late = [i for (_, i), sub in run["submitted"].items() if sub.get("after_tasks") == ["prep"]]
    assert len(late) == 1
    (line,) = run["journal"][("square", late[0])]
    prep_end = max(run["journal"][("prep", i)][0]["ended_us"] for i in range(2))
    assert line["state"] == "DONE" and line["started_us"] >= prep_end


def test_tasks_of_several_ranks_and_with_gpus_can_be_submitted(run):
    (line,) = run["journal"][("think", 0)]
    log = dict((entry[0], entry[1:]) for entry in line["result"]["log"])
    states, results = log["wide"]
    assert states == ["DONE", "DONE", "DONE"], results
    assert results[0] == {"size": 2, "sum": 3} and results[1] == {"size": 2, "sum": 3}
    assert len(results[2]["gpus"]) == 1 and results[2]["gpus"][0] in ("0", "1")
    assert "steering task, which cannot be submitted" in log["steering"][0]
