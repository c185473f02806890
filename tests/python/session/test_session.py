"""tandem.Session and tandem.Client from an mpi4py program (see conftest.py),
at 4 and 5 ranks: one or two application ranks."""
import os

import numpy as np
import pytest
from mpi4py import MPI

import tandem
from tandem import _capi


def test_app_ranks_get_an_app_comm_of_their_own(session):
    assert session.is_app
    comm = session.app_comm
    assert isinstance(comm, MPI.Comm)
    assert comm.Get_size() == MPI.COMM_WORLD.Get_size() - 3  # coordinator, two services
    assert comm.Get_rank() == MPI.COMM_WORLD.Get_rank() - 3
    assert comm.allreduce(1) == comm.Get_size()
    assert "application rank" in repr(session)


def test_requests_are_answered(client):
    client.wait_ready("echo")
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = client.infer("echo", {"x": x})
    assert list(out) == ["x"]
    np.testing.assert_array_equal(out["x"], x)
    assert "x: float32[3, 4]" in repr(out)
    assert "session's MPI client" in repr(client)


def test_a_reply_names_the_service_that_answered(client):
    x = np.ones((2, 4), dtype=np.float32)
    assert client.infer("echo", {"x": x}).source == "echo"
    assert client.infer_async("checked", {"x": x}).wait().source == "checked"


def test_a_missed_deadline_raises_deadline_exceeded(client):
    x = np.ones((1, 4), dtype=np.float32)
    with pytest.raises(tandem.DeadlineExceeded) as e:
        client.infer("echo", {"x": x}, deadline_ms=0.001)  # gone before it can arrive
    assert "deadline exceeded" in str(e.value)
    assert e.value.status == "TANDEM_ERR_DEADLINE"
    assert isinstance(e.value, TimeoutError) and isinstance(e.value, tandem.RequestError)
    # The client goes on: the same service answers the next request.
    np.testing.assert_array_equal(client.infer("echo", {"x": x}, deadline_ms=10_000)["x"], x)
    with pytest.raises(tandem.ArgumentError):
        client.infer("echo", {"x": x}, deadline_ms=-1)


def test_a_missed_deadline_is_answered_by_the_fallback(client):
    x = np.full((1, 4), 3, dtype=np.float32)
    out = client.infer_async("checked", {"x": x}, deadline_ms=0.001).wait()
    assert out.source == "echo"  # "checked" falls back to "echo"
    np.testing.assert_array_equal(out["x"], x)


ALL_DTYPES = [np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32,
              np.int64, np.float16, np.float32, np.float64]


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda t: np.dtype(t).name)
def test_every_dtype_goes_and_comes_back_as_it_was(client, dtype):
    x = (np.arange(2 * 3 * 5) % 7).astype(dtype).reshape(2, 3, 5)
    y = client.infer("echo", {"x": x})["x"]
    assert y.dtype == np.dtype(dtype) and y.shape == (2, 3, 5)
    assert y.tobytes() == x.tobytes()


def test_inputs_are_not_copied_and_outputs_are_the_replys_memory(client):
    x = np.ones((64, 4), np.float32)
    assert _capi.native is not None, "tandem._native was not built"
    assert _capi.native.input_address(x) == x.__array_interface__["data"][0]
    out = client.infer("echo", {"x": x})
    y = out["x"]
    assert not y.flags.owndata
    assert y.base.address == y.__array_interface__["data"][0]  # the reply's tensor's bytes
    view = y[10:]  # a view keeps the reply alive after the dict goes
    del out, y
    np.testing.assert_array_equal(view, np.ones((54, 4), np.float32))


def test_a_non_contiguous_input_is_made_contiguous(client):
    x = np.arange(40, dtype=np.float64).reshape(8, 5)[:, ::2]
    np.testing.assert_array_equal(client.infer("echo", {"x": x})["x"], x)


def test_async_requests_overlap_and_each_gets_its_reply(client):
    requests = [client.infer_async("echo", {"x": np.full((2, 4), i, np.int32)})
                for i in range(32)]
    assert "in flight" in repr(requests[0])
    for i, r in enumerate(requests):
        np.testing.assert_array_equal(r.wait()["x"], np.full((2, 4), i, np.int32))
        assert r.test()
    with pytest.raises(tandem.ArgumentError, match="already called"):
        requests[0].wait()


def test_a_dropped_request_is_discarded(client):
    client.infer_async("echo", {"x": np.zeros(4, np.float32)})  # never waited for
    np.testing.assert_array_equal(client.infer("echo", np.ones(3))["input"], np.ones(3))


def test_an_unknown_service_is_a_service_error(client):
    with pytest.raises(tandem.ServiceError) as e:
        client.infer("nope", np.zeros(1))
    assert "nope" in str(e.value) and e.value.status == "TANDEM_ERR_SERVICE"
    assert isinstance(e.value, tandem.RequestError)  # as in C++


def test_a_request_that_breaks_the_signature_is_a_request_error(client):
    client.wait_ready("checked")
    with pytest.raises(tandem.RequestError) as e:
        client.infer("checked", {"x": np.zeros((2, 3), np.float32)})
    assert not isinstance(e.value, tandem.ServiceError)
    assert "shape" in str(e.value)


def test_a_missing_output_names_those_there_are(client):
    out = client.infer("echo", {"a": np.zeros(2, np.float32)})
    with pytest.raises(tandem.MissingOutput, match=r"no output 'b' \(have: a\)"):
        out["b"]
    with pytest.raises(KeyError):
        out["b"]


def test_a_dtype_tandem_lacks_is_an_argument_error(client):
    with pytest.raises(tandem.ArgumentError, match="complex128"):
        client.infer("echo", {"x": np.zeros(2, np.complex128)})
    with pytest.raises(ValueError):  # ArgumentError is a ValueError too
        client.infer("echo", {"x": np.zeros(2, np.complex128)})


def test_a_bad_workflow_raises_the_config_error_with_its_line(session, tmp_path_factory):
    comm = session.app_comm
    path = None
    if comm.Get_rank() == 0:
        path = str(tmp_path_factory.mktemp("bad") / "bad.toml")
        with open(path, "w") as f:
            f.write('[job]\nname = "bad"\n\n[[service]]\nname = "s"\nbackend = "echoo"\n')
    path = comm.bcast(path)
    with pytest.raises(tandem.ConfigError) as e:
        tandem.Session(comm, path)  # collective over the application's ranks
    err = e.value
    assert (err.file, err.line, err.key) == (path, 6, "service[0].backend")
    assert "echoo" in err.reason and f"{path}:6" in str(err)


def test_no_proxy_is_a_connect_error(monkeypatch):
    monkeypatch.delenv("TANDEM_SOCKET", raising=False)
    with pytest.raises(tandem.ConnectError):
        tandem.Client()


def test_a_closed_client_says_so(session):
    c = tandem.Client._over(0)
    with pytest.raises(tandem.ArgumentError, match="closed"):
        c.infer("echo", np.zeros(1))
    assert "closed" in repr(c)


def test_infer_all_gives_each_rank_its_own_rows_in_one_request(session, client):
    # Collective inference (issue 37): rows differ per rank, 0 included.
    comm = session.app_comm
    rank = comm.Get_rank()
    client.wait_ready("echo")
    for dtype in ALL_DTYPES:
        rows = (rank * 3 + 1) % 4 if comm.Get_size() > 1 else 2
        x = (np.arange(rows * 3) + 10 * rank).astype(dtype).reshape(rows, 3)
        out = client.infer_all(comm, "echo", {"x": x})
        assert list(out) == ["x"]
        np.testing.assert_array_equal(out["x"], x)
        assert out["x"].dtype == x.dtype and out["x"].shape == x.shape
        if rows:
            np.testing.assert_array_equal(out["x"], client.infer("echo", {"x": x})["x"])


def test_infer_all_fails_every_rank_alike_for_one_ranks_bad_input(session, client):
    comm = session.app_comm
    client.wait_ready("echo")
    last = comm.Get_size() - 1
    x = np.zeros((2, 3), np.float32) if comm.Get_rank() != last else np.zeros((2, 3), np.int32)
    if comm.Get_size() == 1:
        pytest.skip("needs two application ranks to disagree")
    with pytest.raises(tandem.RequestError, match="disagree on the inputs"):
        client.infer_all(comm, "echo", {"x": x})
    # The communicator works afterwards.
    ok = client.infer_all(comm.py2f(), "echo", {"x": np.ones((1, 2), np.float64)})
    np.testing.assert_array_equal(ok["x"], np.ones((1, 2)))
