"""The tests of this directory run inside one tandem.Session under
`mpiexec -n 4` (or 5) `python3 -m pytest`: every rank starts it before
collection; the services' ranks serve until the application's ranks end it
after the last test, and then run no tests themselves."""
import os

import pytest
from mpi4py import MPI

import tandem

_session = None


def pytest_configure(config):
    global _session
    _session = tandem.Session(MPI.COMM_WORLD, os.path.join(os.path.dirname(__file__),
                                                           "session.toml"))


def pytest_collection_modifyitems(config, items):
    if not _session.is_app:
        items.clear()  # this rank served; the application's ranks test


def pytest_sessionfinish(session, exitstatus):
    # Collective: the application's ranks end the session here, after their
    # last test, which lets the services' ranks out of tandem.Session().
    _session.finalize()
    if not _session.is_app and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK


@pytest.fixture
def session():
    return _session


@pytest.fixture
def client():
    return _session.client
