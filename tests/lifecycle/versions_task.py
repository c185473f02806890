"""An executable task (Python, through the worker's proxy) that changes
the model version of service "t" (version N multiplies by N) and checks
that every reply says which version computed it.
  versions_task.py MODELS_DIR
Exits 0 only if everything came back right."""
import sys

import numpy as np

import tandem

models = sys.argv[1]
x = np.arange(8, dtype=np.float32).reshape(2, 4) + 1

with tandem.Client() as client:
    client.wait_ready("t", 60)
    y = client.infer("t", {"x": x})
    assert y.model_version == 2 and np.array_equal(y["y"], 2 * x), (y.model_version, y["y"])

    # A bad version is refused with its file and cause; 2 goes on serving.
    try:
        client.load_model("t", f"{models}/wrong_shape.pt", 3)
        sys.exit("a model of the wrong shape was loaded")
    except tandem.TandemError as e:
        assert "wrong_shape.pt" in str(e) and "signature" in str(e), str(e)
    assert client.infer("t", {"x": x}).model_version == 2

    assert client.load_model("t", f"{models}/times3.pt", 3) == 3
    y = client.infer("t", {"x": x})
    assert y.model_version == 3 and np.array_equal(y["y"], 3 * x), (y.model_version, y["y"])
    try:
        client.unload_model("t", 3)
        sys.exit("the only loaded version was unloaded")
    except tandem.TandemError as e:
        assert "only version loaded" in str(e), str(e)
print("python: versions 2 -> 3 through the proxy")
