"""
Tests for L{cri_shim.sync.watch}: list and watch of one object against the
API server fake (L{cri_shim.testing.FakeAPIServer}, following the real
watch contract) over StubTreq, on a fake clock; bounded lines and times;
versions the API server cannot serve; a stream read as it comes (nothing
kept, lines split in linear time).
"""

import json
import time

import treq
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone
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
    _Lines,
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
            self.assertEqual((failure.value.code, failure.value.unusable), (410, True))
            self.assertIn("too old resource version", failure.value.detail)

    def test_expired(self):
        """
        After L{FakeAPIServer.expire}, a watch from the current version too
        is answered 410.
        """
        self.api.expire()
        _, [failure] = self.follow(self.api.version)
        self.assertEqual(failure.value.code, 410)

    def test_too_large(self):
        """
        A version newer than the store (etcd restored from a backup): 504
        "Too large resource version", as the HTTP status or as an ERROR
        event, says the version is unusable.
        """
        self.api.restore(100)
        for as_event in (False, True):
            self.api.too_large_as_event = as_event
            _, [failure] = self.follow("102")
            failure.trap(Refused)
            self.assertEqual((failure.value.code, failure.value.unusable, failure.value.detail),
                             (504, True, "Timeout: Too large resource version: 102, current: 100"))

    def test_unusable_statuses(self):
        """
        A Status says the version is unusable as client-go tells it: 410,
        reason Expired or Gone, a ResourceVersionTooLarge cause, or "Too
        large resource version" in a Timeout's message (API servers before
        1.18.6); as the HTTP answer or as an ERROR event; nothing else does.
        """
        too_large = "Timeout: Too large resource version: 9, current: 7"
        cases = [
            (410, {"reason": "Expired", "message": "too old resource version: 1 (5)"}, True),
            (410, {}, True),
            (500, {"reason": "Expired"}, True),
            (500, {"reason": "Gone"}, True),
            (500, {"reason": "InternalError",
                   "details": {"causes": [{"reason": "ResourceVersionTooLarge"}]}}, True),
            (504, {"message": too_large}, True),
            (500, {"reason": "Timeout", "message": too_large}, True),
            (500, {"reason": "InternalError", "message": too_large}, False),
            (504, {"reason": "Timeout", "message": "Timeout: request did not complete"}, False),
            (504, {"reason": "Timeout",
                   "details": {"causes": [{"reason": "FieldValueInvalid"}, "x"]}}, False),
            (504, {"details": {"causes": "ResourceVersionTooLarge"}}, False),
            (504, {"details": ["ResourceVersionTooLarge"]}, False),
            (504, {"message": ["Too large resource version"]}, False),
            (503, {"reason": "ServiceUnavailable"}, False),
            (403, {"reason": "Forbidden"}, False),
        ]
        for code, status, unusable in cases:
            body = json.dumps(dict(status, kind="Status", code=code)).encode("utf-8")
            for resource in (_Ended(body, code),
                             _Ended(b'{"type": "ERROR", "object": ' + body + b'}\n')):
                self.connect(resource)
                _, [failure] = self.follow("102")
                failure.trap(Refused)
                self.assertEqual((failure.value.code, failure.value.unusable), (code, unusable),
                                 status)

    def test_stream_not_kept(self):
        """
        A watch's stream is read as it comes, not kept: once read, nothing
        of it can be read from its response again (treq's default buffer
        keeps every byte for such replays, for the watch's whole life).
        """
        responses = []
        http = self.http

        class Recording:
            def get(self, url, **kwargs):
                return http.get(url, **kwargs).addCallback(
                    lambda response: responses.append(response) or response)
        self.watch = ObjectWatch(Recording(), self.clock, _Cluster(), "kube-system", "shim")
        events, outcome = self.follow("102")
        for number in range(20):
            self.api.set_configmap("kube-system", "shim", {"k": "x" * 1000 + str(number)})
        self.http.flush()
        self.clock.advance(300)
        self.http.flush()
        self.assertEqual(([kind for kind, _ in events].count("MODIFIED"), outcome),
                         (20, [None]))
        [response] = responses
        replayed = []
        try:
            treq.collect(response, replayed.append)
        except RuntimeError:
            # Twisted's own response refuses a second reader.
            pass
        self.assertEqual(replayed, [])

    def test_statuses(self):
        """
        401, 403 and 5xx come with the Status's message.
        """
        self.api.watch_forbidden = True
        _, [failure] = self.follow("102")
        failure.trap(Refused)
        self.assertEqual((failure.value.code, failure.value.unusable), (403, False))
        self.assertIn("cannot watch", failure.value.detail)
        [listed] = self.result(self.watch.list())
        self.assertEqual(listed[0], "102")
        self.api.status = 503
        [failure] = self.result(self.watch.list())
        self.assertEqual((failure.value.code, failure.value.detail, failure.value.unusable),
                         (503, "etcdserver: leader changed", False))
        self.api.status = None
        self.connect(self.api, _Cluster("stale"))
        _, [failure] = self.follow("102")
        self.assertEqual((failure.value.code, failure.value.unusable), (401, False))

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

    def test_deeply_nested(self):
        """
        JSON nested 100,000 deep (which Python's parser refuses with a
        RecursionError) as a list, a Status or an event: refused as garbage,
        or its Status told by an excerpt, never a crash.
        """
        nested = b"[" * 100000 + b"]" * 100000
        self.connect(_Ended(nested))
        [failure] = self.result(self.watch.list())
        failure.trap(Garbage)
        self.connect(_Ended(nested, 500))
        [failure] = self.result(self.watch.list())
        failure.trap(Refused)
        self.assertEqual((failure.value.code, failure.value.detail), (500, "[" * 120))
        self.connect(_Stream(nested + b"\n"))
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
    """
    Answers C{body} with C{code}.
    """

    isLeaf = True

    def __init__(self, body, code=200):
        Resource.__init__(self)
        self.body = body
        self.code = code

    def render_GET(self, request):
        request.setResponseCode(self.code)
        return self.body


class LinesTests(SynchronousTestCase):
    """
    L{_Lines} hands on the same lines wherever its stream is cut, bounds
    each, and splits in time linear in the bytes.
    """

    def feed(self, pieces):
        """
        :return: the lines handed on from C{pieces}, then a clean end.
        """
        seen = []
        lines = _Lines(seen.append)
        done = lines.done = Deferred()
        for piece in pieces:
            lines.dataReceived(piece)
        lines.connectionLost(Failure(ResponseDone()))
        self.successResultOf(done)
        return seen

    def test_cut_anywhere(self):
        """
        Events between empty and blank lines, and a last one without its
        newline: the non-blank lines, byte for byte and in order, whether
        the stream comes whole, cut anywhere in two or three pieces, or
        byte by byte.
        """
        stream = b'{"a": 1}\n\n\n \r\n{"b": 2}\r\n\n\n\n\t\n{"c":\t3}\n\n{"d": 4}'
        expected = [b'{"a": 1}', b'{"b": 2}\r', b'{"c":\t3}', b'{"d": 4}']
        self.assertEqual(self.feed([stream]), expected)
        self.assertEqual(self.feed([stream[i:i + 1] for i in range(len(stream))]), expected)
        for first in range(len(stream) + 1):
            for second in range(first, len(stream) + 1):
                self.assertEqual(self.feed([stream[:first], stream[first:second],
                                            stream[second:]]), expected, (first, second))

    def test_many_empty_lines(self):
        """
        An event amid 200,000 empty lines is handed on alone, whole or in
        pieces of 4 KiB.
        """
        stream = b"\n" * 100000 + b'{"a": 1}' + b"\n" * 100000
        pieces = [stream[i:i + 4096] for i in range(0, len(stream), 4096)]
        self.assertEqual(self.feed([stream]), [b'{"a": 1}'])
        self.assertEqual(self.feed(pieces), [b'{"a": 1}'])

    def test_line_bound(self):
        """
        A line of MAX_RESPONSE bytes is handed on, whole or in pieces; one
        byte more is refused, even when its newline comes in the same piece.
        """
        line = b"x" * MAX_RESPONSE
        self.assertEqual(self.feed([line + b"\n"]), [line])
        self.assertEqual(self.feed([line[:1000], line[1000:], b"\n"]), [line])
        for pieces in ([line + b"x\n"], [b"x", line + b"\n"], [line, b"x"]):
            seen = []
            lines = _Lines(seen.append)
            done = lines.done = Deferred()
            for piece in pieces:
                lines.dataReceived(piece)
            self.assertIn("longer than", self.failureResultOf(done, Garbage).value.reason)
            self.assertEqual(len(seen), 0)

    def test_split_cost_linear(self):
        """
        512 KiB of empty lines cost about the same CPU time in one piece as
        in 32 pieces of 16 KiB (cutting each line off the front of a buffer
        made the one piece 37 times dearer: 3 s against 0.08 s).  CPU time,
        best of 3, with a generous bound; never wall time.
        """
        def cost(pieces, size):
            piece = b"\n" * size
            best = None
            for _ in range(3):
                lines = _Lines(self.fail)
                lines.done = Deferred()
                started = time.process_time()
                for _ in range(pieces):
                    lines.dataReceived(piece)
                spent = time.process_time() - started
                best = spent if best is None else min(best, spent)
            return best
        small, whole = cost(32, 16 * 1024), cost(1, 512 * 1024)
        self.assertLess(whole, 4 * small, (whole, small))
