# -*- test-case-name: tests.sync.test_ticker -*-
"""
A periodic task on the reactor whose interval can change while it runs,
whose every wait is jittered (so that nodes started together drift apart),
and which a failing tick never stops: the base of the config reload and the
cache statistics line.
"""

import random

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger

from cri_shim.model.duration import jittered

#: How far each wait moves, as a fraction of the interval.
JITTER = 0.1


class Ticker:
    """
    Calls C{tick} about every C{interval} seconds (never two at once: the
    next wait starts when a tick's Deferred fires).

    :param tick: a callable, may return a Deferred.
    :param clock: an C{IReactorTime}.
    :param name: what the task is, for the log.
    :param uniform: the random source of the jitter, a callable returning a
        number in [0, 1); tests pass a fixed one (0.5: no jitter).
    """

    log = Logger()

    def __init__(self, tick, clock, name, uniform=random.random):
        self._tick = tick
        self._clock = clock
        self._name = name
        self._uniform = uniform
        self._call = None
        self._started = False
        self._in_flight = None
        self._waiting = []
        self.interval = None

    @property
    def running(self):
        """
        Whether the task is scheduled.
        """
        return self._started

    def start(self, interval, now=False):
        """
        Start ticking every C{interval} seconds, the first tick now or after
        one interval.
        """
        self._cancel()
        self._started = True
        self.interval = interval
        if now:
            self._run()
        elif self._in_flight is None:
            self._schedule()

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
        self._started = False
        self._cancel()
        if self._in_flight is None:
            return succeed(None)
        waiting = Deferred()
        self._waiting.append(waiting)
        return waiting

    def _cancel(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self):
        self._call = self._clock.callLater(jittered(self.interval, self._uniform, JITTER),
                                           self._run)

    def _run(self):
        self._call = None
        self._in_flight = d = maybeDeferred(self._tick)
        d.addErrback(lambda failure: self.log.failure(
            "{task} failed; it runs again in {interval}s", failure, task=self._name,
            interval=self.interval))
        d.addCallback(self._done)

    def _done(self, result):
        self._in_flight = None
        if self._started and self._call is None:
            self._schedule()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
        return result
