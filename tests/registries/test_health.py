"""
Tests for L{cri_shim.registries.health}: registry checks on a fake clock against fake
registries (StubTreq), transitions, thresholds, backoff, Retry-After,
passive marking and following config reloads.
"""

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, reference
from cri_shim.registries.health import DOWN, JITTER, UNKNOWN, UP, RegistryHealthChecker
from cri_shim.registries.probe import Prober
from cri_shim.registries.resolver import Resolver
from cri_shim.snapshot import SnapshotHolder
from cri_shim.testing import FakeRegistries, FakeRegistry, Sequence, no_jitter, registry_config

ONE = registry_config("http://one.example:5000", priority=1000, offline=True)
TWO = registry_config("https://two.example", "u", "p", priority=500)


def make_config(*registries, **health):
    return config.Config(registries=registries, health=config.HealthCheck(**health))


class _Silent:
    def request(self, method, url, **kwargs):
        return Deferred()


class HealthCheckerTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.fakes = FakeRegistries()
        self.one = self.fakes.add("one.example:5000", FakeRegistry())
        self.two = self.fakes.add("two.example", FakeRegistry("u", "p"))
        self.http = StubTreq(self.fakes)
        self.holder = SnapshotHolder(make_config(ONE, TWO), self.clock.seconds)

    def start(self, http=None):
        checker = RegistryHealthChecker(self.holder, http or self.http, self.clock,
                                        uniform=no_jitter)
        checker.startService()
        self.addCleanup(checker.stopService)
        self.flush()
        return checker

    def flush(self, seconds=0):
        self.clock.advance(seconds)
        self.http.flush()

    def state(self, checker, registry):
        return checker.registries[registry.name].state

    def test_reachable(self):
        """
        New registries are checked at once; 200 and 401 both mean up.
        """
        checker = self.start()
        self.assertEqual((self.state(checker, ONE), self.state(checker, TWO)), (UP, UP))
        self.assertEqual(self.two.seen[0][:2], ("GET", "/v2/"))
        self.assertEqual(self.two.seen[0][2], "")

    def test_threshold_and_transitions(self):
        """
        A registry goes down after failureThreshold failed checks in a row
        (made while a pull from it is in progress), with a log line saying
        from what to what and why; the down set reaches the snapshot.
        """
        checker = self.start()
        checker.pull_started(ONE.name)
        self.one.status = 503
        with capturedLogs() as events:
            self.flush(10)
            self.flush(10)
            self.assertEqual(self.state(checker, ONE), UP)
            self.assertEqual(self.holder.current.down, frozenset())
            self.flush(10)
        self.assertEqual(self.state(checker, ONE), DOWN)
        self.assertEqual(self.holder.current.down, frozenset([ONE.name]))
        [event] = [e for e in events if "registry" in e and e.get("state")]
        self.assertEqual((event["registry"], event["previous"], event["state"], event["reason"]),
                         (ONE.name, UP, DOWN, "answered 503"))

    def test_backoff_and_recovery(self):
        """
        A down registry is checked after 1, 2, 4, 8, 8 intervals; it is up
        again after successThreshold good checks.
        """
        self.holder.publish(make_config(ONE, TWO, success_threshold=2))
        checker = self.start()
        checker.pull_started(ONE.name)
        self.one.status = 503
        self.flush(10), self.flush(10), self.flush(10)
        self.assertEqual(self.state(checker, ONE), DOWN)
        checks = []
        for wait in (10, 20, 40, 80, 80):
            before = len(self.one.seen)
            self.flush(wait - 1)
            self.assertEqual(len(self.one.seen), before)
            self.flush(1)
            checks.append(len(self.one.seen) - before)
        self.assertEqual(checks, [1, 1, 1, 1, 1])
        self.one.status = None
        self.flush(80)
        self.assertEqual(self.state(checker, ONE), DOWN)
        self.flush(10)
        self.assertEqual(self.state(checker, ONE), UP)
        self.assertEqual(self.holder.current.down, frozenset())

    def test_timeout(self):
        """
        A registry that never answers fails its check after the timeout.
        """
        self.holder.publish(make_config(ONE, failure_threshold=1))
        checker = self.start(http=_Silent())
        self.clock.advance(1.9)
        self.assertEqual(self.state(checker, ONE), UNKNOWN)
        self.clock.advance(0.1)
        self.assertEqual(self.state(checker, ONE), DOWN)
        self.assertEqual(checker.registries[ONE.name].reason, "no answer within 2s")

    def test_retry_after(self):
        """
        429 is reachable; the next check waits for Retry-After.
        """
        self.one.status = 429
        self.one.status_headers = {"retry-after": "45"}
        checker = self.start()
        checker.pull_started(ONE.name)
        self.assertEqual(self.state(checker, ONE), UP)
        before = len(self.one.seen)
        self.flush(44)
        self.assertEqual(len(self.one.seen), before)
        self.flush(1)
        self.assertEqual(len(self.one.seen), before + 1)

    def test_passive(self):
        """
        A lookup or pull that could not reach a registry marks it down at
        once; it is checked again after one interval.
        """
        checker = self.start()
        checker.report_unreachable(TWO.name, "ConnectionRefusedError: refused")
        self.assertEqual(self.state(checker, TWO), DOWN)
        self.assertEqual(self.holder.current.down, frozenset([TWO.name]))
        self.flush(10)
        self.assertEqual(self.state(checker, TWO), UP)

    def test_probe_timeout_marks_down_at_once(self):
        """
        A lookup whose probes of up registries time out marks them down at
        that moment (passive health), not after the health checks' failure
        threshold; the down set reaches the snapshot at once.
        """
        checker = self.start()
        self.assertEqual((self.state(checker, ONE), self.state(checker, TWO)), (UP, UP))
        resolver = Resolver(Prober(_Silent(), self.clock),
                            on_unreachable=checker.report_unreachable)
        resolver.resolve(self.holder.current, reference.parse("nginx:1"))
        timeout = self.holder.current.config.probe_timeout
        self.clock.advance(timeout - 0.1)
        self.assertEqual(self.holder.current.down, frozenset())
        self.clock.advance(0.1)
        self.assertEqual((self.state(checker, ONE), self.state(checker, TWO)), (DOWN, DOWN))
        self.assertEqual(checker.registries[TWO.name].reason,
                         "no answer within {:g}s".format(timeout))
        self.assertEqual(self.holder.current.down, frozenset([ONE.name, TWO.name]))

    def test_follows_config(self):
        """
        Registries added by a reload are checked (unknown until then);
        removed ones are not checked any more and leave the down set.
        """
        checker = self.start()
        checker.report_unreachable(TWO.name, "refused")
        three = registry_config("https://three.example", priority=100)
        self.fakes.add("three.example", FakeRegistry())
        self.holder.publish(make_config(ONE, three))
        self.assertEqual(self.holder.current.down, frozenset())
        self.assertNotIn(TWO.name, checker.registries)
        self.assertEqual(self.state(checker, three), UNKNOWN)
        seen = len(self.two.seen)
        self.flush(100)
        self.assertEqual(self.state(checker, three), UP)
        self.assertEqual(len(self.two.seen), seen)

    def test_stop(self):
        """
        A stopped checker checks nothing.
        """
        checker = self.start()
        checker.stopService()
        seen = len(self.one.seen)
        self.flush(100)
        self.assertEqual(len(self.one.seen), seen)


class IdleTests(SynchronousTestCase):
    """
    Idle means silent: a registry that is up is not asked anything while
    nothing is pulled; lookups and pulls tell its health.
    """

    def setUp(self):
        HealthCheckerTests.setUp(self)

    start = HealthCheckerTests.start
    flush = HealthCheckerTests.flush
    state = HealthCheckerTests.state

    def test_up_registries_not_asked(self):
        """
        After the first check of each registry, a day with nothing pulled
        sends them nothing.
        """
        self.start()
        seen = (len(self.one.seen), len(self.two.seen))
        self.assertEqual(seen, (1, 1))
        for _ in range(24 * 60):
            self.flush(60)
        self.assertEqual((len(self.one.seen), len(self.two.seen)), seen)

    def test_checked_while_pulled(self):
        """
        While a pull from a registry is in progress it is checked every
        interval, so a registry that stalls is found down; after the pull,
        not any more: not even the check that was due (issue 17).
        """
        checker = self.start()
        checker.pull_started(ONE.name)
        self.flush(10)
        self.flush(10)
        self.assertEqual(len(self.one.seen), 3)
        checker.pull_ended(ONE.name)
        self.flush(10)
        for _ in range(10):
            self.flush(10)
        self.assertEqual(len(self.one.seen), 3)
        self.assertEqual(self.state(checker, ONE), UP)

    def test_check_cancelled_when_the_last_pull_ends(self):
        """
        The check a pull scheduled is cancelled when the last pull from the
        registry ends, not before: past the interval, an up registry is
        asked nothing; a new pull checks it again.
        """
        checker = self.start()
        checker.pull_started(ONE.name)
        checker.pull_started(ONE.name)
        checker.pull_ended(ONE.name)
        self.flush(10)
        self.assertEqual(len(self.one.seen), 2)
        checker.pull_ended(ONE.name)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.flush(10.5)
        self.flush(100)
        self.assertEqual(len(self.one.seen), 2)
        checker.pull_started(ONE.name)
        self.flush(10)
        self.assertEqual(len(self.one.seen), 3)

    def test_checks_kept_when_needed(self):
        """
        When the last pull ends, a registry keeps its checks when it is
        down, not seen yet, or its last check failed.
        """
        self.holder.publish(make_config(ONE, TWO, failure_threshold=2))
        checker = RegistryHealthChecker(self.holder, self.http, self.clock,
                                        uniform=no_jitter)
        checker.startService()
        self.addCleanup(checker.stopService)
        checker.pull_started(TWO.name)
        checker.pull_ended(TWO.name)
        self.flush(0)
        self.assertEqual((self.state(checker, TWO), len(self.two.seen)), (UP, 1))
        checker.pull_started(ONE.name)
        self.one.status = 503
        self.flush(10)
        checker.pull_ended(ONE.name)
        self.assertEqual((self.state(checker, ONE), checker.registries[ONE.name].failures),
                         (UP, 1))
        self.flush(10)
        self.assertEqual((self.state(checker, ONE), len(self.one.seen)), (DOWN, 3))
        checker.pull_started(ONE.name)
        checker.pull_ended(ONE.name)
        self.flush(10)
        self.assertEqual(len(self.one.seen), 4)

    def test_down_checked_until_up(self):
        """
        A registry marked down by a lookup is checked (to see it come back)
        until it is up, then no more.
        """
        checker = self.start()
        checker.report_unreachable(ONE.name, "refused")
        self.one.status = 503
        self.flush(10)
        self.flush(20)
        self.assertEqual(len(self.one.seen), 3)
        self.one.status = None
        self.flush(40)
        self.assertEqual(self.state(checker, ONE), UP)
        for _ in range(10):
            self.flush(100)
        self.assertEqual(len(self.one.seen), 4)

    def test_lookup_answer_is_seen(self):
        """
        A lookup's answer from a down registry counts as a good check; one
        from an up registry clears its failed checks; a registry not seen
        yet still gets its first check.
        """
        self.holder.publish(make_config(ONE, TWO, success_threshold=1, failure_threshold=2))
        checker = RegistryHealthChecker(self.holder, self.http, self.clock,
                                        uniform=no_jitter)
        checker.startService()
        self.addCleanup(checker.stopService)
        checker.report_reachable(ONE.name, "a lookup got its answer")
        self.assertEqual(self.state(checker, ONE), UNKNOWN)
        self.flush(0)
        self.assertEqual((self.state(checker, ONE), len(self.one.seen)), (UP, 1))
        checker.report_unreachable(TWO.name, "refused")
        checker.report_reachable(TWO.name, "a lookup got its answer")
        self.assertEqual(self.state(checker, TWO), UP)
        checker.pull_started(ONE.name)
        self.one.status = 503
        self.flush(10)
        self.assertEqual(checker.registries[ONE.name].failures, 1)
        checker.report_reachable(ONE.name, "a lookup got its answer")
        self.one.status = None
        self.assertEqual((self.state(checker, ONE), checker.registries[ONE.name].failures),
                         (UP, 0))

    def test_resolver_reports_answers(self):
        """
        The resolver tells the checker of each registry that answered a
        probe (found or not): a down one is up again.
        """
        checker = RegistryHealthChecker(self.holder, self.http, self.clock,
                                        uniform=no_jitter)
        checker.startService()
        self.addCleanup(checker.stopService)
        self.flush(0)
        checker.report_unreachable(ONE.name, "refused")
        checker.report_unreachable(TWO.name, "refused")
        resolver = Resolver(Prober(self.http, self.clock),
                            on_unreachable=checker.report_unreachable,
                            on_reachable=checker.report_reachable)
        resolver.resolve(self.holder.current, reference.parse("nginx:1"))
        self.http.flush()
        self.assertEqual((self.state(checker, ONE), self.state(checker, TWO)), (UP, UP))

    def test_jitter(self):
        """
        The waits between checks are drawn from [interval * (1 - JITTER),
        interval * (1 + JITTER)).
        """
        checker = RegistryHealthChecker(self.holder, self.http, self.clock,
                                        uniform=Sequence(0.0))
        checker.startService()
        self.addCleanup(checker.stopService)
        self.flush(0)
        checker.report_unreachable(ONE.name, "refused")
        self.one.status = 503
        self.flush(10 * (1 - JITTER) - 0.01)
        self.assertEqual(len(self.one.seen), 1)
        self.flush(0.01)
        self.assertEqual(len(self.one.seen), 2)
