"""
Tests for L{cri_shim.registries.resolver}: concurrent probes walked in priority order,
caching, single flight, exclusions.
"""

import attr
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, reference, rewrite
from cri_shim.model.selector import Pod
from cri_shim.registries.probe import ProbeError
from cri_shim.registries.resolver import Resolver
from cri_shim.snapshot import SnapshotHolder
from cri_shim.testing import registry_config


class FakeProber:
    """
    Records probes and lets the test answer each one.
    """

    def __init__(self):
        self.calls = []

    def has_manifest(self, registry, target, timeout):
        d = Deferred()
        self.calls.append((registry.name, str(target), timeout, d))
        return d

    def answer(self, name, result):
        for registry, _, _, d in self.calls:
            if registry == name and not d.called:
                if isinstance(result, Exception):
                    d.errback(result)
                else:
                    d.callback(result)
                return
        raise AssertionError("no pending probe of " + name)


def make_config(*registries, **cache):
    ordered = sorted(registries, key=lambda r: (-r.priority, not r.offline, r.name))
    return config.Config(registries=tuple(ordered), cache=config.Cache(**cache))


OFFLINE = registry_config("http://sealos.hub:5000", "admin", "pw", priority=1000, offline=True)
MIRROR = registry_config("https://mirror.example", "m", "mpw", priority=500)
BACKUP = registry_config("https://backup.example/proj", priority=100)


class ResolverTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.prober = FakeProber()
        self.resolver = Resolver(self.prober)
        self.holder = SnapshotHolder(make_config(OFFLINE, MIRROR, BACKUP), self.clock.seconds)

    def resolve(self, image):
        return self.resolver.resolve(self.holder.current, reference.parse(image))

    def lookup(self, image, exclude=frozenset()):
        return self.resolver.lookup(self.holder.current, reference.parse(image), exclude)

    def test_all_probed_at_once(self):
        """
        Every candidate is asked at once, each under its own name for the
        image (a path prefix kept), with the probe timeout.
        """
        self.resolve("nginx")
        self.assertEqual([(name, target, timeout) for name, target, timeout, _ in
                          self.prober.calls], [
            ("sealos.hub:5000", "sealos.hub:5000/library/nginx", 2.0),
            ("mirror.example", "mirror.example/library/nginx", 2.0),
            ("backup.example/proj", "backup.example/proj/library/nginx", 2.0),
        ])

    def test_waits_for_higher_priority(self):
        """
        A lower-priority holder is not chosen while a higher-priority
        registry has not answered.
        """
        d = self.resolve("nginx:1")
        self.prober.answer("mirror.example", True)
        self.assertNoResult(d)
        self.prober.answer("sealos.hub:5000", False)
        decision = self.successResultOf(d)
        self.assertEqual(str(decision.target), "mirror.example/library/nginx:1")
        self.assertIs(decision.registry, MIRROR)
        self.assertEqual(decision.source, rewrite.PROBE)

    def test_first_holder_cancels_the_rest(self):
        """
        Once the highest-priority registry says yes, slower ones are not
        waited for: their probes are cancelled.
        """
        d = self.resolve("nginx:1")
        self.prober.answer("sealos.hub:5000", True)
        self.assertEqual(self.successResultOf(d).registry, OFFLINE)
        self.assertTrue(all(probe.called for _, _, _, probe in self.prober.calls))

    def test_error_skips_registry(self):
        """
        A registry that cannot be asked is passed over.
        """
        d = self.resolve("nginx:1")
        self.prober.answer("sealos.hub:5000", ProbeError("no answer within 2s"))
        self.prober.answer("mirror.example", False)
        self.prober.answer("backup.example/proj", True)
        self.assertEqual(self.successResultOf(d).registry, BACKUP)

    def test_nobody(self):
        """
        When no candidate holds the image, the decision is not to move it,
        naming every registry asked, cached for the negative TTL.
        """
        d = self.resolve("nginx:1")
        for name in ("sealos.hub:5000", "mirror.example", "backup.example/proj"):
            self.prober.answer(name, False)
        decision = self.successResultOf(d)
        self.assertEqual((decision.target, decision.source), (None, rewrite.NOBODY))
        self.assertEqual(decision.tried, ("sealos.hub:5000", "mirror.example",
                                          "backup.example/proj"))
        cache = self.holder.current.cache
        self.assertEqual(cache.get("docker.io/library/nginx:1"), decision)
        self.clock.advance(60)
        self.assertIsNone(cache.get("docker.io/library/nginx:1"))

    def test_errors_not_cached_as_absent(self):
        """
        "Nobody has it" is not cached when a registry could not be asked.
        """
        d = self.resolve("nginx:1")
        self.prober.answer("sealos.hub:5000", ProbeError("down"))
        self.prober.answer("mirror.example", False)
        self.prober.answer("backup.example/proj", False)
        self.successResultOf(d)
        self.assertIsNone(self.holder.current.cache.get("docker.io/library/nginx:1"))

    def test_positive_cached(self):
        """
        A found image is cached under its normalised name for the TTL.
        """
        d = self.resolve("nginx")
        self.prober.answer("sealos.hub:5000", True)
        decision = self.successResultOf(d)
        cache = self.holder.current.cache
        self.assertEqual(cache.get("docker.io/library/nginx:latest"), decision)
        self.clock.advance(30 * 60)
        self.assertIsNone(cache.get("docker.io/library/nginx:latest"))

    def test_single_flight(self):
        """
        Identical concurrent lookups share one set of probes.
        """
        first = self.resolve("nginx:1")
        second = self.resolve("docker.io/library/nginx:1")
        self.assertEqual(len(self.prober.calls), 3)
        self.prober.answer("sealos.hub:5000", True)
        self.assertEqual(self.successResultOf(first), self.successResultOf(second))
        self.resolve("nginx:2")
        self.assertEqual(len(self.prober.calls), 6)

    def test_cancel_one_waiter(self):
        """
        A caller giving up does not cancel the lookup for the others.
        """
        first = self.resolve("nginx:1")
        second = self.resolve("nginx:1")
        first.cancel()
        self.failureResultOf(first)
        self.prober.answer("sealos.hub:5000", True)
        self.assertEqual(self.successResultOf(second).registry, OFFLINE)

    def test_new_config_new_lookup(self):
        """
        A lookup started under one configuration is not shared with a
        lookup under the next.
        """
        self.resolve("nginx:1")
        self.holder.publish(make_config(OFFLINE))
        self.resolve("nginx:1")
        self.assertEqual(len(self.prober.calls), 4)

    def test_exclude(self):
        """
        Excluded registries (a pull from them failed) are not asked.
        """
        d = self.lookup("nginx:1", frozenset(["sealos.hub:5000"]))
        self.assertEqual([name for name, _, _, _ in self.prober.calls],
                         ["mirror.example", "backup.example/proj"])
        self.prober.answer("mirror.example", True)
        self.assertEqual(self.successResultOf(d).registry, MIRROR)

    def test_configured_registry_not_probed(self):
        """
        An image already naming a configured registry is kept, with that
        registry, without probing.
        """
        decision = self.successResultOf(self.resolve("mirror.example/team/app:2"))
        self.assertEqual((decision.target, decision.registry, decision.source),
                         (None, MIRROR, rewrite.CONFIGURED))
        self.assertEqual(self.prober.calls, [])

    def test_lookup_does_not_decide_again(self):
        """
        L{Resolver.lookup} asks the registries without running
        L{rewrite.decide_without_lookup} again: its caller decided already.
        """
        def decided_twice(config, ref):
            raise AssertionError("decide_without_lookup called by the lookup")
        self.patch(rewrite, "decide_without_lookup", decided_twice)
        d = self.lookup("nginx:1")
        self.prober.answer("sealos.hub:5000", True)
        self.assertEqual(self.successResultOf(d).registry, OFFLINE)

    def test_no_registries(self):
        """
        With no candidate at all, nothing is probed.
        """
        holder = SnapshotHolder(config.Config(), self.clock.seconds)
        d = self.resolver.resolve(holder.current, reference.parse("nginx"))
        self.assertEqual(self.successResultOf(d).source, rewrite.NO_REGISTRIES)
        self.assertEqual(self.prober.calls, [])

    def test_mirror_of(self):
        """
        A registry limited to some source domains is only asked for images
        from them.
        """
        quay_only = registry_config("https://quay-mirror.example", mirror_of=["quay.io"])
        holder = SnapshotHolder(make_config(quay_only, MIRROR), self.clock.seconds)
        self.resolver.resolve(holder.current, reference.parse("nginx"))
        self.resolver.resolve(holder.current, reference.parse("quay.io/a/b"))
        self.assertEqual([(name, target) for name, target, _, _ in self.prober.calls], [
            ("mirror.example", "mirror.example/library/nginx"),
            ("mirror.example", "mirror.example/a/b"),
            ("quay-mirror.example", "quay-mirror.example/a/b"),
        ])


class DebugLogTests(SynchronousTestCase):
    def lookup_events(self, debug):
        holder = SnapshotHolder(config.Config(registries=(OFFLINE, MIRROR), debug=debug),
                                Clock().seconds)
        prober = FakeProber()
        with capturedLogs() as events:
            Resolver(prober).resolve(holder.current, reference.parse("nginx"))
            prober.answer("sealos.hub:5000", False)
            prober.answer("mirror.example", True)
        return [event for event in events if event["log_level"] == LogLevel.debug]

    def test_debug_lists_answers(self):
        """
        With C{debug}, each lookup logs every registry's answer.
        """
        [event] = self.lookup_events(True)
        self.assertEqual(event["answers"], "sealos.hub:5000=no, mirror.example=has it")
        self.assertEqual(event["result"], "mirror.example")

    def test_quiet_by_default(self):
        """
        Without C{debug}, no debug events.
        """
        self.assertEqual(self.lookup_events(False), [])


class HealthOrderTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.prober = FakeProber()
        self.unreachable = []
        self.resolver = Resolver(self.prober, on_unreachable=lambda name, reason:
                                 self.unreachable.append((name, reason)))
        self.holder = SnapshotHolder(make_config(OFFLINE, MIRROR, BACKUP), self.clock.seconds)

    def resolve(self, image):
        return self.resolver.resolve(self.holder.current, reference.parse(image))

    def test_down_asked_last(self):
        """
        A registry found down is not asked while one that is not down may
        hold the image: the lookup does not wait on it.
        """
        self.holder.publish_down({"sealos.hub:5000"})
        d = self.resolve("nginx:1")
        self.assertEqual([name for name, _, _, _ in self.prober.calls],
                         ["mirror.example", "backup.example/proj"])
        self.prober.answer("mirror.example", True)
        self.assertEqual(self.successResultOf(d).registry, MIRROR)

    def test_down_asked_when_nobody_else_has_it(self):
        """
        When no other registry holds the image, the down ones are asked.
        """
        self.holder.publish_down({"sealos.hub:5000"})
        d = self.resolve("nginx:1")
        self.prober.answer("mirror.example", False)
        self.prober.answer("backup.example/proj", False)
        self.assertEqual(self.prober.calls[-1][0], "sealos.hub:5000")
        self.prober.answer("sealos.hub:5000", True)
        self.assertEqual(self.successResultOf(d).registry, OFFLINE)

    def test_unreachable_reported(self):
        """
        A probe that could not reach its registry is reported (passive
        health); one that got an answer is not.
        """
        d = self.resolve("nginx:1")
        self.prober.answer("sealos.hub:5000", ProbeError("no answer within 2s", unreachable=True))
        self.prober.answer("mirror.example", ProbeError("access denied (403)"))
        self.prober.answer("backup.example/proj", True)
        self.successResultOf(d)
        self.assertEqual(self.unreachable, [("sealos.hub:5000", "no answer within 2s")])


class LifetimeTests(SynchronousTestCase):
    def setUp(self):
        self.prober = FakeProber()
        self.resolver = Resolver(self.prober)
        self.holder = SnapshotHolder(make_config(OFFLINE, MIRROR), Clock().seconds)

    def resolve(self, image):
        return self.resolver.resolve(self.holder.current, reference.parse(image))

    def lookup(self, image, exclude=frozenset()):
        return self.resolver.lookup(self.holder.current, reference.parse(image), exclude)

    def test_all_excluded(self):
        """
        A lookup with every registry excluded decides at once (nobody), and
        the caller hears of it.
        """
        d = self.lookup("nginx:1", frozenset(["sealos.hub:5000", "mirror.example"]))
        decision = self.successResultOf(d)
        self.assertEqual(decision.source, rewrite.NOBODY)
        self.assertEqual(self.prober.calls, [])

    def test_last_waiter_cancels_probes(self):
        """
        When every caller gave up (kubelet cancelled), the probes are
        cancelled; a later lookup starts afresh.
        """
        first = self.resolve("nginx:1")
        second = self.resolve("nginx:1")
        first.cancel()
        self.failureResultOf(first)
        self.assertFalse(any(d.called for _, _, _, d in self.prober.calls))
        second.cancel()
        self.failureResultOf(second)
        self.assertTrue(all(d.called for _, _, _, d in self.prober.calls))
        third = self.resolve("nginx:1")
        self.assertEqual(len(self.prober.calls), 4)
        self.prober.answer("sealos.hub:5000", True)
        self.assertEqual(self.successResultOf(third).registry, OFFLINE)


class RecoveryTests(SynchronousTestCase):
    """
    Decisions made while a registry of higher priority than the chosen one
    was down are forgotten when it is up again: the next pull asks it.
    """

    setUp = ResolverTests.setUp
    resolve = ResolverTests.resolve

    def test_passed_over_registry_up_again(self):
        """
        The primary is down: the image goes to the mirror, cached; once the
        primary is up again the cached decision is gone, and the next
        lookup asks the primary first.
        """
        self.holder.publish_down({OFFLINE.name})
        d = self.resolve("nginx")
        self.prober.answer(MIRROR.name, True)
        self.assertEqual(self.successResultOf(d).registry, MIRROR)
        key = rewrite.cache_key(reference.parse("nginx"))
        self.assertIsNotNone(self.holder.current.cache.get(key))
        self.holder.publish_down(set())
        self.assertIsNone(self.holder.current.cache.get(key))
        calls = len(self.prober.calls)
        d = self.resolve("nginx")
        self.assertEqual(self.prober.calls[calls][0], OFFLINE.name)
        self.prober.answer(OFFLINE.name, True)
        self.assertEqual(self.successResultOf(d).registry, OFFLINE)

    def test_other_decisions_kept(self):
        """
        Decisions that passed over no down registry (the chosen one ranks
        above it, or nothing was down) stay cached when it is up again; so
        do those passing over a registry still down.
        """
        self.holder.publish_down({MIRROR.name, BACKUP.name})
        above = self.resolve("above:1")
        self.prober.answer(OFFLINE.name, True)
        self.successResultOf(above)
        self.holder.publish_down({BACKUP.name})
        self.holder.publish_down({OFFLINE.name, BACKUP.name})
        below = self.resolve("below:1")
        self.prober.answer(MIRROR.name, True)
        self.successResultOf(below)
        self.holder.publish_down({OFFLINE.name})
        cache = self.holder.current.cache
        self.assertIsNotNone(cache.get(rewrite.cache_key(reference.parse("above:1"))))
        self.assertIsNotNone(cache.get(rewrite.cache_key(reference.parse("below:1"))))
        self.holder.publish_down(set())
        self.assertIsNotNone(cache.get(rewrite.cache_key(reference.parse("above:1"))))
        self.assertIsNone(cache.get(rewrite.cache_key(reference.parse("below:1"))))

    def test_unreachable_during_the_lookup(self):
        """
        A registry that the lookup itself could not reach (it is marked down
        by it, after the snapshot was taken) is passed over too: the
        decision is dropped when it is up again.
        """
        d = self.resolve("nginx")
        self.prober.answer(OFFLINE.name, ProbeError("refused", unreachable=True))
        self.prober.answer(MIRROR.name, True)
        self.assertEqual(self.successResultOf(d).registry, MIRROR)
        self.holder.publish_down({OFFLINE.name})
        self.holder.publish_down(set())
        self.assertIsNone(self.holder.current.cache.get(
            rewrite.cache_key(reference.parse("nginx"))))


class PodScopeTests(SynchronousTestCase):
    """
    Lookups for pods: restricted registries asked only for the pods they
    serve, decisions shared only between pods the rules see alike, and the
    registries passed over named in the decision.
    """

    def setUp(self):
        self.clock = Clock()
        self.prober = FakeProber()
        self.resolver = Resolver(self.prober)
        team = attr.evolve(MIRROR, namespaces=("team-a",))
        self.holder = SnapshotHolder(make_config(OFFLINE, team, BACKUP), self.clock.seconds)

    def lookup(self, pod):
        return self.resolver.lookup(self.holder.current, reference.parse("nginx:1"), pod=pod)

    def test_restricted_asked_for_its_pods_only(self):
        """
        The namespace's registry is asked for its pods and not for others;
        each scope has its own single flight and cache entry.
        """
        mine = self.lookup(Pod("p", "team-a"))
        theirs = self.lookup(Pod("p", "team-b"))
        none = self.lookup(None)
        self.assertEqual([name for name, _, _, _ in self.prober.calls], [
            "sealos.hub:5000", "mirror.example", "backup.example/proj",
            "sealos.hub:5000", "backup.example/proj"])
        for name in ("sealos.hub:5000", "sealos.hub:5000"):
            self.prober.answer(name, False)
        self.prober.answer("mirror.example", True)
        self.prober.answer("backup.example/proj", True)
        self.assertEqual(self.successResultOf(mine).registry.name, "mirror.example")
        theirs = self.successResultOf(theirs)
        self.assertEqual(theirs.registry.name, "backup.example/proj")
        self.assertIs(self.successResultOf(none), theirs)
        cache = self.holder.current.cache
        self.assertEqual(cache.get("docker.io/library/nginx:1 for mirror.example").registry.name,
                         "mirror.example")
        self.assertEqual(cache.get("docker.io/library/nginx:1").registry.name,
                         "backup.example/proj")

    def test_passed_over(self):
        """
        A decision names the registries ranked above the one chosen that
        could not serve: unreachable, or found down.
        """
        self.holder.publish_down({"sealos.hub:5000"})
        d = self.lookup(Pod("p", "team-a"))
        self.prober.answer("mirror.example", ProbeError("connection refused", unreachable=True))
        self.prober.answer("backup.example/proj", True)
        self.assertEqual(self.successResultOf(d).passed_over, (
            ("sealos.hub:5000", "found down"),
            ("mirror.example", "unreachable: connection refused")))
