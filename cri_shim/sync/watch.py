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
within its C{timeoutSeconds} plus L{WATCH_GRACE}.  A stream is read as it
comes, never kept: its memory is one partial line, whatever it sends and for
however long, and splitting it costs time linear in its bytes.
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
    C{unusable}: the C{Status} says the C{resourceVersion} asked from cannot
    be served (see L{_unusable}); list again rather than retry it.
    """

    def __init__(self, code, detail, unusable=False):
        Exception.__init__(self, "{} {}".format(code, detail))
        self.code = code
        self.detail = detail
        self.unusable = unusable


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
        except (ValueError, AttributeError, UnicodeDecodeError, RecursionError) as e:
            raise Garbage(str(e)[:200])
        return version, items[0] if items else None

    def watch(self, version, timeout_seconds, on_event):
        """
        Follow the object from C{version} for C{timeout_seconds}.

        :param on_event: called with C{(type, object)} for each C{ADDED},
            C{MODIFIED}, C{DELETED} and C{BOOKMARK} event.
        :return: a Deferred firing when the API server ends the watch (its
            timeout), or failing with L{Unreachable} (it broke), L{Refused}
            (an error status or C{ERROR} event; C{unusable}: C{version} is
            too old or too new) or L{Garbage}.
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
                raise _refused(code if isinstance(code, int) else 500, thing,
                               _one_line(thing.get("message")))
            if kind == "BOOKMARK":
                return on_event(kind, {"metadata": {"resourceVersion": _version(thing)}})
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                raise ValueError("event type {!r}".format(kind))
            self._check(thing)
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError,
                RecursionError) as e:
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
        # unbuffered: by default treq keeps every byte of a body to replay
        # it to later readers, which for a watch is all it streams for
        # minutes (a 1 MB ConfigMap changed 60 times kept 56 MiB).
        return self._http.get(self._collection + "?" + urlencode(sorted(query.items())),
                              headers=headers, allow_redirects=False, unbuffered=True)

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
    and hands each that is not blank to C{on_line}; C{done} fires at the
    clean end of the stream, and fails when it breaks or C{on_line} raises.

    It holds only the pieces of the line not yet ended, and finds the
    newlines of each piece once (C{bytes.split}): cutting lines off the
    front of a growing buffer copies the rest for each line, which is
    quadratic in a piece of many short (blank) lines.
    """

    done = None

    def __init__(self, on_line):
        self._on_line = on_line
        self._partial = []
        self._size = 0

    def dataReceived(self, data):
        if self.done is None:
            return
        lines = data.split(b"\n")
        rest = lines.pop()
        try:
            if lines and self._partial:
                self._partial.append(lines[0])
                lines[0] = b"".join(self._partial)
                self._partial, self._size = [], 0
            # filter(None, ...) drops the empty lines without a step of
            # Python each.
            for line in filter(None, lines):
                if self.done is None:
                    return
                if len(line) > MAX_RESPONSE:
                    raise _too_long()
                if not line.isspace():
                    self._on_line(line)
            if self.done is not None:
                self._keep(rest)
        except Exception:
            done = self.done
            self.abandon()
            if done is not None:
                done.errback()

    def _keep(self, piece):
        """
        Hold C{piece}, the start of a line not yet ended.
        """
        if piece:
            self._size += len(piece)
            if self._size > MAX_RESPONSE:
                raise _too_long()
            self._partial.append(piece)

    def connectionLost(self, reason=None):
        if reason.check(ResponseDone) and self._partial:
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
        Deliver nothing more, forget the line begun, and close the
        connection.
        """
        self.done = None
        self._partial, self._size = [], 0
        if self.transport is not None:
            self.transport.stopProducing()


def _too_long():
    return Garbage("a watch event longer than {} bytes".format(MAX_RESPONSE))


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
        raise _refused(code, _status(body), status_message(body))


def _status(body):
    """
    :return: a Kubernetes C{Status} body as a dict (empty if it is not one).
    """
    try:
        status = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return status if isinstance(status, dict) else {}


def status_message(body):
    """
    :return: the C{message} of a Kubernetes C{Status} body, else a short
        excerpt, on one short line.
    """
    message = _status(body).get("message")
    if not isinstance(message, str):
        message = body[:120].decode("utf-8", "replace")
    return _one_line(message)


def _refused(code, status, detail):
    return Refused(code, detail, _unusable(code, status))


def _unusable(code, status):
    """
    Whether C{status} says the C{resourceVersion} asked from cannot be
    served, as client-go's reflector tells it (C{isExpiredError},
    C{isTooLargeResourceVersionError}) and then lists again: older than the
    history kept (410, reason C{Expired} or C{Gone}), or newer than the
    store, as after an etcd restore (cause C{ResourceVersionTooLarge}; API
    servers before 1.18.6 say it only in a C{Timeout}'s message).
    """
    if code == 410 or status.get("reason") in ("Expired", "Gone"):
        return True
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    if isinstance(causes, list) and any(
            isinstance(cause, dict) and cause.get("reason") == "ResourceVersionTooLarge"
            for cause in causes):
        return True
    message = status.get("message")
    return ((code == 504 or status.get("reason") == "Timeout") and isinstance(message, str)
            and "Too large resource version" in message)


def _one_line(message):
    if not isinstance(message, str):
        return "(no message)"
    return " ".join(message.split())[:300] or "(no message)"


def _version(thing):
    version = thing["metadata"]["resourceVersion"]
    if not isinstance(version, str) or not version:
        raise ValueError("no resourceVersion")
    return version
