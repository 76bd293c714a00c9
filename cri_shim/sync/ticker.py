# -*- test-case-name: tests.sync.test_ticker -*-
"""
A periodic task on the reactor whose interval can change while it runs, and
which a failing tick never stops: the base of the config reload and the
ConfigMap poll.
"""

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger


class Ticker:
    """
    Calls C{tick} every C{interval} seconds (never two at once: the next
    interval starts when a tick's Deferred fires).

    :param tick: a callable, may return a Deferred.
    :param clock: an C{IReactorTime}.
    :param name: what the task is, for the log.
    """

    log = Logger()

    def __init__(self, tick, clock, name):
        self._tick = tick
        self._clock = clock
        self._name = name
        self._loop = None
        self._in_flight = None
        self._waiting = []
        self.interval = None

    @property
    def running(self):
        """
        Whether the task is scheduled.
        """
        return self._loop is not None

    def start(self, interval, now=False):
        """
        Start ticking every C{interval} seconds, the first tick now or after
        one interval.
        """
        self.stop()
        self.interval = interval
        self._loop = LoopingCall(self._safe_tick)
        self._loop.clock = self._clock
        self._loop.start(interval, now=now)

    def set_interval(self, interval):
        """
        Tick every C{interval} seconds from now on (counted from now, or from
        the end of a tick in progress).
        """
        if self.running and interval != self.interval:
            self.start(interval, now=False)

    def stop(self):
        """
        Stop ticking; a tick in progress finishes.

        :return: a Deferred that fires when no tick is in progress any more.
        """
        if self._loop is not None:
            self._loop.stop()
            self._loop = None
        if self._in_flight is None:
            return succeed(None)
        waiting = Deferred()
        self._waiting.append(waiting)
        return waiting

    def _safe_tick(self):
        self._in_flight = d = maybeDeferred(self._tick)
        d.addErrback(lambda failure: self.log.failure(
            "{task} failed; it runs again in {interval}s", failure, task=self._name,
            interval=self.interval))
        d.addCallback(self._done)
        return d

    def _done(self, result):
        self._in_flight = None
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
        return result
