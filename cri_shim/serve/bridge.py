# -*- test-case-name: tests.serve.test_bridge -*-
"""
The crossings from a gRPC worker thread to the reactor: run a
Deferred-returning function there and wait for its result, like
C{blockingCallFromThread}, but cancelling the Deferred when the gRPC caller
cancels its call (kubelet gave up: the registry probes stop too); and tell
the reactor when a pull from a registry starts and ends.
"""

import queue
from contextlib import contextmanager, nullcontext

from twisted.internet.defer import maybeDeferred
from twisted.python.failure import Failure


def cancellable_caller(reactor, function):
    """
    :param function: called on the reactor; may return a Deferred.
    :return: a blocking callable C{(context, *args)} for worker threads,
        returning C{function(*args)}'s result or raising its exception;
        C{context} is the gRPC call's C{ServicerContext}.
    """

    def call(context, *args):
        outcome = queue.Queue(1)
        started = []

        def start():
            d = maybeDeferred(function, *args)
            started.append(d)
            d.addBoth(outcome.put)

        def cancel():
            # Queued after start(): the reactor runs them in order.
            reactor.callFromThread(lambda: started[0].cancel())

        reactor.callFromThread(start)
        if not context.add_callback(cancel):
            cancel()
        result = outcome.get()
        if isinstance(result, Failure):
            result.raiseException()
        return result

    return call


def pull_tracker(reactor, started, ended):
    """
    :param started: called on the reactor with a registry's name when a pull
        from it starts.
    :param ended: called the same way when that pull ends.
    :return: a callable C{(registry name or None)} for worker threads,
        returning a context manager to hold over the pull.
    """

    @contextmanager
    def track(name):
        reactor.callFromThread(started, name)
        try:
            yield
        finally:
            reactor.callFromThread(ended, name)
    return lambda name: nullcontext() if name is None else track(name)


def untracked(name):
    """
    A L{pull_tracker} that tells no one.
    """
    return nullcontext()
