"""
Tests for L{cri_shim.sync.events}: pod events posted to a fake API server
that follows the real contract (L{cri_shim.testing.FakeAPIServer} over
StubTreq), on a fake clock.
"""

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.metrics import Metrics
from cri_shim.model import podevent, schema
from cri_shim.model.selector import Pod
from cri_shim.snapshot import SnapshotHolder
from cri_shim.sync import events, pacing
from cri_shim.sync.events import EventRecorder, TokenBucket
from cri_shim.testing import FakeAPIServer

CONFIG = b"address: http://sealos.hub:5000\nauth: admin:s3cret-pw\n"
POD = Pod("web-1", "team-a", "uid-1", {"app": "web"})
OTHER = Pod("web-2", "team-b", "uid-2")


class FakeCluster:
    server = "https://10.96.0.1:443"
    source = "/etc/kubernetes/kubelet.conf"
    identity = "user 'system:node:worker-1'"

    def __init__(self, token):
        self.token = token

    def headers(self):
        return {"Authorization": ["Bearer " + self.token]}


class _SilentHTTP:
    """
    An API server that never answers.
    """

    def __init__(self):
        self.requests = []

    def request(self, method, url, **kwargs):
        self.requests.append((method, url))
        return Deferred()


def event(pod=POD, message="pulled nginx:latest from sealos.hub:5000 as x"):
    return podevent.PodEvent(pod, podevent.IMAGE_REWRITTEN, podevent.NORMAL, message)


class _RecorderMixin:
    """
    A recorder posting to L{FakeAPIServer} over StubTreq, on a fake clock.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1700000000)
        self.holder = SnapshotHolder(schema.load(CONFIG)[0], self.clock.seconds)
        self.api = FakeAPIServer()
        self.http = StubTreq(self.api)
        self.cluster = FakeCluster(self.api.token)
        self.discovered = 0

    def discover(self):
        self.discovered += 1
        return self.cluster, []

    def start(self, http=None, discover=None, **options):
        self.metrics = Metrics()
        self.recorder = EventRecorder(self.holder, self.clock, discover or self.discover,
                                      lambda cluster: http or self.http, "worker-1",
                                      self.metrics, **options)
        self.recorder.startService()
        self.addCleanup(self.recorder.stopService)
        return self.recorder

    def record(self, *items):
        for item in items:
            self.recorder.record(item)
        self.http.flush()

    def count(self, outcome):
        return {labels["outcome"]: value for _, labels, value in
                self.recorder.counts.samples()}.get(outcome, 0)


class RecorderTests(_RecorderMixin, SynchronousTestCase):
    def test_posted_on_the_pod(self):
        """
        An event becomes a core/v1 Event in the pod's namespace, on the pod
        (kind, name, namespace, uid), from image-cri-shim on this node.
        """
        self.start()
        self.record(event())
        [(namespace, name)] = self.api.events
        self.assertEqual(namespace, "team-a")
        self.assertTrue(name.startswith("web-1."), name)
        posted = self.api.events[(namespace, name)]
        self.assertEqual(posted["involvedObject"], {
            "apiVersion": "v1", "kind": "Pod", "name": "web-1", "namespace": "team-a",
            "uid": "uid-1"})
        self.assertEqual(
            (posted["reason"], posted["type"], posted["message"], posted["count"]),
            ("ImageRewritten", "Normal", "pulled nginx:latest from sealos.hub:5000 as x", 1))
        self.assertEqual(posted["source"], {"component": "image-cri-shim", "host": "worker-1"})
        self.assertEqual((posted["reportingComponent"], posted["reportingInstance"]),
                         ("image-cri-shim", "worker-1"))
        self.assertEqual(posted["firstTimestamp"], "2023-11-14T22:13:20Z")
        self.assertEqual(posted["lastTimestamp"], posted["firstTimestamp"])
        self.assertEqual(self.count("posted"), 1)

    def test_repeated_event_raises_count(self):
        """
        The same event for the same pod within the window PATCHes the
        existing Event's count and lastTimestamp; after the window, or for
        another pod, a new Event is made.
        """
        self.start()
        self.record(event())
        self.clock.advance(60)
        self.record(event())
        [posted] = self.api.events.values()
        self.assertEqual((posted["count"], posted["lastTimestamp"]), (2, "2023-11-14T22:14:20Z"))
        self.assertEqual(posted["firstTimestamp"], "2023-11-14T22:13:20Z")
        self.record(event(OTHER))
        self.assertEqual(len(self.api.events), 2)
        self.clock.advance(events.AGGREGATE_WINDOW + 1)
        self.record(event())
        self.assertEqual(len(self.api.events), 3)
        self.assertEqual((self.count("posted"), self.count("aggregated")), (3, 1))

    def test_expired_event_posted_again(self):
        """
        When the Event to count up is gone (the API server expired it), a
        new one is made.
        """
        self.start()
        self.record(event())
        self.api.events.clear()
        self.record(event())
        [posted] = self.api.events.values()
        self.assertEqual(posted["count"], 1)

    def test_rate_limited(self):
        """
        A burst past the bucket waits for tokens: one more per second.
        """
        self.start(burst=3, rate=1.0)
        self.record(*[event(message="m{}".format(i)) for i in range(5)])
        self.assertEqual(len(self.api.events), 3)
        self.clock.advance(1)
        self.http.flush()
        self.assertEqual(len(self.api.events), 4)
        self.clock.advance(1)
        self.http.flush()
        self.assertEqual(len(self.api.events), 5)

    def test_token_bucket(self):
        """
        C{take} gives C{burst} tokens at once, then says how long until the
        next.
        """
        bucket = TokenBucket(2.0, 2, self.clock.seconds)
        self.assertEqual([bucket.take(), bucket.take()], [0, 0])
        self.assertEqual(bucket.take(), 0.5)
        self.clock.advance(0.5)
        self.assertEqual(bucket.take(), 0)

    def test_bounded_queue(self):
        """
        With the API server silent, events wait in a bounded queue; the
        ones past it are dropped and counted, logged once; recording never
        waits.
        """
        silent = _SilentHTTP()
        self.start(http=silent, queue_size=2)
        with capturedLogs() as captured:
            for i in range(5):
                self.recorder.record(event(message="m{}".format(i)))
        self.assertEqual(len(silent.requests), 1)
        self.assertEqual(self.count("dropped"), 2)
        self.assertEqual([e["log_level"] for e in captured if "dropping" in e["log_format"]],
                         [LogLevel.warn])

    def test_timeout_then_next(self):
        """
        A request the API server never answers is given up after
        L{events.REQUEST_TIMEOUT}; the next event is posted then.
        """
        silent = _SilentHTTP()
        self.start(http=silent)
        with capturedLogs() as captured:
            self.recorder.record(event(message="a"))
            self.recorder.record(event(message="b"))
            self.clock.advance(events.REQUEST_TIMEOUT)
        self.assertEqual(len(silent.requests), 2)
        self.assertEqual(self.count("failed"), 1)
        self.assertEqual(sum("unreachable" in e["log_format"] for e in captured), 1)

    def test_forbidden_logged_once_then_off(self):
        """
        An identity that may not create events turns events off, said once
        (naming the identity), and nothing more is sent.
        """
        self.api.events_forbidden = True
        self.start()
        with capturedLogs() as captured:
            self.record(event(message="a"), event(message="b"))
            requests = self.api.requests
            self.record(event(message="c"))
        self.assertEqual(self.api.requests, requests)
        self.assertEqual(requests, 1)
        errors = [e for e in captured if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]["identity"], self.cluster.identity)
        self.assertEqual(errors[0]["code"], 403)
        self.assertEqual(self.api.events, {})

    def test_no_cluster(self):
        """
        Without an API server, events are off (said once), looked for again
        only after L{events.DISCOVERY_RETRY}.
        """
        self.start(discover=lambda: (self.discover(), (None, []))[1])
        with capturedLogs() as captured:
            self.record(event(message="a"))
            self.record(event(message="b"))
            self.assertEqual(self.discovered, 1)
            self.clock.advance(events.DISCOVERY_RETRY)
            self.record(event(message="c"))
        self.assertEqual(self.discovered, 2)
        self.assertEqual(sum("no Kubernetes API server" in e["log_format"] for e in captured), 1)

    def test_events_false(self):
        """
        With C{events: false}, nothing is looked for or sent.
        """
        self.holder.publish(schema.load(CONFIG + b"events: false\n")[0])
        self.start()
        self.record(event())
        self.assertEqual((self.discovered, self.api.requests), (0, 0))

    def test_no_password_in_message(self):
        """
        A runtime's error quoted in a message never carries a configured
        password.
        """
        self.start()
        self.record(event(message="pull failed: 401 for admin:s3cret-pw"))
        [posted] = self.api.events.values()
        self.assertEqual(posted["message"], "pull failed: 401 for admin:<redacted>")

    def test_name_clash(self):
        """
        An Event name already taken (409) is a failed post, counted; the
        next is posted.
        """
        self.start()
        self.record(event(message="a"))
        [(namespace, name)] = self.api.events
        self.api.events[(namespace, name)]["metadata"]["name"] = name
        # The same instant and serial would make the same name.
        self.recorder._serial -= 1
        self.record(event(message="b"))
        self.assertEqual(len(self.api.events), 1)
        self.record(event(message="c"))
        self.assertEqual(len(self.api.events), 2)

    def test_stop_abandons(self):
        """
        Stopping abandons the request in flight and the queue.
        """
        silent = _SilentHTTP()
        recorder = self.start(http=silent)
        recorder.record(event(message="a"))
        recorder.record(event(message="b"))
        self.successResultOf(recorder.stopService())
        self.clock.advance(events.REQUEST_TIMEOUT * 2)
        self.assertEqual(len(silent.requests), 1)


class HoldTests(_RecorderMixin, SynchronousTestCase):
    """
    A refusal holds back only whose it is, for a while (issue 17, #3).
    """

    def test_terminating_namespace_holds_only_it(self):
        """
        A namespace being terminated holds back its own events (said once,
        naming it), while another namespace's are posted; it is tried again
        after L{pacing.NAMESPACE_HOLD}, then twice that, and posted to again
        once it takes events, without a restart.
        """
        self.api.refused_namespaces["team-a"] = "terminating"
        self.start()
        with capturedLogs() as captured:
            self.record(event(message="a1"))
            self.record(event(OTHER, message="b1"))
            self.record(event(message="a2"))
        self.assertEqual(list(self.api.events), [("team-b", list(self.api.events)[0][1])])
        self.assertEqual(self.api.requests, 2)
        self.assertEqual((self.count("failed"), self.count("dropped"), self.count("posted")),
                         (1, 1, 1))
        [warning] = [e for e in captured if e["log_level"] == LogLevel.warn]
        self.assertEqual((warning["namespace"], warning["code"], warning["detail"],
                          warning["retry"]),
                         ("team-a", 403, "the namespace is being terminated",
                          pacing.NAMESPACE_HOLD))
        self.assertEqual([e for e in captured if e["log_level"] == LogLevel.error], [])

        self.clock.advance(pacing.NAMESPACE_HOLD)
        with capturedLogs() as captured:
            self.record(event(message="a3"))
            self.clock.advance(pacing.NAMESPACE_HOLD)
            self.record(event(message="a4"))
        self.assertEqual(self.api.requests, 3)
        self.assertEqual([e for e in captured if e["log_level"] >= LogLevel.warn], [])

        del self.api.refused_namespaces["team-a"]
        self.clock.advance(pacing.NAMESPACE_HOLD)
        with capturedLogs() as captured:
            self.record(event(message="a5"))
        self.assertIn("team-a", [namespace for namespace, _ in self.api.events])
        self.assertEqual([e.get("namespace") for e in captured
                          if "posted again" in e["log_format"]], ["team-a"])

    def test_quota_holds_only_the_namespace(self):
        """
        A namespace over its quota of events holds back only its own.
        """
        self.api.refused_namespaces["team-a"] = "quota"
        self.start()
        with capturedLogs() as captured:
            self.record(event(message="a1"), event(OTHER, message="b1"),
                        event(message="a2"), event(OTHER, message="b2"))
        self.assertEqual([namespace for namespace, _ in self.api.events], ["team-b"] * 2)
        [warning] = [e for e in captured if e["log_level"] == LogLevel.warn]
        self.assertIn("exceeded quota", warning["detail"])

    def test_denied_identity_tried_again(self):
        """
        An identity that may not create events holds back every event, for
        L{pacing.IDENTITY_HOLD}, then twice that; events are posted again
        once it may, without a restart.
        """
        self.api.events_forbidden = True
        self.start()
        self.record(event(message="a"), event(OTHER, message="b"))
        self.assertEqual(self.api.requests, 1)
        self.clock.advance(pacing.IDENTITY_HOLD - 1)
        self.record(event(message="c"))
        self.assertEqual(self.api.requests, 1)
        self.clock.advance(1)
        self.record(event(message="d"))
        self.assertEqual(self.api.requests, 2)
        self.clock.advance(pacing.IDENTITY_HOLD)
        self.record(event(message="e"))
        self.assertEqual(self.api.requests, 2)
        self.api.events_forbidden = False
        self.clock.advance(pacing.IDENTITY_HOLD)
        with capturedLogs() as captured:
            self.record(event(OTHER, message="f"))
            self.record(event(message="g"))
        self.assertEqual(len(self.api.events), 2)
        self.assertIn("pod events are posted again", [e["log_format"] for e in captured])

    def test_401_reads_identity_again(self):
        """
        A 401 makes the cluster be found again (kubelet may have rotated
        its certificate) and the post is tried once more with it.
        """
        self.cluster = FakeCluster("stale-token")
        fresh = FakeCluster(self.api.token)
        found = iter([self.cluster, fresh])
        self.start(discover=lambda: (self.discover(), (next(found), []))[1])
        self.record(event())
        self.assertEqual(len(self.api.events), 1)
        self.assertEqual((self.discovered, self.api.requests, self.count("failed")), (2, 2, 0))

    def test_401_again_held_then_found_anew(self):
        """
        A 401 with the identity found again as well holds every event back,
        and the cluster is found anew when the hold ends.
        """
        stale = FakeCluster("stale-token")
        self.start(discover=lambda: (self.discover(), (stale, []))[1])
        with capturedLogs() as captured:
            self.record(event(message="a"), event(message="b"))
        self.assertEqual((self.discovered, self.api.requests), (2, 2))
        [error] = [e for e in captured if e["log_level"] == LogLevel.error]
        self.assertEqual(error["code"], 401)
        stale.token = self.api.token
        self.clock.advance(pacing.IDENTITY_HOLD)
        self.record(event(message="c"))
        self.assertEqual((self.discovered, len(self.api.events)), (3, 1))


class NamesTests(_RecorderMixin, SynchronousTestCase):
    """
    Names that would move the URL are never posted to (issue 17, #10).
    """

    def test_hostile_namespace_dropped(self):
        """
        A pod whose namespace is not a DNS label makes no request: the event
        is dropped, counted as invalid, said once at info.
        """
        self.start()
        hostile = Pod("web-1", "kube-system/configmaps/image-cri-shim?x=", "uid-9")
        with capturedLogs() as captured:
            self.record(event(hostile), event(Pod("../../x", "team-a")), event(hostile))
        self.assertEqual((self.api.requests, self.count("invalid")), (0, 3))
        [said] = [e for e in captured if "not a valid" in e["log_format"]]
        self.assertEqual((said["log_level"], said["which"]), (LogLevel.info, "namespace"))
        self.record(event())
        self.assertEqual(self.api.requests, 1)

    def test_segments_quoted(self):
        """
        Names are quoted as single path segments wherever an event URL is
        built.
        """
        self.assertEqual(events.event_url("https://s", "a/b?c=1", "n#1/%"),
                         "https://s/api/v1/namespaces/a%2Fb%3Fc%3D1/events/n%231%2F%25")
        self.assertEqual(events.event_url("https://s", "team-a"),
                         "https://s/api/v1/namespaces/team-a/events")

    def test_longest_pod_name(self):
        """
        A pod with the longest name gets an Event whose name is valid.
        """
        self.start()
        self.record(event(Pod("p" * 253, "team-a", "uid-1")))
        [(_, name)] = self.api.events
        self.assertLessEqual(len(name), 253)
        self.assertIsNone(podevent.name_problem(Pod(name, "team-a")))


class ScrubTests(_RecorderMixin, SynchronousTestCase):
    """
    Passwords are scrubbed before messages are cut (issue 17, #11).
    """

    def test_straddling_the_reason_cut(self):
        """
        A runtime's error with the password across the 160-character cut of
        a registry's reason shows none of it.
        """
        self.start()
        details = "failed to resolve: " + "y" * 150 + " s3cret-pw and more"
        self.recorder.record(podevent.failed_over(POD, "nginx:1", [("hub", details)]))
        self.http.flush()
        [posted] = self.api.events.values()
        self.assertNotIn("s3c", posted["message"])
        self.assertIn("y <redac...", posted["message"])

    def test_straddling_the_message_cut(self):
        """
        A password across the 1024-character cut of the message shows none
        of it.
        """
        self.start()
        name = "x" * (podevent.MAX_MESSAGE - 6 - len("refused ")) + "s3cret-pw:1"
        self.recorder.record(podevent.refused(POD, name, ()))
        self.http.flush()
        [posted] = self.api.events.values()
        self.assertNotIn("s3c", posted["message"])
        self.assertTrue(posted["message"].endswith("x<re..."), posted["message"][-20:])


class NodeNameTests(SynchronousTestCase):
    def test_node_name(self):
        """
        C{$NODE_NAME} when set, else the host name in lower case.
        """
        self.assertEqual(events.node_name({"NODE_NAME": "n-1"}), "n-1")
        name = events.node_name({})
        self.assertTrue(name and name == name.lower())
