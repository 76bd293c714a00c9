# -*- test-case-name: tests.sync.test_reloader -*-
"""
A fake reactor for code that hands blocking work to the reactor's thread pool
(C{deferToThreadPool}): a L{Clock} whose thread pool runs the work at once on
the calling thread and can hold its results back, so a test decides when work
"in a thread" finishes.
"""

from twisted.internet.task import Clock
from twisted.python.failure import Failure


class ManualPool:
    """
    A thread pool for L{deferToThreadPool} that runs the work at once on
    the calling thread; with C{hold = True}, its results reach the reactor
    only when the test calls L{deliver} (the work is then "in progress").

    :ivar calls: the callables given, in order.
    """

    def __init__(self):
        self.hold = False
        self.calls = []
        self._results = []

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        self.calls.append(f)
        try:
            outcome = (True, f(*args, **kwargs))
        except BaseException:
            outcome = (False, Failure())
        self._results.append((on_result, outcome))
        if not self.hold:
            self.deliver()

    def deliver(self, last_first=False):
        """
        Hand the results held so far to the reactor: in order, or the
        latest first (as threads may finish).  Work they lead to stays in
        progress.
        """
        results, self._results = self._results, []
        for on_result, outcome in reversed(results) if last_first else results:
            on_result(*outcome)


class FakeReactor(Clock):
    """
    A clock whose callFromThread runs the call at once, and whose thread
    pool is a L{ManualPool}.
    """

    def __init__(self):
        Clock.__init__(self)
        self.pool = ManualPool()

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)

    def getThreadPool(self):
        return self.pool
