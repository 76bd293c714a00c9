# -*- test-case-name: tests.ops.test_readiness -*-
"""
Whether the runtime answers, for the admin endpoint's C{/readyz}: asked at
most once per L{TTL}, however often C{/readyz} is.  Any local user may ask
C{/readyz} on a TCP admin address, and each check is a runtime C{Version}
call on a worker thread: unshared, a flood of requests made the shim a
runtime-call amplifier (issue 17, #12).  Reactor thread only.
"""

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

#: Seconds an answer is given again without asking the runtime.
TTL = 1.0


class Readiness:
    """
    The runtime's last answer, reused for L{TTL} seconds after it came;
    requests that come while a check runs wait for that check.

    :param check: returns a Deferred firing with whether the runtime
        answers.
    :param clock: an C{IReactorTime}.
    """

    def __init__(self, check, clock, ttl=TTL):
        self._check = check
        self._clock = clock
        self._ttl = ttl
        self._answer = None
        self._answered_at = None
        self._waiting = None

    def runtime_answers(self):
        """
        :return: a Deferred firing with whether the runtime answers, or
            failing as the check failed (a failure is not reused).
        """
        if (self._answered_at is not None
                and self._clock.seconds() < self._answered_at + self._ttl):
            return succeed(self._answer)
        d = Deferred()
        if self._waiting is not None:
            self._waiting.append(d)
            return d
        self._waiting = [d]
        self._check().addBoth(self._done)
        return d

    def _done(self, result):
        waiting, self._waiting = self._waiting, None
        if isinstance(result, Failure):
            for d in waiting:
                d.errback(result)
            return None
        self._answer, self._answered_at = result, self._clock.seconds()
        for d in waiting:
            d.callback(result)
        return None
