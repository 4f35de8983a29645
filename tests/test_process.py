"""The process guards (memory, SIGTERM, thread policy): the same from Python as from the CLI."""

from __future__ import annotations

import os
import signal
import threading
import warnings
from types import SimpleNamespace

import pytest

from headstart import process
from headstart.machine import MemoryLimit
from headstart.process import AddressSpaceError, ThreadPolicyWarning, guarded

WATCHER = "headstart-memory-guard"


@pytest.fixture
def default_sigterm():
    """SIGTERM at its default (no host handler), put back as found afterwards."""
    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, before)


@pytest.fixture
def watched(tmp_path, monkeypatch):
    """A fake cgroup limit far above its usage, so the memory guard starts its watcher."""
    (tmp_path / "memory.usage_in_bytes").write_text("0\n")
    (tmp_path / "memory.stat").write_text("total_inactive_file 0\n")
    monkeypatch.setattr("headstart.memory_guard.memory_limit", lambda: MemoryLimit(2**40, tmp_path, 1))


def watchers() -> int:
    return sum(t.name == WATCHER for t in threading.enumerate())


def test_sigterm_handler_is_installed_inside_and_restored_after(default_sigterm):
    with guarded():
        assert signal.getsignal(signal.SIGTERM) is process._terminated
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sigterm_unwinds_the_block_with_exit_status_143(default_sigterm):
    unwound = []
    with pytest.raises(SystemExit) as stopped:
        with guarded():
            assert signal.getsignal(signal.SIGTERM) is process._terminated  # else the kill below would end pytest
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(10**7):  # the handler runs between bytecodes of the main thread
                    pass
            finally:
                unwound.append(True)
    assert stopped.value.code == 128 + signal.SIGTERM and unwound == [True]


def test_a_host_programs_own_handler_is_left_alone(default_sigterm):
    def host(signum, frame):
        pass

    signal.signal(signal.SIGTERM, host)
    with guarded():
        assert signal.getsignal(signal.SIGTERM) is host
    assert signal.getsignal(signal.SIGTERM) is host


def test_no_handler_is_installed_off_the_main_thread(default_sigterm):
    seen = {}

    def work():
        with guarded():
            seen["handler"], seen["active"] = signal.getsignal(signal.SIGTERM), process.active()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == {"handler": signal.SIG_DFL, "active": True}


def test_nested_contexts_install_once_and_the_outer_one_restores(default_sigterm, watched):
    with guarded("outer"):
        assert watchers() == 1
        with guarded("inner"):
            assert watchers() == 1  # no second watcher
        assert signal.getsignal(signal.SIGTERM) is process._terminated  # the inner exit did not restore
        assert process.active()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and not process.active() and watchers() == 0


def test_memory_false_starts_no_watcher(watched):
    with guarded(memory=False):
        assert watchers() == 0
    with guarded():
        assert watchers() == 1


def test_a_too_small_address_space_is_refused_before_the_block(monkeypatch):
    monkeypatch.setattr(process, "address_space_too_small", lambda: "address space limited to 2.0 GiB (ulimit -v)")
    ran = []
    with pytest.raises(AddressSpaceError, match="ulimit -v"):
        with guarded(address_space=True):
            ran.append(True)
    assert ran == [] and not process.active()
    with guarded():  # not asked: not checked
        pass


@pytest.mark.parametrize("load, given, expected", [(8.0, None, "PASSIVE"), (0.1, None, None), (8.0, "ACTIVE", "ACTIVE")])
def test_openmp_waits_passively_only_on_a_busy_machine(monkeypatch, load, given, expected):
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(process, "openmp_started", lambda: False)
    if given is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", given)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in time: no warning
        with guarded(memory=False):
            assert os.environ.get("OMP_WAIT_POLICY") == expected


def test_a_thread_policy_that_comes_too_late_warns(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (8.0, 8.0, 8.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(process, "openmp_started", lambda: True)
    with pytest.warns(ThreadPolicyWarning, match="too late.*OMP_WAIT_POLICY=PASSIVE in the environment"):
        with guarded(memory=False):
            pass
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # still reaches the worker processes it starts


def test_openmp_is_seen_once_torch_has_loaded_it():
    import torch

    assert torch.ones(2).sum().item() == 2
    assert process.openmp_started()


def test_classifier_fit_runs_under_the_guards(default_sigterm, watched, monkeypatch, tmp_path):
    from headstart import api

    seen = {}

    def fake_fit(self, data, out, callbacks, exclude):
        seen.update(active=process.active(), handler=signal.getsignal(signal.SIGTERM), watchers=watchers())
        return SimpleNamespace(options=None, artifact=None)

    monkeypatch.setattr(api.Training, "fit", fake_fit)
    api.Classifier("convnet_tiny", report=False).fit(tmp_path)
    assert seen == {"active": True, "handler": process._terminated, "watchers": 1}
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and watchers() == 0


def test_the_other_classifier_methods_run_under_the_guards(default_sigterm, monkeypatch, tmp_path):
    """resume, lr_find, evaluate, predict, predict_to_csv and export: each inner call sees the guard."""
    from headstart import api

    seen: list[str] = []

    def record(name, value=None):
        def inner(*_args, **_kw):
            seen.append(name if process.active() and signal.getsignal(signal.SIGTERM) is process._terminated else f"{name} unguarded")
            return value

        return inner

    predictor = SimpleNamespace(predict=record("predict", []))
    run = SimpleNamespace(options=None, artifact=None)
    request = SimpleNamespace(model=None, train=api.TrainConfig(), image_size=None, cache=False)
    saved = SimpleNamespace(request=request, resume=record("resume", run))
    monkeypatch.setattr(api.Training, "for_resume", staticmethod(lambda *a: (saved, None)))
    monkeypatch.setattr(api.Training, "lr_find", record("lr_find"))
    monkeypatch.setattr("headstart.pipeline.evaluate.evaluate", record("evaluate", {}))
    monkeypatch.setattr("headstart.predict.csvfile.predict_to_file", record("predict_to_csv", (0, 0)))
    monkeypatch.setattr("headstart.export.run.export", record("export"))
    monkeypatch.setattr(api.Classifier, "predictor", lambda self, tta=(): predictor)

    api.Classifier.resume(tmp_path)
    clf = api.Classifier("convnet_tiny", report=False)
    clf.lr_find(tmp_path)
    clf.artifact, clf.run_dir = SimpleNamespace(model=api.ModelConfig()), tmp_path
    clf.evaluate(tmp_path)
    clf.predict([b"x"])
    clf.predict_to_csv([], tmp_path / "p.csv")
    clf.export()
    assert seen == ["resume", "lr_find", "evaluate", "predict", "predict_to_csv", "export"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_the_facade_applies_the_thread_policy_when_first_touched(monkeypatch):
    """``from headstart import Classifier`` is the Python user's first touch: the policy is
    applied there, before ``headstart.api`` (and so torch) is imported."""
    import headstart

    order = []
    monkeypatch.setattr(os, "getloadavg", lambda: (8.0, 8.0, 8.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(process, "openmp_started", lambda: order.append("policy") or False)
    assert headstart.__getattr__("Classifier").__name__ == "Classifier"
    assert order == ["policy"] and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_a_caught_sigterm_inside_the_guard_does_not_end_the_process_later(default_sigterm):
    """The SIGTERM grace (a forced exit after 5 s, for threads blocked in a read) is disarmed
    once the unwinding leaves the guarded block: a host that catches the SystemExit goes on."""
    import time

    with pytest.raises(SystemExit):
        with process.sigterm_unwinds():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    assert not process._deadline
