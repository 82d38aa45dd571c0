"""Ctrl-C (SIGINT) that never lands in the middle of an update.

`StopRequests`: while the block runs, Ctrl-C only sets `requested`; under DDP the processes then stop together
at their next agreement, never one of them in the middle of a step while the others wait for its gradients.
`HoldInterrupts`: the same, and KeyboardInterrupt is raised when the block ends, so that the optimizer's
update, the EMA and the step counter are applied together or not at all (a checkpoint holds a completed step).
"""
import signal
import threading


class StopRequests:
    """While the block runs, SIGINT sets `requested` instead of raising KeyboardInterrupt."""

    def __enter__(self):
        self.requested, self.previous = False, None
        # Only where Ctrl-C can stop Python at all: a process started in the background by a shell without job
        # control ignores SIGINT (SIG_IGN), and must not begin to act on it inside this block.
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self.previous = signal.signal(signal.SIGINT, self._request)
        return self

    def _request(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


class HoldInterrupts(StopRequests):
    """Hold Ctrl-C back until the block ends, then raise it: an update is never half applied."""

    def __exit__(self, *exc):
        super().__exit__(*exc)
        if self.requested and exc[0] is None:
            raise KeyboardInterrupt
        return False
