# -*- test-case-name: tests.test_snapshot -*-
"""
The immutable state the request path reads: one L{Snapshot} per published
configuration, swapped as a whole by the reactor and read without locks by
gRPC worker threads.
"""

import attr
from twisted.logger import Logger

from cri_shim.cache import CacheStats, RewriteCache


@attr.s(frozen=True, slots=True)
class Snapshot:
    """
    What a request needs to decide a rewrite.

    :ivar config: the L{cri_shim.model.config.Config} in force.
    :ivar cache: the L{RewriteCache} for this configuration only.
    :ivar generation: increases with every configuration published; keys
        single-flight lookups so that a lookup never mixes two of them.
    :ivar down: names of the registries the health checker found down.
    """

    config = attr.ib()
    cache = attr.ib()
    generation = attr.ib()
    down = attr.ib(default=frozenset())


class SnapshotHolder:
    """
    Holds the current L{Snapshot}.  Only the reactor thread calls
    L{publish}; any thread reads L{current}.

    :param seconds: a callable returning the time in seconds, for cache
        expiry (worker threads call it: pass C{reactor.seconds}).
    """

    log = Logger()

    def __init__(self, config, seconds):
        self._seconds = seconds
        self._subscribers = []
        self.stats = CacheStats()
        self.current = self._build(config, 0)

    def subscribe(self, callback):
        """
        Call C{callback(snapshot)} after each publish (on the reactor).
        """
        self._subscribers.append(callback)

    def _build(self, config, generation, down=frozenset()):
        cache = RewriteCache(config.cache.size, self._seconds, self.stats)
        names = frozenset(registry.name for registry in config.registries)
        return Snapshot(config=config, cache=cache, generation=generation, down=down & names)

    def publish_down(self, down):
        """
        Make C{down} the set of registries found down; the configuration and
        the cache stay (cached rewrites to a down registry are passed over
        by readers), except the decisions that passed over a registry up
        again: their images are looked up again, and go back to it.

        :return: the new L{Snapshot}.
        """
        previous = self.current
        self.current = attr.evolve(previous, down=frozenset(down))
        recovered = previous.down - self.current.down
        if recovered:
            dropped = previous.cache.drop_passing_over(recovered)
            if dropped:
                self.log.info("{count} cached rewrites passed over {registries}, up again: "
                              "their images are looked up again", count=dropped,
                              registries=", ".join(sorted(recovered)))
        return self.current

    def publish(self, config):
        """
        Make C{config} current, with an empty rewrite cache.

        :return: the new L{Snapshot}.
        """
        self.stats.invalidations += 1
        self.current = snapshot = self._build(config, self.current.generation + 1,
                                              self.current.down)
        for callback in self._subscribers:
            try:
                callback(snapshot)
            except Exception:
                self.log.failure("applying the new configuration failed in {callback!r}",
                                 callback=callback)
        return snapshot
