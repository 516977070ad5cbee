"""Stop signals: a scheduler's request to end a run (preemption, time limit), acted on between steps.

SLURM sends SIGTERM when it preempts a job or its time is up, and the signal a job asks for with
``--signal`` shortly before the limit (SIGUSR1 in Lightning's convention, SIGUSR2 in submitit's).
:class:`StopSignals` only records such a signal; :class:`~rholoss.callbacks.StepCheckpoint` then
saves ``last.ckpt`` at the next step boundary (where its periodic saves happen, so the run resumes
exactly) and calls :meth:`StopSignals.hand_over`.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any, NoReturn

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class StopSignals:
    """While installed, the stop signals are recorded instead of ending the process.

    :meth:`remember_outer` keeps the handlers that were there before the trainer's (Lightning puts
    its own in when training starts; submitit's when its job starts); :meth:`install` then replaces
    Lightning's for the time of training. Lightning's SLURM handlers would save a second checkpoint
    (``hpc_ckpt_<n>.ckpt``) mid-step and requeue with ``scontrol`` themselves; the saved
    ``last.ckpt`` replaces the first, the outer handler (submitit's) the second.
    """

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._outer: dict[signal.Signals, Any] = {}
        self._replaced: dict[signal.Signals, Any] = {}

    def remember_outer(self) -> None:
        self._outer = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def install(self) -> None:
        # Python delivers signals to the main thread only (a run started from another thread keeps
        # the default handlers).
        if threading.current_thread() is threading.main_thread():
            self._replaced = {signum: signal.signal(signum, self._record) for signum in STOP_SIGNALS}

    def uninstall(self) -> None:
        for signum, handler in self._replaced.items():
            signal.signal(signum, handler)
        self._replaced = {}

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)
            log.warning("Received %s: stopping after the current step, with a checkpoint.", self.received.name)

    def hand_over(self) -> NoReturn:
        """Give the signal to the handler that had it before the trainer (submitit's requeues the
        job and exits), then exit with status 128 + the signal's number, as a process killed by it.
        A rank that stops for another rank's signal ends as for SIGTERM."""
        signum = self.received or signal.SIGTERM
        self.uninstall()
        outer = self._outer.get(signum)
        if callable(outer):
            outer(signum, None)
        raise SystemExit(128 + signum)
