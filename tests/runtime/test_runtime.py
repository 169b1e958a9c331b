"""Process-wide runtime settings: how many torch threads a command uses."""
import os

import pytest

from sg3probe import runtime


@pytest.fixture
def no_thread_variables(monkeypatch):
    for variable in ("SG3PROBE_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)


def test_an_explicit_request_wins(no_thread_variables, monkeypatch):
    monkeypatch.setenv("SG3PROBE_THREADS", "3")
    assert runtime.choose_threads(5) == 5
    assert runtime.choose_threads(0) == 3


def test_omp_num_threads_is_respected(no_thread_variables, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert runtime.choose_threads() == 2


@pytest.mark.parametrize("load", [0.0, 1.2, 12.0])
def test_every_core_whatever_the_load(no_thread_variables, monkeypatch, load):
    """The count must not follow the load: torch's sums, and so the results, follow the count."""
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (load, load, load))
    assert runtime.choose_threads() == 4


def test_a_negative_request_or_a_bad_variable_is_an_error(no_thread_variables, monkeypatch):
    with pytest.raises(runtime.ConfigError, match="positive number"):
        runtime.choose_threads(-3)
    for value in ("abc", "0"):
        monkeypatch.setenv("SG3PROBE_THREADS", value)
        with pytest.raises(runtime.ConfigError, match="SG3PROBE_THREADS"):
            runtime.choose_threads()
