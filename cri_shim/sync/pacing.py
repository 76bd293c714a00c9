# -*- test-case-name: tests.sync.test_pacing -*-
"""
When a pod event may be posted, on the reactor's clock: a L{TokenBucket}
for the node's rate, and a L{Gate} that keeps events back after the API
server refused them, for one namespace or for every pod, as L{refusal}
tells.

A 403 about one namespace (being terminated, over a ResourceQuota on
C{count/events}, refused by another admission check) holds back that
namespace's events only; a 401, or a 403 from authorization (C{User "..."
cannot create resource "events"}), is about the identity and holds back
all of them.  Each hold is a window that doubles with each refusal in a
row, up to a cap, and ends at the next post that succeeds: nothing is off
for good.
"""

import collections
import json
import re

from twisted.logger import Logger

#: How long a namespace's events are held back after its first refusal, and
#: every pod's after the identity's first; each refusal in a row doubles it,
#: up to L{MAX_HOLD}.
NAMESPACE_HOLD = 60.0
IDENTITY_HOLD = 300.0
MAX_HOLD = 3600.0
#: Namespaces whose refusals are remembered at most.
NAMESPACES = 1024
#: Whose refusal it is.
NAMESPACE = "namespace"
IDENTITY = "identity"
#: How the authorizer words a denial (k8s.io/apiserver's
#: C{responsewriters.forbiddenMessage}): C{events is forbidden: User "x"
#: cannot create resource "events" ...}.
_AUTHORIZER = re.compile(r'\bUser ".*" cannot ')
#: The cause the namespace lifecycle admission gives.
_TERMINATING = "NamespaceTerminating"


class TokenBucket:
    """
    C{rate} tokens a second, at most C{burst} saved up.

    :param seconds: returns the time in seconds (the injected clock).
    """

    def __init__(self, rate, burst, seconds):
        self._rate = rate
        self._burst = burst
        self._seconds = seconds
        self._tokens = float(burst)
        self._stamp = seconds()

    def take(self):
        """
        Take a token if there is one.

        :return: C{0} when one was taken, else the seconds until there is one.
        """
        now = self._seconds()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0
        return (1 - self._tokens) / self._rate


def refusal(code, body):
    """
    Whose refusal an answer to an Event post is.

    :param code: the status code.
    :param body: the answer's bytes (a C{Status}, read capped).
    :return: C{(scope, why)}: L{IDENTITY}, L{NAMESPACE} or C{None} (not a
        refusal), and a few words on why, safe to log.
    """
    if code == 401:
        return IDENTITY, "the API server does not accept the credentials"
    if code != 403:
        return None, None
    status = _status(body)
    message = status.get("message")
    message = " ".join(message.split())[:300] if isinstance(message, str) else ""
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    # A StatusCause's type is its "reason" in JSON.
    kinds = [cause.get("reason") for cause in causes if isinstance(cause, dict)] \
        if isinstance(causes, list) else []
    if _TERMINATING in kinds or "because it is being terminated" in message:
        return NAMESPACE, "the namespace is being terminated"
    if "exceeded quota" in message or "failed quota" in message:
        return NAMESPACE, "over the namespace's quota ({})".format(message)
    if _AUTHORIZER.search(message):
        return IDENTITY, message
    return NAMESPACE, message or "403 without a message"


def _status(body):
    try:
        status = json.loads(body.decode("utf-8"))
    except (ValueError, AttributeError, UnicodeDecodeError):
        return {}
    return status if isinstance(status, dict) else {}


class Holds:
    """
    Keys (namespaces, or one for the identity) whose events are held back.
    A key's first refusal holds it for C{first} seconds; each refusal in a
    row doubles that, up to C{cap}; a success forgets it.  At most C{size}
    keys are remembered (the longest-remembered is forgotten first: at
    worst it is tried again early).

    :param seconds: returns the time in seconds (the injected clock).
    """

    def __init__(self, seconds, first, cap, size):
        self._seconds = seconds
        self._first = first
        self._cap = cap
        self._size = size
        self._held = collections.OrderedDict()

    def held(self, key):
        """
        :return: the seconds left of C{key}'s hold, or C{0}.
        """
        entry = self._held.get(key)
        return max(entry[0] - self._seconds(), 0) if entry is not None else 0

    def refused(self, key):
        """
        Hold C{key} back.

        :return: C{(window, first)}: how many seconds, and whether this
            starts a run of refusals (one to log).
        """
        previous = self._held.pop(key, None)
        window = self._first if previous is None else min(previous[1] * 2, self._cap)
        self._held[key] = (self._seconds() + window, window)
        while len(self._held) > self._size:
            self._held.popitem(last=False)
        return window, previous is None

    def cleared(self, key):
        """
        Forget C{key}'s refusals (a post succeeded).

        :return: whether it had any.
        """
        return self._held.pop(key, None) is not None

    def __len__(self):
        return len(self._held)


class Gate:
    """
    Whether a pod event may go now: not while its namespace, or the
    identity, is held back after a refusal.  Each hold is said when it
    starts and when it ends.

    :param seconds: returns the time in seconds (the injected clock).
    """

    log = Logger()

    def __init__(self, seconds):
        self._namespaces = Holds(seconds, NAMESPACE_HOLD, MAX_HOLD, NAMESPACES)
        self._identity = Holds(seconds, IDENTITY_HOLD, MAX_HOLD, 1)

    def held(self, namespace):
        """
        :return: whether events for C{namespace} are held back now.
        """
        return bool(self._identity.held(IDENTITY) or self._namespaces.held(namespace))

    def refused(self, scope, namespace, code, why, cluster):
        """
        Hold back C{namespace}'s events (L{NAMESPACE}) or all of them
        (L{IDENTITY}), after a refusal by C{cluster}'s API server.
        """
        if scope == IDENTITY:
            window, first = self._identity.refused(IDENTITY)
            if first:
                self.log.error(
                    "pod events off: {identity} (from {source}) may not create events ({code} "
                    "{detail}); trying again in {retry:g}s, backing off up to {max_hold:g}s; "
                    "set events: false to silence this", identity=cluster.identity,
                    source=cluster.source, code=code, detail=why, retry=window,
                    max_hold=MAX_HOLD)
            return
        window, first = self._namespaces.refused(namespace)
        if first:
            self.log.warn("pod events for namespace {namespace} held back: the API server "
                          "refused one ({code}: {detail}); trying again in {retry:g}s, "
                          "backing off up to {max_hold:g}s", namespace=namespace, code=code,
                          detail=why, retry=window, max_hold=MAX_HOLD)

    def succeeded(self, namespace):
        """
        An event for C{namespace} was taken: its hold, and the identity's,
        are over.
        """
        if self._identity.cleared(IDENTITY):
            self.log.info("pod events are posted again")
        if self._namespaces.cleared(namespace):
            self.log.info("pod events for namespace {namespace} are posted again",
                          namespace=namespace)
