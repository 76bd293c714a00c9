# -*- test-case-name: tests.test_cache -*-
"""
The rewrite cache: an LRU with per-entry expiry, read by gRPC worker threads
and filled by the reactor, guarded by one short lock.

A new cache is made for every published configuration, so a config change
invalidates everything at once; the counters live in a L{CacheStats} shared
across caches so they survive reloads.  An entry may carry the names of the
registries it passed over (they were down): when one of them is up again,
L{drop_passing_over} forgets those entries, so their images are looked up
again and may go back to it.
"""

import threading
from collections import OrderedDict


class CacheStats:
    """
    Counters, in the names the Go shim logs them under.
    """

    def __init__(self):
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.invalidations = 0

    def as_dict(self):
        """
        :return: the counters as a dict.
        """
        return {
            "image_hits": self.hits,
            "image_misses": self.misses,
            "image_evictions": self.evictions,
            "invalidations": self.invalidations,
        }


class RewriteCache:
    """
    Maps an image string to a value until its time-to-live runs out.

    :param size: the most entries kept; 0 disables the cache.
    :param seconds: a callable returning the current time in seconds.
    :param stats: the L{CacheStats} to count into.
    """

    def __init__(self, size, seconds, stats):
        self._size = size
        self._seconds = seconds
        self._stats = stats
        self._entries = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        """
        :return: the live value for C{key}, or C{None}.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._stats.misses += 1
                return None
            value, expires, _ = entry
            if self._seconds() >= expires:
                del self._entries[key]
                self._stats.misses += 1
                self._stats.evictions += 1
                return None
            self._entries.move_to_end(key)
            self._stats.hits += 1
            return value

    def put(self, key, value, ttl, passed_over=frozenset()):
        """
        Store C{value} for C{ttl} seconds, evicting the least recently used
        entry when full.

        :param passed_over: names of the registries the value would change
            for once they are up again.
        """
        if self._size <= 0 or ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (value, self._seconds() + ttl, frozenset(passed_over))
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
                self._stats.evictions += 1

    def discard(self, key):
        """
        Forget C{key}, e.g. after a pull from its registry failed.
        """
        with self._lock:
            self._entries.pop(key, None)

    def drop_passing_over(self, names):
        """
        Forget the entries that passed over any registry in C{names}.

        :return: how many were forgotten.
        """
        names = frozenset(names)
        with self._lock:
            stale = [key for key, (_, _, passed) in self._entries.items() if passed & names]
            for key in stale:
                del self._entries[key]
        return len(stale)

    def __len__(self):
        return len(self._entries)
