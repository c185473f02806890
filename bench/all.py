#!/usr/bin/python3
"""Every benchmark in one go, and one markdown table of their ratios.

The figures of one machine do not hold on another: what a process wake-up,
a system call or a copy costs differs tenfold between machines of the same
kind. So this first measures those facts (bench/machine_facts.c,
bench/spawn_ceiling.cpp), then runs every benchmark, each against its own
baseline in the same run, and writes:

  - the machine's facts;
  - one table: benchmark, figure, Tandem, baseline, how many times better
    than the baseline Tandem is, and the goal;
  - each benchmark's own tables, as it printed them.

  bench/all.py --build build [--out report.md] [--quick]

(also `cmake --build build --target bench`). --quick runs each benchmark
once with fewer tasks, for a look in a few minutes; its figures are noisy.
Benchmarks whose programs were not built (no hiredis, no libtorch) are
skipped and named.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile

import mpi_env

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"


def benchmarks(build, quick):
    """(name, command, programs it needs) for every benchmark."""
    b = os.path.join(build, "bench")
    tandem = os.path.join(build, "launcher", "tandem")
    model = os.path.join(build, "tests", "models", "mlp.pt")
    rep = ["--repeat", "1"] if quick else []
    return [
        ("pilot", [PY, f"{HERE}/pilot_throughput.py", "--tandem", tandem] + rep +
         (["--null-tasks", "50000", "--exe-tasks", "500"] if quick else []),
         [tandem]),
        ("serving", [PY, f"{HERE}/serving.py", "--build", build, "--model", model] + rep +
         (["--seconds", "1"] if quick else []),
         [f"{b}/serving_bench", f"{b}/torch_direct", model]),
        ("transport", [PY, f"{HERE}/transport.py", "--build", build] + rep,
         [f"{b}/transport_bench"]),
        ("proxy", [PY, f"{HERE}/proxy.py", "--build", build] + rep, [f"{b}/proxy_bench"]),
        ("bridge", [PY, f"{HERE}/bridge.py", "--build", build] + rep +
         (["--requests", "20000"] if quick else []),
         [f"{b}/bridge_bench", f"{b}/http_endpoint"]),
        ("trace", [PY, f"{HERE}/trace_overhead.py", "--build", build, "--model", model] +
         (["--repeat", "3", "--model-repeat", "1", "--seconds", "1"] if quick else []),
         [f"{b}/serving_bench", model]),
        ("faults", [PY, f"{HERE}/faults.py", "--tandem", tandem] +
         (["--repeat", "1", "--null-tasks", "50000", "--isolated-tasks", "300"] if quick
          else []),
         [tandem]),
        ("cross_node", [PY, f"{HERE}/cross_node.py", "--build", build],
         [f"{b}/cross_node_bench"]),
        ("coordinator_sim", [f"{b}/coordinator_sim", "--repeat", "1" if quick else "3"],
         [f"{b}/coordinator_sim"]),
        ("mpi_tasks", [PY, f"{HERE}/mpi_tasks.py", "--build", build] +
         (["--repeat", "1", "--tasks", "12"] if quick else []),
         [f"{b}/mpi_hello", tandem]),
        ("adaptive", [PY, f"{HERE}/adaptive.py", "--build", build] +
         (["--repeat", "1", "--rounds", "20"] if quick else []),
         [f"{b}/libbench_steering.so", tandem]),
    ]


def machine_facts(build):
    b = os.path.join(build, "bench")
    if not os.path.exists(f"{b}/machine_facts"):
        return None  # an older build
    facts = json.loads(subprocess.run([f"{b}/machine_facts"], check=True, capture_output=True,
                                      text=True).stdout)
    out = subprocess.run([f"{b}/spawn_ceiling"], check=True, capture_output=True,
                         text=True).stdout
    facts["spawn_ceiling_per_s"] = float(out.strip().splitlines()[-1].split()[-1])
    ompi = subprocess.run(["ompi_info", "--parsable"], capture_output=True, text=True).stdout
    facts["open_mpi"] = next((line.split(":")[-1] for line in ompi.splitlines()
                              if line.startswith("ompi:version:full")), "?")
    facts["kernel"] = platform.release()
    with open("/proc/cpuinfo") as f:
        facts["cpu"] = next((line.split(":", 1)[1].strip() for line in f
                             if line.startswith("model name")), "?")
    return facts


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", help="also write the report here")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="+", help="run only these benchmarks (names as listed)")
    args = ap.parse_args()
    mpi_env.setup()
    build = os.path.abspath(args.build)
    facts = machine_facts(build)
    sections, skipped, failed = [], [], []
    with tempfile.TemporaryDirectory(prefix="tandem-all-", dir=os.getcwd()) as work:
        ratios_file = os.path.join(work, "ratios.jsonl")
        env = dict(os.environ, TANDEM_BENCH_RATIOS=ratios_file)
        for name, cmd, needs in benchmarks(build, args.quick):
            if args.only and name not in args.only:
                continue
            missing = [p for p in needs if not os.path.exists(p)]
            if missing:
                skipped.append(f"{name} (not built: {', '.join(missing)})")
                continue
            print(f"[all] {name}: {' '.join(cmd)}", file=sys.stderr)
            run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
            if run.returncode != 0:
                failed.append(f"{name} (exit {run.returncode}: {run.stderr.strip()[-300:]})")
                continue
            sections.append((name, " ".join(cmd), run.stdout.strip()))
        ratios = []
        if os.path.exists(ratios_file):
            with open(ratios_file) as f:
                ratios = [json.loads(line) for line in f]

    lines = [f"# Tandem benchmarks, {datetime.date.today().isoformat()}", ""]
    if facts:
        lines += [
            "## The machine", "",
            "| fact | value |", "|---|---:|",
            f"| CPU | {facts['cpu']} |",
            f"| cores this job may use | {facts['cpus']} |",
            f"| kernel, Open MPI | {facts['kernel']}, {facts['open_mpi']} |",
            f"| spawn ceiling (posix_spawn + waitpid of /bin/true) | "
            f"{facts['spawn_ceiling_per_s']:,.0f}/s |",
            f"| 1 KiB round trip over a Unix socket, two processes | "
            f"{facts['unix_socket_rtt_1k_us']:.1f} µs |",
            f"| a system call (getpid) / sched_yield | {facts['getpid_us']:.2f} / "
            f"{facts['sched_yield_us']:.2f} µs |",
            f"| memcpy bandwidth, 256 MiB | {facts['memcpy_gb_per_s']:.1f} GB/s |", ""]
    lines += [
        "## Ratios", "",
        "Times better than the baseline measured in the same run (above 1: Tandem is faster).",
        "",
        "| benchmark | figure | Tandem | baseline | times better | goal |",
        "|---|---|---:|---|---:|---|"]
    for r in ratios:
        lines.append(f"| {r['bench']} | {r['figure']} | {r['tandem']:,.4g} {r['unit']} | "
                     f"{r['baseline']:,.4g} {r['unit']} ({r['baseline_name']}) | "
                     f"{r['ratio']:.2f}x | {r['goal']} |")
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped) + "."]
    if failed:
        lines += ["", "Failed: " + "; ".join(failed) + "."]
    for name, cmd, out in sections:
        lines += ["", f"## {name}", "", f"`{cmd}`", "", out]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
