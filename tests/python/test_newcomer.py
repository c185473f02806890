"""What a new Python user tripped over (issue 35), end to end:

- a task's first request to a TorchScript service that is still loading its
  model waits for it (a Python function task, over MPI; an executable task,
  through the proxy), and a FAILED service fails at once;
- results read back with tandem.results, `tandem results` and ctx.results,
  the journal's last line winning;
- a rank that raises inside tandem.Session ends the job at once, with its
  traceback, and `tandem report` says so; sys.exit(n) becomes the run's
  exit code;
- `tandem report` reads a run whose jobs were killed without a summary, and
  names the file and field of one it cannot read.

Environment (tests/CMakeLists.txt): TANDEM, MPIEXEC, TANDEM_MPIEXEC_FLAGS,
TANDEM_TEST_MODELS, PYTHONPATH (the build's package)."""
import json
import os
import shlex
import subprocess
import sys
import time

import pytest

import tandem

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "newcomer")


def mpiexec(n, *argv, env=None, timeout=240):
    flags = shlex.split(os.environ.get("TANDEM_MPIEXEC_FLAGS",
                                       "--oversubscribe --mca btl self,vader"))
    cmd = [os.environ.get("MPIEXEC", "mpiexec"), *flags, "-n", str(n), *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def tandem_cli(*argv):
    return subprocess.run([os.environ["TANDEM"], *argv], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture(scope="module")
def starting(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("newcomer") / "run"
    done = mpiexec(6, os.environ["TANDEM"], "run", os.path.join(HERE, "starting.toml"),
                   "--run-dir", str(run_dir))
    return {"dir": run_dir, "rc": done.returncode, "log": done.stdout + done.stderr}


def by_key(found):
    return {(r.task, r.index): r for r in found}


def test_python_tasks_first_requests_wait_for_the_loading_model(starting):
    found = by_key(tandem.results(starting["dir"]))
    for i in range(6):
        r = found[("first", i)]
        assert r.state == "DONE", (r, starting["log"][-3000:])
        assert r.result["sum"] == pytest.approx(3.0 * 8 * i)
    # Some request came while the model was loading: it waited for it.
    assert max(found[("first", i)].result["waited_s"] for i in range(6)) > 0.05


def test_an_executable_tasks_first_request_waits_and_a_failed_service_fails_at_once(starting):
    r = by_key(tandem.results(starting["dir"]))[("exe_first", 0)]
    assert r.state == "DONE", (r, starting["log"][-3000:])
    said = json.loads((starting["dir"] / "tasks" / "exe_first" / "0.out").read_text())
    assert said["y"] == pytest.approx(36.0)
    assert "was not READY within 0.05 s" in said["impatient"], said
    assert said["late"] == pytest.approx(12.0) and said["late_waited_s"] > 0.5, said
    assert "FAILED" in said["broken"] and "broken" in said["broken"]
    assert said["broken_s"] < 30


def test_a_task_after_another_reads_its_results(starting):
    r = by_key(tandem.results(starting["dir"]))[("summarize", 0)]
    assert r.state == "DONE", r
    assert r.result["indices"] == list(range(6))
    assert r.result["states"] == ["DONE"]
    assert r.result["total"] == pytest.approx(sum(3.0 * 8 * i for i in range(6)))


def test_results_from_python_and_the_command_line_agree(starting):
    cli = tandem_cli("results", str(starting["dir"]), "--json")
    assert cli.returncode == 0, cli.stderr
    from_cli = [(e["task"], e["index"], e["state"], e["result"], e["attempts"])
                for e in json.loads(cli.stdout)]
    from_py = [(r.task, r.index, r.state, r.result, r.attempts)
               for r in tandem.results(starting["dir"])]
    assert from_cli == from_py and len(from_py) == 20
    only = tandem_cli("results", str(starting["dir"]), "--task", "first")
    assert only.returncode == 0 and only.stdout.count("  DONE  ") == 6, only.stdout
    assert [r.index for r in tandem.results(starting["dir"], task="first")] == list(range(6))


def test_a_sweep_gives_each_instance_its_values(starting):
    found = tandem.results(starting["dir"], task="swept")
    assert [r.result for r in found] == [
        {"seed": s, "steps": 5, "temperature": t} for s in (1, 2, 3) for t in (300, 310)]
    out = [(starting["dir"] / "tasks" / "swept_cmd" / f"{i}.out").read_text() for i in (0, 1)]
    assert out[0].startswith("t=300.5 label=cold ")
    assert json.loads(out[0].split(" ", 2)[2]) == {"label": "cold", "temperature": 300.5}
    assert out[1].startswith("t=310 label=warm ")


def test_sys_exit_in_a_python_task_is_its_exit_code(starting):
    found = by_key(tandem.results(starting["dir"]))
    for key in (("exits", 0), ("exits_isolated", 0)):
        r = found[key]
        assert r.state == "FAILED" and r.exit_code == 3, r
    assert "sys.exit(3)" in found[("exits", 0)].reason
    assert found[("exits", 1)].state == "DONE"  # sys.exit(0): a return


def test_plan_shows_a_sweeps_instances():
    plan = tandem_cli("plan", os.path.join(HERE, "starting.toml"), "--np", "6")
    assert plan.returncode == 0, plan.stderr
    assert "task 'swept': 6 instance(s) from its sweep (product of seed[3] x temperature[2])" \
        in plan.stdout, plan.stdout
    assert '[5] {"seed":3,"steps":5,"temperature":310}' in plan.stdout
    assert "task 'swept_cmd': 2 instance(s) from its sweep (zip of label[2], temperature[2])" \
        in plan.stdout


def test_the_journals_last_line_wins(tmp_path):
    lines = [
        {"task": "sim", "index": 0, "state": "CANCELED", "attempts": 1, "exit_code": 0,
         "reason": "the job was interrupted"},
        {"task": "sim", "index": 1, "state": "DONE", "attempts": 1, "exit_code": 0,
         "result": {"e": 1}},
        {"task": "sim", "index": 0, "attempt": 2, "lost": "rank 3 died"},
        {"task": "sim", "index": 0, "state": "DONE", "attempts": 3, "exit_code": 0,
         "result": {"e": 0}},
    ]
    text = "".join(json.dumps(j) + "\n" for j in lines) + '{"task": "sim", "ind'  # torn
    (tmp_path / "journal.jsonl").write_text(text)
    found = tandem.results(tmp_path)
    assert [(r.index, r.state, r.result, r.attempts) for r in found] == [
        (0, "DONE", {"e": 0}, 3), (1, "DONE", {"e": 1}, 1)]
    assert found[0].ok and found[0].line == 4
    cli = json.loads(tandem_cli("results", str(tmp_path), "--json").stdout)
    assert [(e["index"], e["state"], e["result"]) for e in cli] == [(0, "DONE", {"e": 0}),
                                                                    (1, "DONE", {"e": 1})]


def test_results_of_a_directory_that_is_no_run_say_so(tmp_path):
    with pytest.raises(tandem.IoError, match="is .* a Tandem run directory"):
        tandem.results(tmp_path)
    bad = tandem_cli("results", str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and "no such run directory" in bad.stderr


def only_run(root):
    runs = [os.path.join(root, d) for d in os.listdir(root)]
    assert len(runs) == 1, runs
    return runs[0]


def test_a_rank_that_raises_in_a_session_ends_the_job_with_its_traceback(tmp_path):
    env = dict(os.environ, TANDEM_TEST_RUNS=str(tmp_path))
    t0 = time.monotonic()
    done = mpiexec(4, sys.executable, os.path.join(HERE, "session_raises.py"),
                   os.path.join(HERE, "session.toml"), env=env, timeout=120)
    took = time.monotonic() - t0
    assert done.returncode != 0
    assert took < 60, f"the job took {took:.0f} s to end"
    assert "Traceback" in done.stderr and "RuntimeError: the solver diverged at step 7" in \
        done.stderr, done.stderr[-3000:]
    run_dir = only_run(tmp_path)
    aborts = [json.loads(x) for x in open(os.path.join(run_dir, "aborts.jsonl"))]
    assert len(aborts) == 1 and aborts[0]["exit_code"] == 1
    assert "the solver diverged" in aborts[0]["reason"] and aborts[0]["rank"] == 3
    text = tandem_cli("report", run_dir)
    assert text.returncode == 0, text.stderr
    assert "exit code 1" in text.stdout and "ended by rank 3" in text.stdout, text.stdout
    js = json.loads(tandem_cli("report", run_dir, "--json").stdout)
    assert js["exit_code"] == 1 and js["summary_written"] is False
    assert "the solver diverged" in js["aborts"][0]["reason"]
    assert tandem_cli("report", run_dir, "--html").returncode == 0


def test_sys_exit_in_a_session_is_the_runs_exit_code(tmp_path):
    env = dict(os.environ, TANDEM_TEST_RUNS=str(tmp_path))
    done = mpiexec(4, sys.executable, os.path.join(HERE, "session_exits.py"),
                   os.path.join(HERE, "session.toml"), "3", env=env, timeout=120)
    assert done.returncode == 3, done.stderr[-3000:]
    run_dir = only_run(tmp_path)
    summary = json.loads(open(os.path.join(run_dir, "summary.json")).read())
    assert summary["exit_code"] == 3
    assert "exit code 3" in tandem_cli("report", run_dir).stdout


def test_the_report_reads_a_run_whose_jobs_were_killed(tmp_path):
    # What `tandem supervise` leaves after two SIGKILLed jobs: history lines
    # with nulls, no summary.json.
    killed = {"started_us": 1_700_000_000_000_000, "resumed": False, "ended_us": None,
              "ended_without_summary": True, "exit_code": None,
              "allocation": {"job_id": None}}
    (tmp_path / "history.jsonl").write_text(json.dumps(killed) + "\n" +
                                            json.dumps(dict(killed, resumed=True)) + "\n")
    (tmp_path / "journal.jsonl").write_text(json.dumps(
        {"task": "sim", "index": 0, "state": "DONE", "attempts": 1, "exit_code": 0,
         "started_us": 1, "ended_us": 2}) + "\n")
    for form in ([], ["--json"], ["--html"]):
        r = tandem_cli("report", str(tmp_path), *form)
        assert r.returncode == 0, (form, r.stderr)
        assert "json.exception" not in r.stdout + r.stderr
    text = tandem_cli("report", str(tmp_path)).stdout
    assert "its ranks died" in text and "no summary.json" in text, text
    assert "tasks, as the journal has them: 1 done, 0 failed, 0 canceled" in text, text
    assert "makespan" not in text.split("jobs:")[0]  # no figures the run did not write


def test_an_unreadable_summary_names_its_file_and_field(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"job": "x", "makespan_s": "long"}))
    r = tandem_cli("report", str(tmp_path))
    assert r.returncode == 2
    assert "summary.json" in r.stderr and '"makespan_s"' in r.stderr, r.stderr
    assert "json.exception" not in r.stderr


@pytest.mark.parametrize("spec, says", [
    ("kinds:coro", ["kinds.py:4", "is an async function", "asyncio.run"]),
    ("kinds:gen", ["kinds.py:8", "is a generator"]),
    ("kinds:no_args", ["kinds.py:12", "must take one argument", "parameters are: none"]),
    ("kinds:two_args", ["kinds.py:16", "must take one argument", "parameters are: ctx, other"]),
    ("kinds:number", ["is an int, not a function"]),
    ("deep:f", ["module 'deep' does not import", "helper.py:2", "KeyError"]),
    ("json:run", ["standard library's module", "hides your", "json.py", "rename it"]),
])
def test_functions_that_cannot_work_are_refused_at_validate(tmp_path, spec, says):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "kinds.py").write_text(
        "import asyncio\n\n\nasync def coro(ctx):\n    await asyncio.sleep(0)\n\n\n"
        "def gen(ctx):\n    yield 1\n\n\n"
        "def no_args():\n    return 1\n\n\n"
        "def two_args(ctx, other):\n    return 1\n\n\nnumber = 3\n")
    # An import error deep in a chain: the user's helper is named, not json's.
    (lib / "helper.py").write_text("import json\nVALUE = json.loads('{}')['missing']\n")
    (lib / "deep.py").write_text("import helper\n\ndef f(ctx):\n    return 1\n")
    (tmp_path / "json.py").write_text("def run(ctx):\n    return 1\n")
    flow = tmp_path / "bad.toml"
    flow.write_text(f'[job]\nname = "bad"\npythonpath = ["lib"]\n[[task]]\nname = "t"\n'
                    f'python = "{spec}"\n')
    checked = tandem_cli("validate", str(flow))
    assert checked.returncode != 0
    text = checked.stdout + checked.stderr
    assert f"{flow}:6:10: task[0].python" in text, text
    for s in says:
        assert s in text, text


def test_the_clients_niceties_work_from_an_mpi4py_program(tmp_path):
    server = os.path.join(os.path.dirname(HERE), "..", "support", "openai_test_server.py")
    flow = tmp_path / "niceties.toml"
    flow.write_text(f"""[job]
name = "niceties"
run_root = "{tmp_path}/runs"
[[service]]
name = "echo"
backend = "echo"
[[service]]
name = "slow"
backend = "sleep"
delay_us = 300000
[[service]]
name = "llm"
backend = "process"
protocol = "openai"
command = ["python3", "{os.path.abspath(server)}", "--port", "{{port}}"]
""")
    done = mpiexec(5, sys.executable, os.path.join(HERE, "session_niceties.py"), str(flow),
                   timeout=180)
    assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr[-3000:]


def test_client_outside_a_task_names_what_to_use_instead(monkeypatch):
    monkeypatch.delenv("TANDEM_SOCKET", raising=False)
    with pytest.raises(tandem.ConnectError) as e:
        tandem.Client()
    assert "ctx.client" in str(e.value) and "tandem.Session" in str(e.value)
    assert "tandem_connect" not in str(e.value)


def test_each_rank_of_a_multi_rank_task_keeps_its_output_and_logging(starting):
    out = starting["dir"] / "tasks" / "two_ranks"
    assert (out / "0.out").read_text() == "rank 0 of 2 says hi\n"
    assert (out / "0.rank1.out").read_text() == "rank 1 of 2 says hi\n"
    assert "INFO newcomer: rank 0 logs" in (out / "0.err").read_text()
    assert "INFO newcomer: rank 1 logs" in (out / "0.rank1.err").read_text()
    logs = "".join(p.read_text() for p in (starting["dir"] / "logs").iterdir())
    assert "rank 0 logs" not in logs and "rank 1 logs" not in logs


def test_a_resumed_run_numbers_attempts_on_and_keeps_earlier_files(tmp_path):
    run_dir = tmp_path / "run"
    flow = os.path.join(HERE, "resume.toml")
    first = mpiexec(2, os.environ["TANDEM"], "run", flow, "--run-dir", str(run_dir))
    assert first.returncode != 0
    (run_dir / "fixed").write_text("")
    again = mpiexec(2, os.environ["TANDEM"], "run", flow, "--run-dir", str(run_dir), "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    out = run_dir / "tasks" / "flaky"
    assert (out / "0.out").read_text() == "attempt 1\n"     # the first job's, kept
    assert "not fixed yet" in (out / "0.err").read_text()
    assert (out / "0.try2.out").read_text() == "attempt 2\n"  # the resumed job's
    assert not (out / "0.try2.err").exists()  # no .err beside the attempt that is DONE
    [r] = tandem.results(run_dir)
    assert (r.state, r.attempts, r.result) == ("DONE", 2, 2)


def test_the_latency_split_calls_waiting_for_a_busy_replica_queue_wait(tmp_path):
    flow = tmp_path / "busy.toml"
    flow.write_text(f"""[job]
name = "busy"
run_root = "{tmp_path}/runs"
[[service]]
name = "slow"
backend = "sleep"
delay_us = 100000
max_batch = 1
""")
    done = mpiexec(4, sys.executable, os.path.join(HERE, "session_busy.py"), str(flow),
                   timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = only_run(tmp_path / "runs")
    report = json.loads(tandem_cli("report", run_dir, "--json").stdout)
    [slow] = [s for s in report["services"] if s["name"] == "slow"]
    lat = slow["latency"]
    assert slow["traced_requests"] == 8
    # 8 requests of 100 ms, served one at a time: most wait for the others.
    assert lat["queue_wait"]["p50_ms"] > 150, lat
    assert lat["transit_out"]["p99_ms"] < 50 and lat["transit_back"]["p99_ms"] < 50, lat
    assert 90 < lat["compute"]["p50_ms"] < 200, lat
    # The paper's names for the same: comm_1 = transit out + queue wait.
    assert lat["comm_1"]["p50_ms"] >= lat["queue_wait"]["p50_ms"]
    text = tandem_cli("report", run_dir).stdout
    assert "queue wait" in text and "transit out" in text and "transfer" not in text
