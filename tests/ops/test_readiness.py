"""
Tests for L{cri_shim.ops.readiness}: C{/readyz} asks the runtime at most
once per L{readiness.TTL}, however often it is asked (issue 17, #12), on
the injected clock; through the admin endpoint's resource and alone.
"""

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.metrics import Metrics
from cri_shim.ops import readiness
from cri_shim.ops.admin import AdminResource, AdminState
from cri_shim.ops.readiness import Readiness
from cri_shim.testing import FakeReactor

#: Requests in one flood.
FLOOD = 50


class _Runtime:
    """
    An upstream whose C{runtime_answers} counts its calls.
    """

    def __init__(self):
        self.calls = 0
        self.answers = True

    def runtime_answers(self, timeout):
        self.calls += 1
        return self.answers


class _Serving:
    running = True


class ReadyzTests(SynchronousTestCase):
    """
    C{GET /readyz} on the admin resource, the runtime call on a held
    thread pool.
    """

    def setUp(self):
        self.reactor = FakeReactor()
        self.runtime = _Runtime()
        self.grpc = _Serving()
        state = AdminState(Metrics(), None, None, None, None, self.grpc, self.runtime,
                           self.reactor)
        self.stub = StubTreq(AdminResource(state))

    def get(self):
        return self.stub.get("http://admin/readyz")

    def answer(self, d):
        response = self.successResultOf(d)
        return response.code, self.successResultOf(response.text())

    def test_flood_shares_one_call(self):
        """
        Requests while a check runs wait for it; requests within a second
        of its answer get that answer: one runtime call in all.  A request
        a second after it asks the runtime again.
        """
        self.reactor.pool.hold = True
        pending = [self.get() for _ in range(FLOOD)]
        self.assertEqual(self.runtime.calls, 1)
        for d in pending:
            self.assertNoResult(d)
        self.reactor.pool.deliver()
        self.stub.flush()
        self.assertEqual({self.answer(d) for d in pending}, {(200, "ready\n")})
        self.reactor.pool.hold = False
        self.reactor.advance(0.999)
        later = [self.get() for _ in range(FLOOD)]
        self.stub.flush()
        self.assertEqual({self.answer(d) for d in later}, {(200, "ready\n")})
        self.assertEqual(self.runtime.calls, 1)
        self.reactor.advance(0.001)
        self.runtime.answers = False
        self.assertEqual(self.answer(self.get()), (503, "the runtime does not answer\n"))
        self.assertEqual(self.runtime.calls, 2)

    def test_not_serving_is_not_cached(self):
        """
        A CRI socket that stopped serving says so at once, the runtime's
        answer notwithstanding.
        """
        self.assertEqual(self.answer(self.get()), (200, "ready\n"))
        self.grpc.running = False
        self.assertEqual(self.answer(self.get()), (503, "not serving\n"))
        self.assertEqual(self.runtime.calls, 1)


class ReadinessTests(SynchronousTestCase):
    """
    L{Readiness} alone.
    """

    def setUp(self):
        self.clock = Clock()
        self.checks = []
        self.readiness = Readiness(self.check, self.clock)

    def check(self):
        d = Deferred()
        self.checks.append(d)
        return d

    def test_ttl_from_the_answer(self):
        """
        The answer is reused for L{readiness.TTL} seconds after it came, not
        after the check began.
        """
        first = self.readiness.runtime_answers()
        self.clock.advance(5)
        self.checks[0].callback(False)
        self.assertIs(self.successResultOf(first), False)
        self.clock.advance(readiness.TTL - 0.001)
        self.assertIs(self.successResultOf(self.readiness.runtime_answers()), False)
        self.assertEqual(len(self.checks), 1)
        self.clock.advance(0.001)
        self.assertNoResult(self.readiness.runtime_answers())
        self.assertEqual(len(self.checks), 2)

    def test_failure_not_reused(self):
        """
        A check that fails fails every request waiting for it, and the
        next request checks again.
        """
        waiting = [self.readiness.runtime_answers() for _ in range(3)]
        self.checks[0].errback(RuntimeError("pool gone"))
        for d in waiting:
            self.failureResultOf(d, RuntimeError)
        self.readiness.runtime_answers()
        self.assertEqual(len(self.checks), 2)

    def test_synchronous_check(self):
        """
        A check that answers at once answers the request that started it.
        """
        failing = Readiness(lambda: fail(RuntimeError("x")), self.clock)
        self.failureResultOf(failing.runtime_answers(), RuntimeError)
        answering = Readiness(lambda: succeed(True), self.clock)
        self.assertIs(self.successResultOf(answering.runtime_answers()), True)
