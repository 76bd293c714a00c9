"""
Tests for L{cri_shim.sync.ticker}.
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.sync.ticker import JITTER, Ticker
from cri_shim.testing import Sequence, no_jitter


class TickerTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.ticks = []
        self.result = None

    def tick(self):
        self.ticks.append(self.clock.seconds())
        if isinstance(self.result, Exception):
            raise self.result
        return self.result

    def test_interval(self):
        """
        Ticks come every interval.
        """
        ticker = Ticker(self.tick, self.clock, "test", no_jitter)
        ticker.start(10)
        self.clock.pump([5, 5, 10, 10])
        self.assertEqual(self.ticks, [10, 20, 30])

    def test_failure_does_not_stop(self):
        """
        A tick that raises is logged and the ticking goes on.
        """
        ticker = Ticker(self.tick, self.clock, "test", no_jitter)
        self.result = RuntimeError("boom")
        ticker.start(10)
        self.clock.pump([10, 10])
        self.assertEqual(self.ticks, [10, 20])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_set_interval(self):
        """
        A new interval counts from the change.
        """
        ticker = Ticker(self.tick, self.clock, "test", no_jitter)
        ticker.start(10)
        self.clock.advance(4)
        ticker.set_interval(3)
        self.clock.pump([3, 3])
        self.assertEqual(self.ticks, [7, 10])

    def test_set_interval_during_tick(self):
        """
        An interval changed by a tick in progress applies after it; the old
        schedule does not tick again.
        """
        ticker = Ticker(self.tick, self.clock, "test", no_jitter)
        self.result = Deferred()
        ticker.start(10)
        self.clock.advance(10)
        ticker.set_interval(30)
        pending, self.result = self.result, None
        pending.callback(None)
        self.clock.pump([10, 10, 10])
        self.assertEqual(self.ticks, [10, 40])

    def test_stop(self):
        """
        A stopped ticker does not tick.
        """
        ticker = Ticker(self.tick, self.clock, "test", no_jitter)
        ticker.start(10, now=True)
        ticker.stop()
        self.clock.advance(100)
        self.assertEqual(self.ticks, [0])
        self.assertFalse(ticker.running)

    def test_stop_waits_for_tick_in_progress(self):
        """
        Stopping during a tick returns a Deferred that fires only when the
        tick is done; stopping between ticks fires at once.
        """
        ticker = Ticker(self.tick, self.clock, "test", no_jitter)
        self.result = Deferred()
        ticker.start(10)
        self.clock.advance(10)
        stopped = ticker.stop()
        self.assertNoResult(stopped)
        self.result.callback(None)
        self.successResultOf(stopped)
        self.successResultOf(ticker.stop())

    def test_stop_waits_across_interval_change(self):
        """
        A tick that changes the interval (restarting the loop) is still
        waited for.
        """
        ticker = Ticker(self.tick, self.clock, "test", no_jitter)
        self.result = Deferred()
        ticker.start(10)
        self.clock.advance(10)
        ticker.set_interval(5)
        stopped = ticker.stop()
        self.assertNoResult(stopped)
        self.result.errback(RuntimeError("failed tick"))
        self.successResultOf(stopped)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.clock.advance(100)
        self.assertEqual(self.ticks, [10])

    def test_jitter(self):
        """
        Each wait is drawn anew from [interval * (1 - JITTER), interval *
        (1 + JITTER)): ticks of nodes started together drift apart.
        """
        ticker = Ticker(self.tick, self.clock, "test", Sequence(0.0, 0.75, 0.5))
        ticker.start(10)
        self.clock.pump([0.5] * 80)
        low, high = 10 * (1 - JITTER), 10 * (1 + JITTER / 2)
        self.assertEqual(self.ticks, [low, low + high, low + high + 10,
                                      low + high + 20])
