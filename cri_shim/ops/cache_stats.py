# -*- test-case-name: tests.ops.test_cache_stats -*-
"""
The periodic cache statistics line (C{cache.statsLogInterval}), in the Go
shim's format, so log-based dashboards keep working.
"""

import random

from twisted.application import service
from twisted.logger import Logger

from cri_shim.sync.ticker import Ticker


class CacheStatsLogger(service.Service):
    """
    :param holder: the L{cri_shim.snapshot.SnapshotHolder} whose counters and
        settings are read.
    :param clock: an C{IReactorTime}.
    :param uniform: the random source of the line's jitter.
    """

    name = "cache-stats"
    log = Logger()

    def __init__(self, holder, clock, uniform=random.random):
        self._holder = holder
        self._ticker = Ticker(self._log_stats, clock, "cache statistics", uniform)
        holder.subscribe(lambda snapshot: self._follow(snapshot.config.cache.stats_interval))

    def startService(self):
        service.Service.startService(self)
        self._follow(self._holder.current.config.cache.stats_interval)

    def stopService(self):
        service.Service.stopService(self)
        self._ticker.stop()

    def _follow(self, interval):
        if not self.running or interval <= 0:
            self._ticker.stop()
        elif self._ticker.running:
            self._ticker.set_interval(interval)
        else:
            self._ticker.start(interval)

    def _log_stats(self):
        self.log.info(
            "cache stats: image_hits={image_hits} image_misses={image_misses} "
            "image_evictions={image_evictions} invalidations={invalidations} "
            "entries={entries}", entries=len(self._holder.current.cache),
            **self._holder.stats.as_dict())
