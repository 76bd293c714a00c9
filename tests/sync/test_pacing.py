"""
Tests for L{cri_shim.sync.pacing}: whose refusal an answer to an Event post
is (read from real API server C{Status} bodies), and the holds that follow,
on a fake clock.
"""

import json

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.sync import pacing
from cri_shim.sync.pacing import IDENTITY, NAMESPACE, Gate, Holds, TokenBucket, refusal


def status(message, causes=None, code=403, reason="Forbidden"):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code,
            "details": {"name": "web-1.17a", "kind": "events"}}
    if causes is not None:
        body["details"]["causes"] = causes
    return json.dumps(body).encode("utf-8")


#: A namespace being deleted (the lifecycle admission plugin).
TERMINATING = status(
    'events "web-1.17a" is forbidden: unable to create new content in namespace team-a '
    'because it is being terminated',
    [{"reason": "NamespaceTerminating", "message": "namespace team-a is being terminated",
      "field": "metadata.namespace"}])
#: A ResourceQuota on count/events used up.
QUOTA = status(
    'events "web-1.17a" is forbidden: exceeded quota: events, requested: count/events=1, '
    'used: count/events=100, limited: count/events=100')
#: RBAC (any authorizer) refusing the identity.
RBAC = status(
    'events is forbidden: User "system:node:worker-1" cannot create resource "events" in '
    'API group "" in the namespace "team-a"')


class TokenBucketTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        # Not at 0: the refill counts from when the bucket was made.
        self.clock.advance(100)

    def test_burst_then_rate(self):
        """
        C{burst} tokens are taken at once, one at a time; then C{take} says
        how long until the next, which comes at C{rate} a second.
        """
        bucket = TokenBucket(2.0, 3, self.clock.seconds)
        self.assertEqual([bucket.take() for _ in range(3)], [0, 0, 0])
        self.assertEqual(bucket.take(), 0.5)
        self.clock.advance(0.25)
        self.assertEqual(bucket.take(), 0.25)
        self.clock.advance(0.25)
        self.assertEqual((bucket.take(), bucket.take()), (0, 0.5))

    def test_one_token(self):
        """
        A single token saved up is taken.
        """
        bucket = TokenBucket(1.0, 1, self.clock.seconds)
        self.assertEqual((bucket.take(), bucket.take()), (0, 1))
        self.clock.advance(1)
        self.assertEqual(bucket.take(), 0)

    def test_saved_up_to_burst(self):
        """
        However long it waits, at most C{burst} tokens are saved up.
        """
        bucket = TokenBucket(2.0, 2, self.clock.seconds)
        self.clock.advance(1000)
        self.assertEqual([bucket.take() for _ in range(3)], [0, 0, 0.5])


class RefusalTests(SynchronousTestCase):
    def test_scopes(self):
        """
        The two scopes are told apart, and from "not a refusal".
        """
        self.assertEqual(len({None, NAMESPACE, IDENTITY}), 3)

    def test_namespace(self):
        """
        A namespace being terminated (by its cause, or its words alone) and
        a used-up quota are the namespace's.
        """
        self.assertEqual(refusal(403, TERMINATING),
                         (NAMESPACE, "the namespace is being terminated"))
        self.assertEqual(refusal(403, status("no words", [{"reason": "NamespaceTerminating"}])),
                         (NAMESPACE, "the namespace is being terminated"))
        self.assertEqual(refusal(403, status(
            "unable to create new content in namespace x because it is being terminated")),
            (NAMESPACE, "the namespace is being terminated"))
        scope, why = refusal(403, QUOTA)
        self.assertEqual(scope, NAMESPACE)
        self.assertTrue(why.startswith("over the namespace's quota (events "), why)
        self.assertEqual(refusal(403, status('events "x" is forbidden: failed quota: q: '
                                             'must specify limits')),
                         (NAMESPACE, "over the namespace's quota (events \"x\" is forbidden: "
                          "failed quota: q: must specify limits)"))

    def test_identity(self):
        """
        A 401, whatever it says, and an authorizer's denial are the
        identity's.
        """
        self.assertEqual(refusal(401, b""),
                         (IDENTITY, "the API server does not accept the credentials"))
        self.assertEqual(refusal(401, TERMINATING)[0], IDENTITY)
        self.assertEqual(refusal(403, RBAC), (IDENTITY, json.loads(RBAC)["message"]))
        self.assertEqual(refusal(403, status(
            'events is forbidden: User "system:anonymous" cannot create resource "events" '
            'in API group "" in the namespace "x": RBAC: clusterrole "y" not found'))[0],
            IDENTITY)

    def test_other_403(self):
        """
        Another 403 (an admission webhook, garbage) is held against the
        namespace only: one namespace's policy never silences the others.
        """
        self.assertEqual(refusal(403, status('admission webhook "deny.example" denied the '
                                             'request: no events here')),
                         (NAMESPACE, 'admission webhook "deny.example" denied the request: no '
                          'events here'))
        self.assertEqual(refusal(403, b"\xff not json"), (NAMESPACE, "403 without a message"))
        self.assertEqual(refusal(403, b"[1]"), (NAMESPACE, "403 without a message"))
        self.assertEqual(refusal(403, status("x", causes="nope"))[0], NAMESPACE)

    def test_message_capped(self):
        """
        The message kept is at most 300 characters, its whitespace runs made
        single spaces.
        """
        self.assertEqual(refusal(403, status("a\n\t b" + "c" * 400)),
                         (NAMESPACE, "a b" + "c" * 297))

    def test_not_refusals(self):
        """
        Other codes are not refusals.
        """
        for code in (200, 201, 404, 409, 422, 500):
            self.assertEqual(refusal(code, RBAC), (None, None), code)


class HoldsTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.holds = Holds(self.clock.seconds, 60.0, 300.0, 3)

    def test_window_doubles_up_to_cap(self):
        """
        The first refusal holds for C{first}; each one in a row doubles it,
        up to C{cap}; only the first is one to log.
        """
        windows = []
        for _ in range(5):
            windows.append(self.holds.refused("a"))
            self.clock.advance(windows[-1][0])
        self.assertEqual(windows, [(60, True), (120, False), (240, False), (300, False),
                                   (300, False)])

    def test_held_until_window_ends(self):
        """
        A key is held for its window, then not (but remembered).
        """
        self.holds.refused("a")
        self.assertEqual(self.holds.held("a"), 60)
        self.assertEqual(self.holds.held("b"), 0)
        self.clock.advance(59.5)
        self.assertEqual(self.holds.held("a"), 0.5)
        self.clock.advance(0.5)
        self.assertEqual(self.holds.held("a"), 0)
        self.assertEqual(self.holds.refused("a"), (120, False))

    def test_cleared(self):
        """
        A success forgets the key: its next refusal starts over.
        """
        self.holds.refused("a")
        self.assertEqual((self.holds.cleared("a"), self.holds.cleared("a")), (True, False))
        self.assertEqual(self.holds.held("a"), 0)
        self.assertEqual(self.holds.refused("a"), (60, True))

    def test_bounded(self):
        """
        At most C{size} keys are remembered; the longest-remembered goes.
        """
        for key in "abcd":
            self.holds.refused(key)
        self.assertEqual(len(self.holds), 3)
        self.assertEqual([bool(self.holds.held(key)) for key in "abcd"],
                         [False, True, True, True])
        self.holds.refused("b")
        self.holds.refused("e")
        self.assertEqual([bool(self.holds.held(key)) for key in "bcde"],
                         [True, False, True, True])


class _Cluster:
    identity = "user 'system:node:worker-1'"
    source = "/etc/kubernetes/kubelet.conf"


class GateTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.gate = Gate(self.clock.seconds)

    def test_namespace_hold(self):
        """
        A namespace's refusal holds only it, said once (a warning naming
        it) however many follow; its success ends it, said too.
        """
        with capturedLogs() as captured:
            self.gate.refused(NAMESPACE, "team-a", 403, "being terminated", _Cluster)
            self.assertEqual((self.gate.held("team-a"), self.gate.held("team-b")),
                             (True, False))
            self.clock.advance(pacing.NAMESPACE_HOLD)
            self.assertFalse(self.gate.held("team-a"))
            self.gate.refused(NAMESPACE, "team-a", 403, "being terminated", _Cluster)
            self.clock.advance(pacing.NAMESPACE_HOLD)
            self.assertTrue(self.gate.held("team-a"))
            self.gate.succeeded("team-a")
            self.assertFalse(self.gate.held("team-a"))
        [warning] = [e for e in captured if e["log_level"] == LogLevel.warn]
        self.assertEqual((warning["namespace"], warning["retry"], warning["max_hold"]),
                         ("team-a", pacing.NAMESPACE_HOLD, pacing.MAX_HOLD))
        self.assertEqual(formatEvent(warning),
                         "pod events for namespace team-a held back: the API server refused one "
                         "(403: being terminated); trying again in 60s, backing off up to 3600s")
        [again] = [e for e in captured if e["log_level"] == LogLevel.info]
        self.assertEqual(formatEvent(again), "pod events for namespace team-a are posted again")

    def test_identity_hold(self):
        """
        The identity's refusal holds every namespace for L{IDENTITY_HOLD},
        said once at error naming the identity; any success ends it.
        """
        with capturedLogs() as captured:
            self.gate.refused(IDENTITY, "team-a", 403, "cannot create", _Cluster)
            self.assertTrue(self.gate.held("team-b"))
            self.clock.advance(pacing.IDENTITY_HOLD - 1)
            self.assertTrue(self.gate.held("team-b"))
            self.clock.advance(1)
            self.assertFalse(self.gate.held("team-b"))
            self.gate.refused(IDENTITY, "team-b", 403, "cannot create", _Cluster)
            self.clock.advance(pacing.IDENTITY_HOLD)
            self.assertTrue(self.gate.held("team-c"))
            self.gate.succeeded("team-c")
            self.assertFalse(self.gate.held("team-a"))
        [error] = [e for e in captured if e["log_level"] == LogLevel.error]
        self.assertEqual((error["identity"], error["code"], error["retry"]),
                         (_Cluster.identity, 403, pacing.IDENTITY_HOLD))
        self.assertEqual(formatEvent(error),
                         "pod events off: user 'system:node:worker-1' (from "
                         "/etc/kubernetes/kubelet.conf) may not create events (403 cannot "
                         "create); trying again in 300s, backing off up to 3600s; set events: "
                         "false to silence this")
        self.assertEqual([e["log_format"] for e in captured if e["log_level"] == LogLevel.info],
                         ["pod events are posted again"])

    def test_bounds(self):
        """
        The holds have the documented bounds.
        """
        self.assertEqual((pacing.NAMESPACE_HOLD, pacing.IDENTITY_HOLD, pacing.MAX_HOLD,
                          pacing.NAMESPACES), (60.0, 300.0, 3600.0, 1024))
        for index in range(pacing.NAMESPACES + 1):
            self.gate.refused(NAMESPACE, "ns-{}".format(index), 403, "x", _Cluster)
        self.assertFalse(self.gate.held("ns-0"))
        self.assertTrue(self.gate.held("ns-1"))
