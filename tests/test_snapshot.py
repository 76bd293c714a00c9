"""
Tests for L{cri_shim.snapshot}.
"""

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config
from cri_shim.snapshot import SnapshotHolder


class SnapshotHolderTests(SynchronousTestCase):
    def test_publish_invalidates(self):
        """
        Publishing a configuration gives a new snapshot with an empty cache
        and a higher generation, and counts an invalidation; the old snapshot
        a request may still hold is untouched.
        """
        clock = Clock()
        holder = SnapshotHolder(config.Config(), clock.seconds)
        old = holder.current
        old.cache.put("a", "A", 10)
        new_config = config.Config(debug=True)
        new = holder.publish(new_config)
        self.assertIs(holder.current, new)
        self.assertIs(new.config, new_config)
        self.assertEqual(new.generation, old.generation + 1)
        self.assertIsNone(new.cache.get("a"))
        self.assertEqual(old.cache.get("a"), "A")
        self.assertEqual(holder.stats.invalidations, 1)

    def test_subscribers(self):
        """
        Subscribers hear of every publish with the new snapshot; one that
        fails is logged and does not stop the others.
        """
        holder = SnapshotHolder(config.Config(), Clock().seconds)
        heard = []

        def broken(snapshot):
            raise RuntimeError("subscriber bug")

        holder.subscribe(broken)
        holder.subscribe(heard.append)
        new = holder.publish(config.Config(debug=True))
        self.assertEqual(heard, [new])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_recovered_registry_drops_what_passed_it_over(self):
        """
        When a registry leaves the down set, the cached decisions that
        passed over it are dropped, with one line saying how many; those
        passing over a registry still down stay.
        """
        holder = SnapshotHolder(config.Config(), Clock().seconds)
        holder.publish_down({"primary", "second"})
        cache = holder.current.cache
        cache.put("a", "A", 10, frozenset(["primary"]))
        cache.put("b", "B", 10, frozenset(["second"]))
        with capturedLogs() as events:
            holder.publish_down({"second"})
        self.assertEqual((cache.get("a"), cache.get("b")), (None, "B"))
        [event] = events
        self.assertEqual((event["count"], event["registries"]), (1, "primary"))
