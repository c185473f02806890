"""Python function tasks end to end: one `tandem run` of tasks.toml (5
ranks: the coordinator, the scale service, 3 workers), then one test per
property, read from the run directory and its journal.

Environment (tests/CMakeLists.txt): TANDEM (the launcher), MPIEXEC,
TANDEM_MPIEXEC_FLAGS, TANDEM_TEST_TASKS (the C++ test tasks' library)."""
import json
import os
import shlex
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def mpiexec(n, *args, check=True):
    flags = shlex.split(os.environ.get("TANDEM_MPIEXEC_FLAGS",
                                       "--oversubscribe --mca btl self,vader"))
    cmd = [os.environ.get("MPIEXEC", "mpiexec"), *flags, "-n", str(n), os.environ["TANDEM"], *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("python-tasks") / "run"
    done = mpiexec(5, "run", os.path.join(HERE, "tasks.toml"), "--run-dir", str(run_dir))
    journal = {}
    with open(run_dir / "journal.jsonl") as f:
        for line in f:
            e = json.loads(line)
            journal.setdefault((e["task"], e["index"]), []).append(e)
    return {"dir": run_dir, "journal": journal, "rc": done.returncode,
            "log": done.stdout + done.stderr}


def final(run, task, index=0):
    lines = run["journal"][(task, index)]
    assert len(lines) == 1, f"{task}[{index}] journaled {len(lines)} times"
    return lines[0]


def test_the_run_ends_failed_because_one_task_failed(run):
    assert run["rc"] != 0, run["log"][-2000:]
    assert "fails[0] FAILED" in run["log"]


def test_args_index_count_attempt_reach_the_function(run):
    for i in range(4):
        seen = json.loads((run["dir"] / "tasks" / "record" / f"seen-{i}.json").read_text())
        assert seen["index"] == i and seen["count"] == 4 and seen["attempt"] == 1
        assert seen["args"] == {"scale": 3, "label": "r"}
        assert seen["run_dir"] == str(run["dir"])
        assert seen["output_dir"] == str(run["dir"] / "tasks" / "record")
        assert (seen["rank"], seen["size"]) == (0, 1)
        line = final(run, "record", i)
        assert line["state"] == "DONE"
        assert line["result"] == {"index": i, "scaled": 3 * i, "numpy": 0.5 * i}


def test_print_output_goes_to_the_attempts_file(run):
    out = (run["dir"] / "tasks" / "record" / "2.out").read_text()
    assert out == "record 2 says hello\n"


def test_the_function_runs_in_the_worker_not_a_new_process(run):
    pids = {json.loads((run["dir"] / "tasks" / "record" / f"seen-{i}.json").read_text())["pid"]
            for i in range(4)}
    placement = json.loads((run["dir"] / "placement.json").read_text())
    assert len(pids) <= 3  # at most one process per worker rank
    assert placement["ranks"][2]["role"].startswith("worker")


def test_an_exception_fails_the_attempt_with_its_traceback(run):
    line = final(run, "fails")
    assert line["state"] == "FAILED" and line["attempts"] == 2
    assert "ValueError: instance 0 cannot go on" in line["reason"]
    assert "tasks/fails/0.try2.err" in line["reason"]
    for name in ("0.err", "0.try2.err"):
        tb = (run["dir"] / "tasks" / "fails" / name).read_text()
        assert "Traceback (most recent call last)" in tb
        assert "in helper_that_raises" in tb and "ptasks.py" in tb
        assert "_task.py" not in tb  # Tandem's own frame is left out
    assert "result" not in line


def test_retries_happen(run):
    line = final(run, "flaky")
    assert line["state"] == "DONE" and line["attempts"] == 3 and line["result"] == 3
    for name in ("0.err", "0.try2.err"):
        assert "fails on purpose" in (run["dir"] / "tasks" / "flaky" / name).read_text()


def test_a_multi_rank_task_has_a_working_mpi4py_communicator(run):
    line = final(run, "collective")
    assert line["state"] == "DONE"
    assert line["result"] == {"size": 2, "total": 3, "distinct_pids": 2, "rank": 0}


def test_infer_results_equal_the_cxx_clients_bit_for_bit(run):
    for i in range(2):
        assert final(run, "infer_bytes", i)["state"] == "DONE"
        assert final(run, "cxx_bytes", i)["state"] == "DONE"
        py = (run["dir"] / "tasks" / "infer_bytes" / f"py-{i}.bin").read_bytes()
        cxx = (run["dir"] / "tasks" / "cxx_bytes" / f"cxx-{i}.bin").read_bytes()
        assert len(py) == 6 * 4 * 4 + 5 * 8
        assert py == cxx


def test_an_isolated_python_task_runs_in_a_child(run):
    line = final(run, "isolated")
    assert line["state"] == "DONE", line
    assert line["result"]["client"] is True  # no MPI in a forked child
    pids = {json.loads((run["dir"] / "tasks" / "record" / f"seen-{i}.json").read_text())["pid"]
            for i in range(4)}
    assert line["result"]["pid"] not in pids
    assert (run["dir"] / "tasks" / "isolated" / "0.out").read_text() == "from the isolated child\n"


def test_results_that_cannot_be_recorded_fail_the_attempt_with_the_reason(run):
    for task, why in (("too_big", "over the 16384"), ("not_json", "not JSON-able")):
        line = final(run, task)
        assert line["state"] == "FAILED" and "result" not in line
        assert "cannot be recorded" in line["reason"] and why in line["reason"], line
        assert why in (run["dir"] / "tasks" / task / "0.err").read_text()


@pytest.mark.parametrize("spec, says", [
    ("bad_syntax:f", ["module 'bad_syntax' does not import", "bad_syntax.py:2", "SyntaxError"]),
    ("bad_import:f", ["module 'bad_import' does not import", "bad_import.py:3",
                      "ZeroDivisionError"]),
    ("nowhere:f", ["no module named 'nowhere'", "[job] pythonpath"]),
    ("good:simulte", ["module 'good'", "good.py", "has no function 'simulte'",
                      "did you mean 'simulate'"]),
])
def test_a_module_or_function_that_cannot_be_had_is_an_error_at_start(tmp_path, spec, says):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "bad_syntax.py").write_text("x = 1\ndef f(ctx:\n    pass\n")
    (lib / "bad_import.py").write_text("import os\n\nvalue = 1 / 0\n")
    (lib / "good.py").write_text("def simulate(ctx):\n    return 1\n")
    flow = tmp_path / "bad.toml"
    flow.write_text(f'[job]\nname = "bad"\npythonpath = ["lib"]\n[[task]]\nname = "t"\n'
                    f'python = "{spec}"\n')
    checked = subprocess.run([os.environ["TANDEM"], "validate", str(flow)], capture_output=True,
                             text=True, timeout=60)
    ran = mpiexec(3, "run", str(flow), "--run-dir", str(tmp_path / "run"))
    for result in (checked, ran):
        assert result.returncode != 0
        text = result.stdout + result.stderr
        assert f"{flow}:6:10: task[0].python" in text, text
        for s in says:
            assert s in text, text
    assert not (tmp_path / "run" / "journal.jsonl").exists()  # no task ran


def test_a_malformed_python_key_names_its_line(tmp_path):
    flow = tmp_path / "bad.toml"
    flow.write_text('[job]\nname = "bad"\n[[task]]\nname = "t"\npython = "no_colon"\n')
    checked = subprocess.run([os.environ["TANDEM"], "validate", str(flow)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode != 0
    assert f"{flow}:5" in checked.stderr and "is not \"module:function\"" in checked.stderr


def test_the_report_shows_why_instances_failed_and_where_their_stderr_is(run):
    text = subprocess.run([os.environ["TANDEM"], "report", str(run["dir"])], capture_output=True,
                          text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    assert "failed and canceled instances:" in text.stdout
    assert "fails[0]  FAILED after 2 attempt(s)" in text.stdout, text.stdout
    assert f"its stderr: {run['dir']}/tasks/fails/0.try2.err" in text.stdout
    js = json.loads(subprocess.run([os.environ["TANDEM"], "report", str(run["dir"]), "--json"],
                                   capture_output=True, text=True, timeout=60).stdout)
    fails = [u for u in js["failed_and_canceled"] if u["task"] == "fails"]
    assert fails and fails[0]["err_file"] == "tasks/fails/0.try2.err"
    assert "ValueError: instance 0 cannot go on" in fails[0]["reason"]
    html = subprocess.run([os.environ["TANDEM"], "report", str(run["dir"]), "--html"],
                          capture_output=True, text=True, timeout=60)
    page = open(html.stdout.strip()).read()
    assert "Failed and canceled instances" in page and "tasks/fails/0.try2.err" in page
