"""
Tests for L{cri_shim.snapshot}.
"""

from twisted.internet.task import Clock
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
