"""
Tests for L{cri_shim.serve.bridge}, with the real reactor and a worker thread.
"""

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from cri_shim.serve.bridge import cancellable_caller, pull_tracker


class FakeContext:
    """
    The part of a gRPC ServicerContext the bridge uses.
    """

    def __init__(self, active=True):
        self.active = active
        self.callbacks = []

    def add_callback(self, callback):
        if not self.active:
            return False
        self.callbacks.append(callback)
        return True

    def terminate(self):
        for callback in self.callbacks:
            callback()


class CancellableCallerTests(TestCase):
    def test_result(self):
        """
        The function's eventual result reaches the thread.
        """
        call = cancellable_caller(reactor, lambda x: _later(x * 2))
        return deferToThread(call, FakeContext(), 21).addCallback(self.assertEqual, 42)

    def test_failure(self):
        """
        The function's failure is raised in the thread.
        """
        call = cancellable_caller(reactor, lambda: fail(ValueError("no")))
        return self.assertFailure(deferToThread(call, FakeContext()), ValueError)

    def test_cancelled_with_the_call(self):
        """
        When the gRPC call ends (kubelet cancelled), the Deferred is
        cancelled and the thread stops waiting.
        """
        cancelled = []
        pending = Deferred(lambda d: cancelled.append(True))
        context = FakeContext()
        call = cancellable_caller(reactor, lambda: pending)
        d = deferToThread(call, context)
        reactor.callLater(0.05, context.terminate)
        d = self.assertFailure(d, CancelledError)
        return d.addCallback(lambda _: self.assertEqual(cancelled, [True]))

    def test_call_already_over(self):
        """
        A call that is already over cancels at once.
        """
        call = cancellable_caller(reactor, lambda: Deferred())
        return self.assertFailure(deferToThread(call, FakeContext(active=False)),
                                  CancelledError)


def _later(value):
    d = Deferred()
    reactor.callLater(0.01, d.callback, value)
    return d


class _CallingReactor:
    def callFromThread(self, f, *args):
        f(*args)


class PullTrackerTests(TestCase):
    def test_started_and_ended(self):
        """
        The reactor is told when a pull from a registry starts and when it
        ends, even when it fails; a pull from no registry is not told.
        """
        told = []
        track = pull_tracker(_CallingReactor(), lambda name: told.append(("started", name)),
                             lambda name: told.append(("ended", name)))
        with track("mirror.example"):
            self.assertEqual(told, [("started", "mirror.example")])
        with self.assertRaises(RuntimeError):
            with track("other.example"):
                raise RuntimeError("pull failed")
        with track(None):
            pass
        self.assertEqual(told, [("started", "mirror.example"), ("ended", "mirror.example"),
                                ("started", "other.example"), ("ended", "other.example")])
