# -*- test-case-name: tests.registries.test_probe,tests.security.test_hardening_registries -*-
"""
Small helpers shared by the shim's HTTP clients (registry probes, health
checks, token realms, the ConfigMap sync): the connection pool, whose
connections drop a response whose header section passes a bound; bounded
body reads; the Basic login header; failure descriptions that never echo
request details.
"""

import base64

from twisted.internet import defer, error, protocol
from twisted.web._newclient import HTTP11ClientProtocol
from twisted.web.client import (
    HTTPConnectionPool,
    PotentialDataLoss,
    ResponseDone,
    _HTTP11ClientFactory,
)

#: The most bytes a response's status line and headers may take.
MAX_HEADER_BYTES = 64 * 1024
#: The most lines they may take.
MAX_HEADER_LINES = 256


class HeadersTooLarge(Exception):
    """
    A response's header section passed L{MAX_HEADER_BYTES} or
    L{MAX_HEADER_LINES}; the connection was dropped.
    """


def pool(reactor, persistent=True):
    """
    :return: an C{HTTPConnectionPool} whose connections drop a response with
        too large a header section (Twisted's client sets no bound on the
        number of header lines) and log no line per connection.
    """
    made = HTTPConnectionPool(reactor, persistent=persistent)
    made._factory = _Factory
    return made


class _Factory(_HTTP11ClientFactory):
    noisy = False

    def buildProtocol(self, addr):
        return _BoundedProtocol(self._quiescentCallback)


class _BoundedProtocol(HTTP11ClientProtocol):
    """
    Counts the lines and bytes of each response's header section as its
    parser receives them (the parser bounds one line, not their number).
    """

    def request(self, request):
        d = HTTP11ClientProtocol.request(self, request)
        parser = self._parser
        if parser is not None:
            parser.lineReceived = _HeaderBound(parser.lineReceived, self.transport)
        return d


class _HeaderBound:
    """
    Wraps a parser's C{lineReceived} (called only for the status line and
    headers); past the bound, it aborts the connection and raises
    L{HeadersTooLarge}, which fails the response.
    """

    def __init__(self, received, transport):
        self._received = received
        self._transport = transport
        self._lines = 0
        self._bytes = 0

    def __call__(self, line):
        self._lines += 1
        self._bytes += len(line) + 1
        if self._lines > MAX_HEADER_LINES or self._bytes > MAX_HEADER_BYTES:
            self._transport.abortConnection()
            raise HeadersTooLarge("response headers over {} lines or {} bytes".format(
                MAX_HEADER_LINES, MAX_HEADER_BYTES))
        return self._received(line)


def basic_auth(username, password):
    """
    :param password: the password, revealed.
    :return: the C{Authorization} header value of a Basic login.
    """
    raw = "{}:{}".format(username, password).encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")


class BodyTooLarge(ValueError):
    """
    A response body was longer than the caller allows.
    """


def read_capped(response, limit, keep=True):
    """
    Read a response body, failing with L{BodyTooLarge} past C{limit} bytes
    (the rest is not read).

    Cancelling the Deferred (a timeout) drops the connection: a server that
    sent its headers and then stalls must not keep it open.

    :return: a Deferred firing with the bytes (C{b""} unless C{keep}).
    """
    if response.length == 0:
        return defer.succeed(b"")
    body = _CappedBody(limit, keep)
    finished = body.finished = defer.Deferred(lambda _: body.abandon())
    response.deliverBody(body)
    return finished


class _CappedBody(protocol.Protocol):
    """
    Collects a body up to a limit; L{abandon} stops it and drops the
    connection.
    """

    finished = None

    def __init__(self, limit, keep):
        self._limit = limit
        self._keep = keep
        self._chunks = []
        self._size = 0

    def dataReceived(self, data):
        if self.finished is None:
            return
        self._size += len(data)
        if self._size > self._limit:
            finished = self.finished
            self.abandon()
            finished.errback(BodyTooLarge("response body larger than {} bytes".format(
                self._limit)))
            return
        if self._keep:
            self._chunks.append(data)

    def connectionLost(self, reason=None):
        finished, self.finished = self.finished, None
        if finished is None:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            finished.callback(b"".join(self._chunks))
        else:
            finished.errback(reason)

    def abandon(self):
        """
        Deliver nothing more, and close the connection (the body's transport
        is a producer: stopping it closes the socket, under TLS too).
        """
        self.finished = None
        self._chunks = []
        if self.transport is not None:
            self.transport.stopProducing()


_TIMEOUTS = (defer.TimeoutError, defer.CancelledError, error.TimeoutError, TimeoutError)


def describe_failure(failure, timeout):
    """
    Say why a request got no answer: a timeout after C{timeout} seconds, or
    the connection failure (its innermost reason, shortened).
    """
    # twisted.web's client wraps a cancelled request (the timeout) in
    # ResponseNeverReceived: look at what it wraps.
    inner = getattr(failure, "reasons", None)
    if inner:
        failure = inner[0].value
    if isinstance(failure, _TIMEOUTS):
        return "no answer within {:g}s".format(timeout)
    detail = " ".join(str(failure).split())[:200]
    name = type(failure).__name__
    return "{}: {}".format(name, detail) if detail else name
