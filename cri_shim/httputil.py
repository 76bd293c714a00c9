# -*- test-case-name: tests.test_probe -*-
"""
Small helpers shared by the shim's HTTP clients (registry probes, health
checks, the ConfigMap sync): bounded body reads and failure descriptions that
never echo request details.
"""

import treq
from twisted.internet import defer, error


class BodyTooLarge(ValueError):
    """
    A response body was longer than the caller allows.
    """


def read_capped(response, limit, keep=True):
    """
    Read a response body, failing with L{BodyTooLarge} past C{limit} bytes
    (the rest is not read).

    :return: a Deferred firing with the bytes (C{b""} unless C{keep}).
    """
    chunks = []
    size = [0]

    def collect(data):
        size[0] += len(data)
        if size[0] > limit:
            raise BodyTooLarge("response body larger than {} bytes".format(limit))
        if keep:
            chunks.append(data)

    return treq.collect(response, collect).addCallback(lambda _: b"".join(chunks))


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
