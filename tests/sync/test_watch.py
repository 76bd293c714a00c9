"""
Tests for L{cri_shim.sync.watch}: list and watch of one object against the
API server fake (L{cri_shim.testing.FakeAPIServer}, following the real
watch contract) over StubTreq, on a fake clock; bounded lines and times.
"""

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from cri_shim.sync.watch import (
    MAX_RESPONSE,
    REQUEST_TIMEOUT,
    WATCH_GRACE,
    Garbage,
    ObjectWatch,
    Refused,
    Unreachable,
)
from cri_shim.testing import FakeAPIServer


class _Cluster:
    server = "https://10.96.0.1:443"

    def __init__(self, token="apiserver-token"):
        self.token = token

    def headers(self):
        return {"Authorization": ["Bearer " + self.token]}


class _Stream(Resource):
    """
    A watch that sends C{chunks} and then stays open.
    """

    isLeaf = True

    def __init__(self, *chunks):
        Resource.__init__(self)
        self.chunks = chunks

    def render_GET(self, request):
        for chunk in self.chunks:
            request.write(chunk)
        return NOT_DONE_YET


class ObjectWatchTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.api = FakeAPIServer(clock=self.clock)
        self.api.set_configmap("kube-system", "shim", {"k": "v"})
        self.api.set_configmap("kube-system", "other", {"k": "w"})
        self.connect(self.api)

    def connect(self, resource, cluster=None):
        self.http = StubTreq(resource)
        self.watch = ObjectWatch(self.http, self.clock, cluster or _Cluster(), "kube-system",
                                 "shim")

    def result(self, d):
        results = []
        d.addBoth(results.append)
        self.http.flush()
        return results

    def follow(self, version):
        events = []
        outcome = self.result(self.watch.watch(
            version, 300, lambda kind, thing: events.append(
                (kind, thing["metadata"]["resourceVersion"]))))
        return events, outcome

    def test_list(self):
        """
        The list holds the one object named, and the store's version.
        """
        [(version, thing)] = self.result(self.watch.list())
        self.assertEqual((version, thing["metadata"]["name"], thing["data"]),
                         ("102", "shim", {"k": "v"}))

    def test_list_missing(self):
        """
        No such object: an empty list, still with a version to watch from.
        """
        self.api.delete_configmap("kube-system", "shim")
        [(version, thing)] = self.result(self.watch.list())
        self.assertEqual((version, thing), ("103", None))

    def test_events(self):
        """
        Changes of the object come as events in order, others' not; a
        bookmark every bookmark_interval; the server's timeout ends it
        cleanly.
        """
        events, outcome = self.follow("102")
        self.api.set_configmap("kube-system", "shim", {"k": "2"})
        self.api.set_configmap("kube-system", "other", {"k": "3"})
        self.api.delete_configmap("kube-system", "shim")
        self.http.flush()
        self.clock.advance(self.api.bookmark_interval)
        self.http.flush()
        self.assertEqual(events, [("MODIFIED", "103"), ("DELETED", "105"),
                                  ("BOOKMARK", "105")])
        self.assertEqual(outcome, [])
        self.clock.advance(300 - self.api.bookmark_interval)
        self.http.flush()
        self.assertEqual(outcome, [None])

    def test_history_replayed(self):
        """
        A watch from an older version gets what changed since.
        """
        self.api.set_configmap("kube-system", "shim", {"k": "2"})
        events, _ = self.follow("102")
        self.assertEqual(events, [("MODIFIED", "103")])

    def test_gone(self):
        """
        A version older than the history kept: 410, as an ERROR event or
        as the HTTP status.
        """
        self.api.compact()
        for as_status in (False, True):
            self.api.gone_as_status = as_status
            _, [failure] = self.follow("101")
            self.assertEqual(failure.value.code, 410)
            self.assertIn("too old resource version", failure.value.detail)

    def test_expired(self):
        """
        After L{FakeAPIServer.expire}, a watch from the current version too
        is answered 410.
        """
        self.api.expire()
        _, [failure] = self.follow(self.api.version)
        self.assertEqual(failure.value.code, 410)

    def test_statuses(self):
        """
        401, 403 and 5xx come with the Status's message.
        """
        self.api.watch_forbidden = True
        _, [failure] = self.follow("102")
        failure.trap(Refused)
        self.assertEqual(failure.value.code, 403)
        self.assertIn("cannot watch", failure.value.detail)
        [listed] = self.result(self.watch.list())
        self.assertEqual(listed[0], "102")
        self.api.status = 503
        [failure] = self.result(self.watch.list())
        self.assertEqual((failure.value.code, failure.value.detail),
                         (503, "etcdserver: leader changed"))
        self.api.status = None
        self.connect(self.api, _Cluster("stale"))
        _, [failure] = self.follow("102")
        self.assertEqual(failure.value.code, 401)

    def test_dropped(self):
        """
        A stream that breaks (no clean end) fails as unreachable.
        """
        _, outcome = self.follow("102")
        self.api.drop_watches()
        self.http.flush()
        [failure] = outcome
        failure.trap(Unreachable)

    def test_line_bound(self):
        """
        A line longer than MAX_RESPONSE is refused, and the stream dropped.
        """
        self.connect(_Stream(b"x" * (MAX_RESPONSE + 1)))
        _, [failure] = self.follow("102")
        failure.trap(Garbage)
        self.assertIn("longer than", failure.value.reason)

    def test_stream_deadline(self):
        """
        A watch that outlives its timeoutSeconds by WATCH_GRACE (the server
        never ends it) is dropped.
        """
        self.connect(_Stream(b""))
        _, outcome = self.follow("102")
        self.clock.advance(300 + WATCH_GRACE - 1)
        self.http.flush()
        self.assertEqual(outcome, [])
        self.clock.advance(1)
        self.http.flush()
        [failure] = outcome
        failure.trap(Unreachable)
        self.assertEqual(failure.value.reason, "no answer within {:g}s".format(
            300 + WATCH_GRACE))

    def test_headers_deadline(self):
        """
        A server that never answers fails the list after REQUEST_TIMEOUT.
        """
        self.connect(_Silent())
        outcome = self.result(self.watch.list())
        self.clock.advance(REQUEST_TIMEOUT)
        [failure] = outcome
        failure.trap(Unreachable)

    def test_garbage_events(self):
        """
        An event that is not JSON, of an unknown type, or about another
        object is refused.
        """
        other = (b'{"type": "MODIFIED", "object": {"kind": "ConfigMap", "metadata": '
                 b'{"name": "other", "resourceVersion": "9"}}}\n')
        for line in (b"<html>\n", b'{"type": "WHAT", "object": {}}\n', other):
            self.connect(_Stream(line))
            _, [failure] = self.follow("102")
            failure.trap(Garbage)

    def test_last_line_without_newline(self):
        """
        A stream that ends cleanly in the middle of a line: that last line
        is read too (here: refused, it is not an event).
        """
        self.connect(_Ended(b'{"kind": "Status", "code": 500}'))
        _, [failure] = self.follow("102")
        failure.trap(Garbage)

    def test_abort(self):
        """
        L{ObjectWatch.abort} ends the watch in progress.
        """
        _, outcome = self.follow("102")
        self.watch.abort()
        [failure] = outcome
        failure.trap(Unreachable)


class _Silent(Resource):
    isLeaf = True

    def render_GET(self, request):
        return NOT_DONE_YET


class _Ended(Resource):
    isLeaf = True

    def __init__(self, body):
        Resource.__init__(self)
        self.body = body

    def render_GET(self, request):
        return self.body
