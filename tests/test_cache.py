"""
Tests for L{cri_shim.cache}: LRU order, expiry on an injected clock, the
disabled cache, counters (the Go shim's cache cases, on a fake clock).
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.cache import CacheStats, RewriteCache


class RewriteCacheTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.stats = CacheStats()

    def cache(self, size=2):
        return RewriteCache(size, self.clock.seconds, self.stats)

    def test_hit_and_miss(self):
        """
        A stored value is returned until its TTL; hits and misses count.
        """
        cache = self.cache()
        self.assertIsNone(cache.get("a"))
        cache.put("a", "A", 30)
        self.assertEqual(cache.get("a"), "A")
        self.assertEqual((self.stats.hits, self.stats.misses), (1, 1))

    def test_expiry(self):
        """
        An entry is gone once its TTL has passed, counted as an eviction.
        """
        cache = self.cache()
        cache.put("a", "A", 30)
        self.clock.advance(29.9)
        self.assertEqual(cache.get("a"), "A")
        self.clock.advance(0.1)
        self.assertIsNone(cache.get("a"))
        self.assertEqual(self.stats.evictions, 1)
        self.assertEqual(len(cache), 0)

    def test_lru(self):
        """
        When full, the least recently used entry goes (a read counts as a
        use): put a, b; read a; put c evicts b.
        """
        cache = self.cache(2)
        cache.put("a", "A", 30)
        cache.put("b", "B", 30)
        cache.get("a")
        cache.put("c", "C", 30)
        self.assertIsNone(cache.get("b"))
        self.assertEqual((cache.get("a"), cache.get("c")), ("A", "C"))
        self.assertEqual(self.stats.evictions, 1)

    def test_disabled(self):
        """
        Size 0 stores nothing.
        """
        cache = self.cache(0)
        cache.put("a", "A", 30)
        self.assertIsNone(cache.get("a"))

    def test_discard(self):
        """
        A discarded entry is gone; discarding a missing one is harmless.
        """
        cache = self.cache()
        cache.put("a", "A", 30)
        cache.discard("a")
        cache.discard("never")
        self.assertIsNone(cache.get("a"))

    def test_stats_names(self):
        """
        The counters keep the Go shim's log names.
        """
        self.stats.invalidations += 1
        self.assertEqual(self.stats.as_dict(), {
            "image_hits": 0, "image_misses": 0, "image_evictions": 0, "invalidations": 1})

    def test_drop_passing_over(self):
        """
        Entries that passed over a named registry are forgotten; the others
        stay.
        """
        cache = self.cache(size=4)
        cache.put("a", "A", 30, frozenset(["primary"]))
        cache.put("b", "B", 30, frozenset(["primary", "second"]))
        cache.put("c", "C", 30, frozenset(["second"]))
        cache.put("d", "D", 30)
        self.assertEqual(cache.drop_passing_over({"primary"}), 2)
        self.assertEqual([cache.get(key) for key in "abcd"], [None, None, "C", "D"])
