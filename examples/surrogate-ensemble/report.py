"""The last step of the surrogate-ensemble example: reads what the members
wrote and prints a summary a person can read."""
import glob
import json
import os
import statistics
import sys


def load(run_dir, task):
    members = {}
    for path in glob.glob(os.path.join(run_dir, "tasks", task, "member-*.json")):
        index = int(path.rsplit("-", 1)[1].split(".")[0])
        with open(path) as f:
            members[index] = json.load(f)
    return members


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def main():
    run_dir = sys.argv[1]
    exact = load(run_dir, "exact")
    surrogate = load(run_dir, "surrogate")
    lines = ["", "Surrogate ensemble: 1-D reaction-diffusion, closure from an MLP served in the job", ""]
    lines.append(f"{'member':>6} {'a':>6} {'exact s':>9} {'surrogate s':>12} {'speed-up':>9} {'max rel. error':>15}")
    errors = []
    for i in sorted(surrogate):
        s, e = surrogate[i], exact.get(i)
        if e is None:
            continue
        scale = max(abs(v) for v in e["u"])
        err = max(abs(a - b) for a, b in zip(s["u"], e["u"])) / scale
        errors.append(err)
        lines.append(f"{i:>6} {s['a']:>6.2f} {e['seconds']:>9.3f} {s['seconds']:>12.3f} "
                     f"{e['seconds'] / s['seconds']:>8.1f}x {err:>15.2e}")
    lat = [v for s in surrogate.values() for v in s["latencies_us"]]
    t_exact = sum(e["seconds"] for e in exact.values())
    t_surr = sum(s["seconds"] for s in surrogate.values())
    lines += [
        "",
        f"tasks: {len(surrogate)} members with the surrogate, {len(exact)} with the exact closure",
        f"time, all members: exact closure {t_exact:.2f} s, surrogate {t_surr:.2f} s "
        f"({t_exact / t_surr:.1f}x faster)",
        f"surrogate error on the final field: max {max(errors):.2e}, mean {statistics.mean(errors):.2e} "
        "(relative to the field's maximum)",
        f"closure requests: {len(lat)}, latency p50 {percentile(lat, 50):.0f} us, "
        f"p95 {percentile(lat, 95):.0f} us, p99 {percentile(lat, 99):.0f} us",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(run_dir, "report.txt"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
