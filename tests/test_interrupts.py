"""Ctrl-C held while a module is imported (verifier.interrupts): the interrupt is sent to this
process from inside a module's own import, deterministically."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from verifier.interrupts import inside_import, interrupts_outside_imports

_INTERRUPTED_MODULE = """
import os, signal, time
os.kill(os.getpid(), signal.SIGINT)
for _ in range(50):  # 0.1 s of Python code after the signal: a default handler raises in here
    time.sleep(0.002)
FINISHED = True
"""


@pytest.fixture
def interrupted_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a fresh module that sends SIGINT to this process while it is imported."""
    name = f"interrupted_{time.monotonic_ns()}"
    (tmp_path / f"{name}.py").write_text(_INTERRUPTED_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield name
    signal.signal(signal.SIGINT, previous)
    sys.modules.pop(name, None)


def test_without_the_block_the_interrupt_lands_inside_the_import(interrupted_module: str) -> None:
    """The hazard itself: Python raises KeyboardInterrupt in the middle of the module's code."""
    with pytest.raises(KeyboardInterrupt):
        __import__(interrupted_module)
    assert interrupted_module not in sys.modules


def test_an_interrupt_during_an_import_is_raised_once_the_import_is_over(interrupted_module: str) -> None:
    reached: list[str] = []
    with pytest.raises(KeyboardInterrupt), interrupts_outside_imports():
        module = __import__(interrupted_module)
        reached.append("after the import")
        assert module.FINISHED
        for _ in range(500):  # the held interrupt comes back within RETRY_SECONDS
            time.sleep(0.002)
        reached.append("never")
    assert reached == ["after the import"]
    assert sys.modules[interrupted_module].FINISHED
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_interrupt_held_when_the_block_ends_is_raised_there(interrupted_module: str) -> None:
    with pytest.raises(KeyboardInterrupt), interrupts_outside_imports(retry=60.0):
        __import__(interrupted_module)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_outside_imports_the_interrupt_is_raised_at_once() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt), interrupts_outside_imports(retry=60.0):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(500):
            time.sleep(0.002)
    assert time.monotonic() - began < 0.5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_handler_someone_else_installed_is_left_alone() -> None:
    calls: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        with interrupts_outside_imports():
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert calls == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_outside_the_main_thread_the_block_does_nothing() -> None:
    seen: list[object] = []

    def body() -> None:
        with interrupts_outside_imports():
            seen.append(signal.getsignal(signal.SIGINT))

    signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler]


def test_inside_import_sees_the_import_machinery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"looks_at_itself_{time.monotonic_ns()}"
    (tmp_path / f"{name}.py").write_text(
        "import sys\nfrom verifier.interrupts import inside_import\nSEEN = inside_import(sys._getframe())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert __import__(name).SEEN
    finally:
        sys.modules.pop(name, None)
    assert not inside_import(sys._getframe())
