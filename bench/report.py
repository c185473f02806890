"""One line per headline figure, for bench/all.py's table of ratios.

A benchmark calls ratio() where it has a figure and the baseline it was
measured against in the same run. When TANDEM_BENCH_RATIOS names a file
(bench/all.py sets it), the figure is appended there as a JSON line;
otherwise nothing happens and the benchmark prints its own tables as
before.
"""
import json
import os


def ratio(bench, figure, tandem, baseline, baseline_name, unit, higher_is_better, goal=""):
    """Records @p tandem against @p baseline. The ratio is always "times
    better than the baseline": tandem / baseline for rates, baseline /
    tandem for times."""
    path = os.environ.get("TANDEM_BENCH_RATIOS")
    if not path:
        return
    better = tandem / baseline if higher_is_better else baseline / tandem
    with open(path, "a") as f:
        f.write(json.dumps({"bench": bench, "figure": figure, "tandem": tandem,
                            "baseline": baseline, "baseline_name": baseline_name, "unit": unit,
                            "ratio": better, "goal": goal}) + "\n")
