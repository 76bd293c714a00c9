# -*- test-case-name: tests.registries.test_probe -*-
"""
Small helpers shared by the shim's HTTP clients (registry probes, health
checks, the ConfigMap sync): bounded body reads and failure descriptions that
never echo request details.
"""

from twisted.internet import defer, error, protocol
from twisted.web.client import PotentialDataLoss, ResponseDone


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
