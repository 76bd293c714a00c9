# -*- test-case-name: tests.test_cache_stats -*-
"""
The periodic cache statistics line (C{cache.statsLogInterval}), in the Go
shim's format, so log-based dashboards keep working.
"""

from twisted.application import service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger


class CacheStatsLogger(service.Service):
    """
    :param holder: the L{cri_shim.snapshot.SnapshotHolder} whose counters and
        settings are read.
    :param clock: an C{IReactorTime}.
    """

    name = "cache-stats"
    log = Logger()

    def __init__(self, holder, clock):
        self._holder = holder
        self._clock = clock
        self._loop = None

    def startService(self):
        service.Service.startService(self)
        interval = self._holder.current.config.cache.stats_interval
        if interval > 0:
            self._loop = LoopingCall(self._log_stats)
            self._loop.clock = self._clock
            self._loop.start(interval, now=False)

    def stopService(self):
        service.Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _log_stats(self):
        self.log.info(
            "cache stats: image_hits={image_hits} image_misses={image_misses} "
            "image_evictions={image_evictions} invalidations={invalidations} "
            "entries={entries}", entries=len(self._holder.current.cache),
            **self._holder.stats.as_dict())
