"""A Python task for the proxy test: many requests in flight with
infer_async, outputs that are views of the reply (no copy), a Fortran-order
input, a JSON call to an OpenAI-style service, and the errors.
Exits 0 only if everything came back right."""
import json
import sys

import numpy as np

import tandem

with tandem.Client() as client:
    client.wait_ready("double", 60)

    # 200 requests in flight, then every answer checked.
    inputs = [np.arange(12, dtype=np.float32).reshape(3, 4) + 100 * k for k in range(200)]
    pending = [client.infer_async("double", {"x": x}) for x in inputs]
    for x, request in zip(inputs, pending):
        y = request.wait()["x"]
        assert y.shape == (3, 4) and y.dtype == np.float32, (y.shape, y.dtype)
        assert np.array_equal(y, 2 * x), "wrong values"

    # Requests dropped without waiting: their replies are discarded, and
    # the next request still gets its own answer.
    for k in range(20):
        client.infer_async("double", {"x": inputs[k]})
    x = np.full((2, 4), 7, np.float32)
    assert np.array_equal(client.infer("double", {"x": x})["x"], 2 * x)

    # A large reply comes back through shared memory, as a view: no copy.
    big = np.random.default_rng(1).random((4096, 64))
    out = client.infer("double", {"x": big})["x"]
    assert np.array_equal(out, 2 * big)
    assert not out.flags.owndata, "the output was copied"

    # A Fortran-ordered array means the same values. A bare array is the
    # service's only input; this one declares none, so it is "input".
    f = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    assert np.array_equal(client.infer("double", f)["input"], 2 * f)

    # A name the reply lacks: a TandemError (and KeyError) naming what it has.
    try:
        client.infer("double", {"x": f})["r"]
    except tandem.TandemError as e:
        assert isinstance(e, KeyError) and str(e) == "no output 'r' (have: x)", str(e)
    else:
        sys.exit("a missing output name did not fail")

    # A JSON call through the proxy to the OpenAI-style service.
    answer = json.loads(client.call("llm", {"model": "m",
                                            "messages": [{"role": "user", "content": "hi"}]}))
    assert answer["choices"][0]["message"]["content"] == "echo: hi", answer

    # Errors: a service the workflow lacks, a dtype Tandem lacks.
    try:
        client.infer("missing", {"x": f})
    except tandem.TandemError as e:
        assert e.status == "TANDEM_ERR_SERVICE" and "missing" in str(e), (e.status, str(e))
    else:
        sys.exit("an unknown service did not fail")
    try:
        client.infer("double", {"x": np.zeros(3, dtype=np.complex64)})
    except tandem.TandemError as e:
        assert e.status == "TANDEM_ERR_ARGUMENT", e.status
    else:
        sys.exit("a complex input did not fail")
print("python: all checks passed")
