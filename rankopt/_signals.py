"""Ctrl-C stops a search, whatever the process did to SIGINT before (light: stdlib only).

Python turns SIGINT into ``KeyboardInterrupt`` only while its own handler is installed. A
process may have lost it before the search starts: a library (or an earlier test in the same
process) that installs a handler which does not raise, or sets SIGINT to ``SIG_IGN``; and a
child process inherits an ignored SIGINT from its parent (POSIX keeps ``SIG_IGN`` across
``exec``), in which case Python never installs its handler at all. Either way Ctrl-C would
not reach the trial, and a search would run on. :func:`ctrl_c_interrupts` puts Python's
handler back for the duration of a search and restores the previous one afterwards.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ctrl_c_interrupts"]


@contextmanager
def ctrl_c_interrupts() -> Iterator[None]:
    """While inside, SIGINT raises ``KeyboardInterrupt`` in the main thread.

    Outside the main thread nothing changes (Python delivers signals to the main thread
    and only it may set handlers). A handler installed outside Python (``getsignal`` gives
    None) is left alone: it cannot be restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None or previous is signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
