"""
Tests for L{cri_shim.ops.cache_stats}.
"""

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config
from cri_shim.ops.cache_stats import CacheStatsLogger
from cri_shim.snapshot import SnapshotHolder
from cri_shim.testing import no_jitter


class CacheStatsLoggerTests(SynchronousTestCase):
    def start(self, **cache):
        clock = Clock()
        holder = SnapshotHolder(config.Config(cache=config.Cache(**cache)), clock.seconds)
        logger = CacheStatsLogger(holder, clock, no_jitter)
        logger.startService()
        self.addCleanup(logger.stopService)
        return clock, holder

    def test_logs_every_interval(self):
        """
        One line per interval, in the Go shim's key=value form, with the
        counters at that moment.
        """
        clock, holder = self.start(stats_interval=60.0)
        holder.current.cache.get("missing")
        with capturedLogs() as events:
            clock.advance(59)
            self.assertEqual(events, [])
            clock.advance(1)
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertEqual(event["image_misses"], 1)
        self.assertTrue(event["log_format"].startswith("cache stats: image_hits="))

    def test_disabled(self):
        """
        With statistics off (interval 0), nothing is logged.
        """
        clock, _ = self.start(stats_interval=0.0, disable_stats=True)
        with capturedLogs() as events:
            clock.advance(3600)
        self.assertEqual(events, [])

    def test_follows_reload(self):
        """
        A reloaded interval applies; statistics switched off stop the line,
        switched on start it.
        """
        clock, holder = self.start(stats_interval=60.0)
        holder.publish(config.Config(cache=config.Cache(stats_interval=10.0)))
        with capturedLogs() as events:
            clock.advance(10)
        self.assertEqual(len(events), 1)
        holder.publish(config.Config(cache=config.Cache(stats_interval=0.0, disable_stats=True)))
        with capturedLogs() as events:
            clock.advance(600)
        self.assertEqual(events, [])
        holder.publish(config.Config(cache=config.Cache(stats_interval=5.0)))
        with capturedLogs() as events:
            clock.advance(5)
        self.assertEqual(len(events), 1)
