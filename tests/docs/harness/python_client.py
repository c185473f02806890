# The Python client block, run as a command task of python_job.toml: the
# data it uses before it, and checks of what it got after it.
import numpy as np

x = np.arange(200, dtype=np.float32).reshape(100, 2)
batches = [x[i:i + 10] for i in range(0, 100, 10)]
@DOC@
assert np.array_equal(r, 2 * x), r[:3]
assert np.array_equal(same, r)
assert all(np.array_equal(a, 2 * b) for a, b in zip(results, batches))
assert "hi" in answer or "choices" in answer, answer
print("python client block: ok")
