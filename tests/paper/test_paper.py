"""Tiny runs of the seed paper's experiments (bench/paper/, issue 22): the
plots are written, every cell's latency breakdown adds up to its total, the
LLM-like service's queue wait is the one a simulation of the same load
predicts, the bootstrap is split into its phases, and the scaling
experiment measures every cell and both LoadGen scenarios.

Environment (tests/CMakeLists.txt): TANDEM_BUILD (the build directory)."""
import json
import os
import subprocess
import sys

import pytest

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def latency(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    subprocess.run([sys.executable, os.path.join(SOURCE, "bench", "paper", "latency.py"),
                    "--build", os.environ["TANDEM_BUILD"], "--out", str(out),
                    "--services", "1,2", "--clients", "1,2", "--requests", "6",
                    "--kinds", "echo,llm,remote"],
                   check=True, capture_output=True, timeout=240)
    with open(out / "latency.json") as f:
        return out, json.load(f)["cells"]


def test_the_plots_are_written(latency):
    out, _ = latency
    for name in ("latency-echo.svg", "latency-llm.svg", "latency-remote.svg", "queue-wait.svg"):
        text = (out / name).read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text and len(text) > 5000, name


def test_every_cell_is_there_and_its_breakdown_sums_to_its_total(latency):
    _, cells = latency
    assert sorted((c["kind"], c["services"], c["clients"]) for c in cells) == sorted(
        (k, s, c) for k in ("echo", "llm", "remote") for s in (1, 2) for c in (1, 2))
    for c in cells:
        assert c["requests"] == 6 * c["clients"], c
        parts = c["comm_1"] + c["compute"] + c["comm_2"]
        assert abs(parts - c["total"]) <= 1e-6 * max(1.0, c["total"]), c


def test_the_llm_like_services_queue_wait_follows_the_load(latency):
    _, cells = latency
    by = {(c["services"], c["clients"]): c for c in cells if c["kind"] == "llm"}
    # Two clients on one service: each waits about one service time.
    shared = by[(1, 2)]
    assert abs(shared["queue_wait"] - shared["predicted_wait_ms"]) <= \
        0.25 * shared["predicted_wait_ms"], shared
    # A service each: no queue.
    assert by[(2, 2)]["queue_wait"] < 2.0 and by[(2, 2)]["predicted_wait_ms"] == 0.0
    # The service's work is the stated 44.4 ms mean.
    assert all(35.0 < c["compute"] < 55.0 for c in by.values())


def test_the_bootstrap_is_broken_into_its_phases(tmp_path):
    subprocess.run([sys.executable, os.path.join(SOURCE, "bench", "paper", "bootstrap.py"),
                    "--build", os.environ["TANDEM_BUILD"], "--out", str(tmp_path),
                    "--services", "1,2", "--backends", "echo,process", "--repeat", "1"],
                   check=True, capture_output=True, timeout=240)
    rows = json.loads((tmp_path / "bootstrap.json").read_text())
    assert [(r["backend"], r["services"]) for r in rows] == [
        ("echo", 1), ("echo", 2), ("process", 1), ("process", 2)]
    for r in rows:
        # Phases in order, each from rank 0 entering Tandem; the whole within
        # what mpirun took from outside.
        assert 0 < r["roles_ready_s"] <= r["all_ready_s"], r
        assert r["to_all_ready_s"] == pytest.approx(r["mpi_start_s"] + r["all_ready_s"])
        assert r["to_all_ready_s"] < r["mpirun_wall_s"], r
        assert r["overhead_s"] < 5.0, r
    assert (tmp_path / "bootstrap.svg").read_text().count("<svg") == 1


def test_the_remote_service_is_its_endpoints_delay_plus_the_bridge(latency):
    _, cells = latency
    for c in (c for c in cells if c["kind"] == "remote"):
        # The endpoint waits 50 ms; the bridge's HTTP adds a little, not
        # the 40 ms a delayed ACK would.
        assert 50.0 <= c["compute"] < 60.0, c


def test_the_scaling_experiment_measures_every_cell_and_both_scenarios(tmp_path):
    subprocess.run([sys.executable, os.path.join(SOURCE, "bench", "paper", "scaling.py"),
                    "--build", os.environ["TANDEM_BUILD"], "--out", str(tmp_path),
                    "--replicas", "1,2", "--clients", "1,3", "--client-ranks", "2",
                    "--phase", "0.3", "--offline-requests", "600", "--server-steps", "3"],
                   check=True, capture_output=True, timeout=240)
    data = json.loads((tmp_path / "scaling.json").read_text())
    assert [r["replicas"] for r in data["results"]] == [1, 2]
    for r in data["results"]:
        assert r["client_ranks"] == 2
        assert [c["clients"] for c in r["closed"]] == [1, 3]
        for c in r["closed"] + [r["offline"]] + r["server"]["tried"]:
            # Every request answered and timed; percentiles in order.
            assert c["requests"] > 0 and c["throughput"] > 0, c
            assert 0 < c["p50_ms"] <= c["p95_ms"] <= c["p99_ms"], c
        assert r["offline"]["requests"] == 600
        # The search tried 3 rates, the first the offline throughput, and
        # reports the highest one that met the bound.
        tried = r["server"]["tried"]
        assert len(tried) == 3 and tried[0]["rate"] == pytest.approx(r["offline"]["throughput"])
        met = [t["rate"] for t in tried if t["met"]]
        assert r["server"]["best_rate"] == (max(met) if met else 0)
        assert all(t["p99_ms"] <= r["server"]["p99_bound_ms"] for t in tried if t["met"])
    assert data["direct"]["rows1"]["median_ms"] > 0
    for name in ("scaling-throughput.svg", "scaling-p99.svg", "scaling-scenarios.svg"):
        text = (tmp_path / name).read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text, name
