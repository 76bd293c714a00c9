# -*- test-case-name: tests.sync.test_watch -*-
"""
List and watch one named object of a namespaced collection over treq, the
way client-go's reflectors follow the objects they need: C{GET} the
collection with C{fieldSelector=metadata.name=NAME} (a quorum read: its
C{resourceVersion} is where the watch starts), then C{GET} it with
C{watch=1}, C{allowWatchBookmarks=true}, C{timeoutSeconds} and that
C{resourceVersion}: a stream of JSON events, one a line (C{ADDED},
C{MODIFIED}, C{DELETED}, C{BOOKMARK}, C{ERROR}).

Every read is bounded: a response or a line at most L{MAX_RESPONSE} bytes,
the headers within L{REQUEST_TIMEOUT}, a list's body too, a watch's stream
within its C{timeoutSeconds} plus L{WATCH_GRACE}.
"""

import json
from urllib.parse import urlencode

from twisted.internet import defer, protocol
from twisted.web.client import ResponseDone

from cri_shim.registries.httputil import describe_failure, read_capped

#: How long a request may take to answer (a list, its body too).
REQUEST_TIMEOUT = 10.0
#: How long a watch may outlive its C{timeoutSeconds} before it is dropped.
WATCH_GRACE = 30.0
#: The most of a response, or of one watch event, read (a ConfigMap holds
#: at most 1 MiB).
MAX_RESPONSE = 3 * 1024 * 1024


class Unreachable(Exception):
    """
    No answer, or the stream broke; C{reason} says how (safe to log).
    """

    def __init__(self, reason):
        Exception.__init__(self, reason)
        self.reason = reason


class Refused(Exception):
    """
    The API server answered with an error status (over HTTP, or in an
    C{ERROR} event): C{code} and its C{Status} message, C{detail}.
    """

    def __init__(self, code, detail):
        Exception.__init__(self, "{} {}".format(code, detail))
        self.code = code
        self.detail = detail


class Garbage(Exception):
    """
    The answer is not what was asked for; C{reason} says why.
    """

    def __init__(self, reason):
        Exception.__init__(self, reason)
        self.reason = reason


class ObjectWatch:
    """
    :param http: a treq-shaped client for the API server.
    :param clock: an C{IReactorTime}.
    :param cluster: where and as whom (C{server}, C{headers()}).
    :param namespace: the object's namespace.
    :param name: the object's name.
    :param kind: the object's C{kind} (C{ConfigMap}); its collection is its
        lower-case plural.
    """

    def __init__(self, http, clock, cluster, namespace, name, kind="ConfigMap"):
        self._http = http
        self._clock = clock
        self._cluster = cluster
        self._name = name
        self._kind = kind
        self._collection = "{}/api/v1/namespaces/{}/{}s".format(
            cluster.server, namespace, kind.lower())
        self._in_flight = None

    def list(self):
        """
        :return: a Deferred firing with C{(resourceVersion, object or
            None)}, or failing with L{Unreachable}, L{Refused} or
            L{Garbage}.
        """
        d = self._get({})
        d.addCallback(lambda response: read_capped(response, MAX_RESPONSE).addCallback(
            lambda body: (response, body)))
        d.addTimeout(REQUEST_TIMEOUT, self._clock)
        return self._track(d.addCallbacks(self._listed, _unreachable))

    def _listed(self, answer):
        response, body = answer
        _check_status(response.code, body)
        try:
            document = json.loads(body.decode("utf-8"))
            if document.get("kind") != self._kind + "List":
                raise ValueError("kind is {!r}".format(document.get("kind")))
            version = _version(document)
            items = document.get("items") or []
            if not isinstance(items, list) or len(items) > 1:
                raise ValueError("not one item")
            for item in items:
                self._check(item)
        except (ValueError, AttributeError, UnicodeDecodeError) as e:
            raise Garbage(str(e)[:200])
        return version, items[0] if items else None

    def watch(self, version, timeout_seconds, on_event):
        """
        Follow the object from C{version} for C{timeout_seconds}.

        :param on_event: called with C{(type, object)} for each C{ADDED},
            C{MODIFIED}, C{DELETED} and C{BOOKMARK} event.
        :return: a Deferred firing when the API server ends the watch (its
            timeout), or failing with L{Unreachable} (it broke), L{Refused}
            (an error status or C{ERROR} event; 410: C{version} is too old)
            or L{Garbage}.
        """
        d = self._get({"watch": "1", "allowWatchBookmarks": "true",
                       "timeoutSeconds": str(int(timeout_seconds)),
                       "resourceVersion": version})
        d.addTimeout(REQUEST_TIMEOUT, self._clock)
        d.addErrback(_unreachable)
        d.addCallback(self._stream, timeout_seconds + WATCH_GRACE, on_event)
        return self._track(d)

    def _stream(self, response, deadline, on_event):
        if response.code != 200:
            return read_capped(response, MAX_RESPONSE).addCallback(
                lambda body: _check_status(response.code, body))
        lines = _Lines(lambda line: self._event(line, on_event))
        done = lines.done = defer.Deferred(lambda _: lines.abandon())
        response.deliverBody(lines)
        done.addTimeout(deadline, self._clock)
        return done.addErrback(_unreachable, deadline)

    def _event(self, line, on_event):
        try:
            event = json.loads(line.decode("utf-8"))
            kind, thing = event["type"], event["object"]
            if kind == "ERROR":
                code = thing.get("code")
                raise Refused(code if isinstance(code, int) else 500,
                              _one_line(thing.get("message")))
            if kind == "BOOKMARK":
                return on_event(kind, {"metadata": {"resourceVersion": _version(thing)}})
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                raise ValueError("event type {!r}".format(kind))
            self._check(thing)
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
            raise Garbage("watch event: " + str(e)[:200])
        on_event(kind, thing)

    def _check(self, thing):
        if thing.get("kind", self._kind) != self._kind:
            raise ValueError("kind is {!r}".format(thing.get("kind")))
        metadata = thing.get("metadata")
        if not isinstance(metadata, dict) or metadata.get("name") != self._name:
            raise ValueError("it is named {!r}".format(
                metadata.get("name") if isinstance(metadata, dict) else None))
        _version(thing)

    def abort(self):
        """
        Abandon the list or watch in progress, if any: it fails with
        L{Unreachable}.
        """
        if self._in_flight is not None:
            self._in_flight.cancel()

    def _get(self, query):
        query = dict(query, fieldSelector="metadata.name=" + self._name)
        headers = self._cluster.headers()
        headers["Accept"] = ["application/json"]
        return self._http.get(self._collection + "?" + urlencode(sorted(query.items())),
                              headers=headers, allow_redirects=False)

    def _track(self, d):
        self._in_flight = d

        def done(result):
            if self._in_flight is d:
                self._in_flight = None
            return result
        return d.addBoth(done)


class _Lines(protocol.Protocol):
    """
    Splits a streamed body into lines, each at most L{MAX_RESPONSE} bytes,
    and hands each to C{on_line}; C{done} fires at the clean end of the
    stream, and fails when it breaks or C{on_line} raises.
    """

    done = None

    def __init__(self, on_line):
        self._on_line = on_line
        self._buffer = b""

    def dataReceived(self, data):
        self._buffer += data
        try:
            while self.done is not None:
                line, found, rest = self._buffer.partition(b"\n")
                if not found:
                    if len(self._buffer) > MAX_RESPONSE:
                        raise Garbage("a watch event longer than {} bytes".format(
                            MAX_RESPONSE))
                    return
                self._buffer = rest
                if line.strip():
                    self._on_line(line)
        except Exception:
            done = self.done
            self.abandon()
            done.errback()

    def connectionLost(self, reason=None):
        if reason.check(ResponseDone) and self._buffer.strip():
            # A last event without its newline is still an event.
            self.dataReceived(b"\n")
        done, self.done = self.done, None
        if done is None:
            return
        if reason.check(ResponseDone):
            done.callback(None)
        else:
            done.errback(reason)

    def abandon(self):
        """
        Deliver nothing more, and close the connection.
        """
        self.done = None
        if self.transport is not None:
            self.transport.stopProducing()


def _unreachable(failure, timeout=None):
    """
    Anything but an answer (a timeout, a broken connection, a cancel) is
    L{Unreachable}; the caller knows whether it cancelled.

    :param timeout: the bound that ran out, if it was a timeout (default:
        L{REQUEST_TIMEOUT}).
    """
    if failure.check(Refused, Garbage):
        return failure
    raise Unreachable(describe_failure(failure.value, timeout or REQUEST_TIMEOUT))


def _check_status(code, body):
    if code != 200:
        raise Refused(code, status_message(body))


def status_message(body):
    """
    :return: the C{message} of a Kubernetes C{Status} body, else a short
        excerpt, on one short line.
    """
    try:
        message = json.loads(body.decode("utf-8")).get("message")
    except (ValueError, AttributeError, UnicodeDecodeError):
        message = None
    if not isinstance(message, str):
        message = body[:120].decode("utf-8", "replace")
    return _one_line(message)


def _one_line(message):
    if not isinstance(message, str):
        return "(no message)"
    return " ".join(message.split())[:300] or "(no message)"


def _version(thing):
    version = thing["metadata"]["resourceVersion"]
    if not isinstance(version, str) or not version:
        raise ValueError("no resourceVersion")
    return version
