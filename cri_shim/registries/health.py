# -*- test-case-name: tests.registries.test_health -*-
"""
Registry health: one found down is passed over by lookups (asked last) until
it answers again, so a dead registry costs no pull a timeout.

Idle means silent: health is learned from the lookups and pulls the node
makes anyway (passive health), and a registry is asked C{GET /v2/} only
when that is needed: once when it is new (not seen yet), while it is down
or its last check failed (to see it come back, or go), and while a pull
from it is in progress (a stalled registry gives the pull no error).  A
registry that is up is not asked anything while nothing is pulled: the
check a pull scheduled is cancelled when the last pull from it ends.

A registry is down at once when a lookup or a pull could not reach it, or
after C{failureThreshold} failed checks in a row.  A down registry is
checked with exponential backoff (up to 8 intervals) and is up again after
C{successThreshold} good checks or answers.  200 and 401 mean reachable;
connection and TLS errors, timeouts and 5xx mean failing; 429 is reachable
and its C{Retry-After} is honoured.  Every wait is jittered.  Reactor thread
only: the set of down registries reaches the request path in the snapshot.
"""

import random

import attr
from twisted.application import service
from twisted.logger import Logger

from cri_shim.model.duration import jittered
from cri_shim.registries.httputil import describe_failure, read_capped
from cri_shim.metrics import Metrics

UNKNOWN, UP, DOWN = "unknown", "up", "down"
#: A down registry is checked at most this many intervals apart.
MAX_BACKOFF_INTERVALS = 8
_MAX_BODY = 64 * 1024
#: How far each wait between checks moves, as a fraction of it.
JITTER = 0.2


@attr.s
class RegistryHealth:
    """
    What is known of one registry.

    :ivar state: L{UNKNOWN}, L{UP} or L{DOWN}.
    :ivar reason: why it is in that state, for logs and the admin endpoint.
    :ivar changed: when the state last changed (clock seconds).
    :ivar last_latency: seconds the last check took, or C{None}.
    :ivar pulls: pulls from it in progress.
    :ivar not_before: no check before then (its C{Retry-After}).
    """

    registry = attr.ib()
    state = attr.ib(default=UNKNOWN)
    reason = attr.ib(default="not checked yet")
    changed = attr.ib(default=0.0)
    failures = attr.ib(default=0)
    successes = attr.ib(default=0)
    last_latency = attr.ib(default=None)
    pulls = attr.ib(default=0)
    not_before = attr.ib(default=0.0)
    call = attr.ib(default=None, repr=False)


class RegistryHealthChecker(service.Service):
    """
    :param holder: the L{cri_shim.snapshot.SnapshotHolder}: settings and
        registries are read from it, and the down set published to it.
    :param http: a treq-shaped client (the registries' TLS policy).
    :param clock: an C{IReactorTime}.
    :param uniform: the jitter's random source (see
        L{cri_shim.model.duration.jittered}).
    """

    name = "registry-health"
    log = Logger()

    def __init__(self, holder, http, clock, metrics=None, uniform=random.random):
        self._holder = holder
        self._http = http
        self._clock = clock
        self._uniform = uniform
        self._metrics = metrics or Metrics()
        self.registries = {}
        holder.subscribe(lambda snapshot: self._follow(snapshot.config))

    def startService(self):
        service.Service.startService(self)
        self._follow(self._holder.current.config)

    def stopService(self):
        service.Service.stopService(self)
        for health in self.registries.values():
            self._cancel(health)
        self.registries = {}

    def _follow(self, config):
        """
        Check the registries C{config} names: new ones now, as unknown (a
        lookup that reaches one first makes that check needless); removed
        ones no more.
        """
        if not self.running:
            return
        wanted = {registry.name: registry for registry in config.registries}
        for name in list(self.registries):
            if name not in wanted:
                self._cancel(self.registries.pop(name))
        for name, registry in wanted.items():
            health = self.registries.get(name)
            if health is None:
                health = self.registries[name] = RegistryHealth(registry,
                                                                changed=self._clock.seconds())
                self._schedule(health, 0)
            else:
                health.registry = registry
        self._publish()

    def state(self, name):
        """
        :return: the state of the registry named C{name} (L{UNKNOWN} for one
            not checked).
        """
        health = self.registries.get(name)
        return health.state if health is not None else UNKNOWN

    def report_unreachable(self, name, reason):
        """
        Passive health: a lookup or a pull could not reach C{name}; mark it
        down now and check it again soon.
        """
        health = self.registries.get(name)
        if health is None or health.state == DOWN:
            return
        health.failures = max(health.failures, 1)
        self._set(health, DOWN, reason)
        self._schedule(health, self._holder.current.config.health.interval)

    def report_reachable(self, name, reason):
        """
        Passive health: a lookup got an answer from C{name}.  A down
        registry counts it as a good check; an up one forgets its failed
        checks.  One not seen yet waits for its first check (due at once),
        which asks more of it (a whole answer) than a probe's headers.
        """
        health = self.registries.get(name)
        if health is not None and (health.state == DOWN or (health.state == UP and
                                                            health.failures)):
            self._succeeded(health, reason)

    def pull_started(self, name):
        """
        A pull from C{name} started: check it while the pull lasts, so a
        registry that stalls is found down and the pull let go.
        """
        health = self.registries.get(name)
        if health is None:
            return
        health.pulls += 1
        if health.call is None:
            self._schedule(health, self._holder.current.config.health.interval)

    def pull_ended(self, name):
        """
        A pull from C{name} ended (see L{pull_started}).  When it was the
        last and the registry is up with no failed check pending, its check
        is cancelled: an up registry is asked nothing while nothing is
        pulled.  A down one, one not seen yet, or one whose last check
        failed keeps its checks.
        """
        health = self.registries.get(name)
        if health is None:
            return
        health.pulls = max(health.pulls - 1, 0)
        if not health.pulls and health.state == UP and not health.failures:
            self._cancel(health)

    def _cancel(self, health):
        if health.call is not None and health.call.active():
            health.call.cancel()
        health.call = None

    def _schedule(self, health, delay):
        self._cancel(health)
        # Jittered, but never before the registry's Retry-After.
        delay = max(jittered(delay, self._uniform, JITTER),
                    health.not_before - self._clock.seconds())
        health.call = self._clock.callLater(delay, self._check, health)

    def _again(self, health, delay):
        """
        After a good check: check again only while it is needed (see the
        module's docstring).
        """
        if health.state != UP or health.pulls:
            self._schedule(health, delay)

    def _check(self, health):
        health.call = None
        settings = self._holder.current.config.health
        started = self._clock.seconds()
        url = health.registry.address.url + "/v2/"
        d = self._http.request("GET", url, allow_redirects=False)
        d.addCallback(lambda response: read_capped(response, _MAX_BODY, keep=False)
                      .addCallback(lambda _: response))
        # The timeout covers the body too: a registry that sends headers and
        # then stalls must not hang the check (and freeze its state) forever.
        d.addTimeout(settings.timeout, self._clock)
        d.addCallbacks(self._answered, self._failed, callbackArgs=(health, started),
                       errbackArgs=(health, started))
        d.addErrback(lambda failure: self.log.failure(
            "checking registry {registry} failed", failure, registry=health.registry.name))

    def _answered(self, response, health, started):
        if self.registries.get(health.registry.name) is not health:
            return
        health.last_latency = self._clock.seconds() - started
        self._metrics.probe_seconds.observe(health.last_latency, health.registry.name, "health")
        settings = self._holder.current.config.health
        code = response.code
        if code in (200, 401):
            self._succeeded(health, "answered {}".format(code))
            self._again(health, settings.interval)
        elif code == 429:
            retry_after = _retry_after(response, settings.interval)
            self._succeeded(health, "rate limited (429)")
            health.not_before = self._clock.seconds() + retry_after
            self._again(health, max(settings.interval, retry_after))
        else:
            self._failed_check(health, "answered {}".format(code))

    def _failed(self, failure, health, started):
        if self.registries.get(health.registry.name) is not health:
            return
        health.last_latency = None
        self._failed_check(health, describe_failure(
            failure.value, self._holder.current.config.health.timeout))

    def _succeeded(self, health, reason):
        health.failures = 0
        health.successes += 1
        threshold = self._holder.current.config.health.success_threshold
        if health.state != UP and (health.state == UNKNOWN or health.successes >= threshold):
            self._set(health, UP, reason)

    def _failed_check(self, health, reason):
        settings = self._holder.current.config.health
        health.successes = 0
        health.failures += 1
        if health.state != DOWN and health.failures >= settings.failure_threshold:
            self._set(health, DOWN, reason)
        if health.state == DOWN:
            # Back off: the first re-check comes after one interval.
            exponent = max(health.failures - settings.failure_threshold, 0)
            delay = settings.interval * min(2 ** exponent, MAX_BACKOFF_INTERVALS)
        else:
            delay = settings.interval
        self._schedule(health, delay)

    def _set(self, health, state, reason):
        previous = health.state
        health.state, health.reason = state, reason
        health.changed = self._clock.seconds()
        if state == DOWN:
            health.successes = 0
        self.log.info("registry {registry}: {previous} -> {state} ({reason})",
                      registry=health.registry.name, previous=previous, state=state,
                      reason=reason)
        self._publish()

    def _publish(self):
        down = frozenset(name for name, health in self.registries.items()
                         if health.state == DOWN)
        if down != self._holder.current.down:
            self._holder.publish_down(down)


def _retry_after(response, default):
    value = (response.headers.getRawHeaders(b"retry-after") or [b""])[0]
    try:
        return max(float(value.decode("ascii")), 0.0)
    except (UnicodeDecodeError, ValueError):
        return default
