"""Ctrl-C stops a command even when a library swallowed the KeyboardInterrupt.

Python raises KeyboardInterrupt wherever the main thread happens to be when SIGINT arrives. Inside a
finaliser (``__del__``, a weakref callback, which the converters' large graphs run often) the
exception is printed as "Exception ignored in ..." and dropped, and some libraries wrap optional
imports in a bare ``except:``; the command then went on and an interrupted ``export`` wrote its
bundle and exited 0 (tests/reliability/test_bundle_faults.py caught it once under load).

:func:`installed` (the CLI's ``main``) puts a SIGINT handler in place that remembers the signal before
raising; :func:`check` raises KeyboardInterrupt again if one came. The export calls it at every step
boundary (export/timing.py) and right before the finished bundle is renamed into place, so an
interrupt costs at most the step under way and never leaves a new bundle behind.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_HIT = threading.Event()


def _handler(signum, frame):
    _HIT.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def installed():
    """The remembering SIGINT handler for the duration of the block (main thread only; elsewhere, or
    when SIGINT is ignored, nothing changes). The previous handler is restored afterwards and the
    remembered signal forgotten (``main()`` may run many times in one process, as in the tests)."""
    _HIT.clear()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _HIT.clear()   # the interrupt belonged to this block: later work in the process is not stopped


def interrupted() -> bool:
    """True once SIGINT came under :func:`installed` (whatever became of its KeyboardInterrupt)."""
    return _HIT.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if SIGINT came, even if its first KeyboardInterrupt was swallowed."""
    if _HIT.is_set():
        raise KeyboardInterrupt
