"""Checks that the C, Python and Fortran tasks got the same answers from
the served model: same inputs, same outputs to float precision."""
import sys

import numpy as np

run_dir = sys.argv[1]
results = {name: np.loadtxt(f"{run_dir}/tasks/{name}/0.out") for name in ("c", "python", "fortran")}
reference = results["c"]
worst = 0.0
for name, values in results.items():
    if values.shape != reference.shape:
        sys.exit(f"{name}: {values.shape} values, C has {reference.shape}")
    worst = max(worst, float(np.abs(values - reference).max()))
print(f"C, Python and Fortran: {len(reference)} points each, largest difference {worst:.3g}")
sys.exit(0 if worst <= 1e-6 else 1)
