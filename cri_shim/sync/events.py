# -*- test-case-name: tests.sync.test_events -*-
"""
Pod events, on the reactor: post each L{cri_shim.model.podevent.PodEvent}
as a core/v1 Event on its pod, so that C{kubectl describe pod} shows where
its image came from beside kubelet's own events.

Never on a pull's critical path: worker threads hand events over with
C{reactor.callFromThread} and never wait; events wait in a bounded queue
(dropped and counted when it is full) and are posted one at a time, at most
L{RATE} a second with bursts of L{BURST} (a token bucket on the injected
clock).  Like kubelet's recorder, the same event for the same pod within
L{AGGREGATE_WINDOW} raises the existing Event's C{count} (a PATCH) instead
of making a new one.

The API server and identity are found as the ConfigMap sync finds them
(L{cri_shim.sync.kube.find_cluster}: the node's kubelet.conf among them).
Off with C{events: false}, and silently off where no cluster is found or
the identity may not create events (logged once).  Messages never carry a
configured password.
"""

import collections
import json
import socket
import time

from twisted.application import service
from twisted.internet.defer import inlineCallbacks, returnValue, succeed
from twisted.logger import Logger

from cri_shim.metrics import Counter, Metrics
from cri_shim.registries.httputil import describe_failure, read_capped
from cri_shim.sync.watch import status_message

COMPONENT = "image-cri-shim"
#: Events posted per second, and the burst allowed (client-go's recorder:
#: 1/300 s per object with a burst of 25; here for the whole node).
RATE = 1.0
BURST = 25
#: Events waiting to be posted at most; more are dropped and counted.
QUEUE_SIZE = 200
#: The same event for the same pod within this many seconds raises a count.
AGGREGATE_WINDOW = 300.0
#: Event series remembered for aggregation (client-go keeps 4096).
SERIES = 4096
#: How long one request to the API server may take.
REQUEST_TIMEOUT = 10.0
#: How long after finding no API server it is looked for again.
DISCOVERY_RETRY = 60.0
MAX_RESPONSE = 64 * 1024


def node_name(environ):
    """
    :return: this node's name as kubelet registers it: C{$NODE_NAME} (set
        in a DaemonSet from C{spec.nodeName}), else the host name in lower
        case (kubelet's default).
    """
    return environ.get("NODE_NAME") or socket.gethostname().lower()


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


class _Series:
    """
    An Event posted for one (pod, reason, message): its name and count.
    """

    def __init__(self, name, count, last):
        self.name = name
        self.count = count
        self.last = last


class EventRecorder(service.Service):
    """
    :param holder: the L{cri_shim.snapshot.SnapshotHolder} (C{events}, the
        passwords to keep out of messages).
    :param clock: an C{IReactorTime}.
    :param discover: returns C{(cluster or None, [warnings])}.
    :param http_for: makes a treq-shaped client for a cluster.
    :param node: this node's name (C{source.host}).
    """

    name = "pod-events"
    log = Logger()

    def __init__(self, holder, clock, discover, http_for, node, metrics=None,
                 queue_size=QUEUE_SIZE, rate=RATE, burst=BURST):
        self._holder = holder
        self._clock = clock
        self._discover = discover
        self._http_for = http_for
        self._node = node
        self._queue = collections.deque()
        self._queue_size = queue_size
        self._bucket = TokenBucket(rate, burst, clock.seconds)
        self._series = collections.OrderedDict()
        self._cluster = self._http = None
        self._looked_at = None
        self._off = None
        self._condition = None
        self._sending = None
        self._wakeup = None
        self._serial = 0
        self.counts = (metrics or Metrics()).add(Counter(
            "image_cri_shim_pod_events_total", "Pod events, by outcome (posted, aggregated, "
            "dropped, failed).", ("outcome",)))

    def stopService(self):
        """
        Stop posting: events still queued are dropped, a request in flight
        abandoned.
        """
        service.Service.stopService(self)
        self._queue.clear()
        if self._wakeup is not None and self._wakeup.active():
            self._wakeup.cancel()
        self._wakeup = None
        if self._sending is not None:
            self._sending.cancel()
        return succeed(None)

    def record(self, event):
        """
        Queue C{event} for posting.  Runs on the reactor, returns at once.

        :param event: a L{cri_shim.model.podevent.PodEvent}.
        """
        if not self.running or self._off or not self._holder.current.config.events:
            return
        if len(self._queue) >= self._queue_size:
            self.counts.inc("dropped")
            self._note("full", "pod events: {size} are waiting to be posted; dropping new "
                       "ones until the API server catches up", "warn", size=self._queue_size)
            return
        self._queue.append((event, self._clock.seconds()))
        self._pump()

    def _pump(self):
        if self._sending is not None or self._wakeup is not None or not self._queue:
            return
        wait = self._bucket.take()
        if wait:
            self._wakeup = self._clock.callLater(wait, self._wake)
            return
        event, at = self._queue.popleft()
        self._sending = self._send(event, at)
        self._sending.addErrback(lambda failure: self.log.failure(
            "posting a pod event failed", failure))
        self._sending.addBoth(self._sent)

    def _wake(self):
        self._wakeup = None
        self._pump()

    def _sent(self, ignored):
        self._sending = None
        if self.running:
            self._pump()

    @inlineCallbacks
    def _send(self, event, at):
        if not self._find_cluster():
            self._queue.clear()
            return
        pod = event.pod
        key = (pod.namespace, pod.name, pod.uid, event.reason, event.message)
        series = self._series.get(key)
        stamp = _timestamp(at)
        if series is not None and at - series.last <= AGGREGATE_WINDOW:
            code = yield self._request("PATCH", pod.namespace, series.name, {
                "count": series.count + 1, "lastTimestamp": stamp},
                "application/strategic-merge-patch+json")
            if code == 200:
                series.count += 1
                series.last = at
                self._series.move_to_end(key)
                self._succeeded("aggregated")
                return
            if code != 404:
                return
        self._serial += 1
        name = "{}.{:x}{:04x}".format(pod.name, int(at * 1e9), self._serial % 0x10000)
        code = yield self._request("POST", pod.namespace, None, self._event(
            event, name, stamp), "application/json")
        if code in (200, 201):
            self._series[key] = _Series(name, 1, at)
            self._series.move_to_end(key)
            while len(self._series) > SERIES:
                self._series.popitem(last=False)
            self._succeeded("posted")

    def _event(self, event, name, stamp):
        pod = event.pod
        return {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": pod.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod.name,
                               "namespace": pod.namespace, "uid": pod.uid},
            "reason": event.reason, "type": event.type,
            "message": self._scrub(event.message),
            "source": {"component": COMPONENT, "host": self._node},
            "reportingComponent": COMPONENT, "reportingInstance": self._node,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }

    def _scrub(self, message):
        """
        Runtimes' errors are quoted in messages: make sure no configured
        password rides along.
        """
        for registry in self._holder.current.config.registries:
            credentials = registry.credentials
            if credentials is not None and credentials.password:
                message = message.replace(credentials.password.reveal(), "<redacted>")
        return message

    @inlineCallbacks
    def _request(self, method, namespace, name, body, content_type):
        """
        :return: a Deferred firing with the status code, or C{None} when the
            request failed; failures and refusals are logged when they start.
        """
        cluster = self._cluster
        url = "{}/api/v1/namespaces/{}/events".format(cluster.server, namespace)
        if name is not None:
            url += "/" + name
        try:
            headers = cluster.headers()
            headers.update({"Accept": ["application/json"], "Content-Type": [content_type]})
            d = self._http.request(method, url, headers=headers,
                                   data=json.dumps(body).encode("utf-8"))
            d.addCallback(lambda response: read_capped(response, MAX_RESPONSE).addCallback(
                lambda data: (response.code, data)))
            d.addTimeout(REQUEST_TIMEOUT, self._clock)
            code, data = yield d
        except Exception as e:
            self.counts.inc("failed")
            if self.running:
                self._note("unreachable", "pod events: API server {server} unreachable "
                           "({reason}); events are dropped until it answers", "warn",
                           server=cluster.server, reason=describe_failure(e, REQUEST_TIMEOUT))
            returnValue(None)
        if code in (401, 403):
            self._off = "denied"
            self._queue.clear()
            self.counts.inc("failed")
            self.log.error("pod events off: {identity} (from {source}) may not create events "
                           "({code} {detail}); set events: false to silence this",
                           identity=cluster.identity, source=cluster.source, code=code,
                           detail=status_message(data))
        elif code not in (200, 201, 404):
            self.counts.inc("failed")
            self._note("status:{}".format(code), "pod events: API server answered {code}: "
                       "{detail}; events are dropped until it accepts them", "warn",
                       code=code, detail=status_message(data))
        returnValue(code)

    def _find_cluster(self):
        """
        :return: whether a cluster to post to is known (looked for again
            every L{DISCOVERY_RETRY} seconds while there is none).
        """
        if self._cluster is not None:
            return True
        now = self._clock.seconds()
        if self._looked_at is not None and now - self._looked_at < DISCOVERY_RETRY:
            return False
        self._looked_at = now
        cluster, warnings = self._discover()
        if cluster is None:
            self._note("no-cluster", "pod events off: no Kubernetes API server found", "info")
            return False
        self.log.info("pod events go to {server} as {identity} (from {source}), node {node}",
                      server=cluster.server, identity=cluster.identity, source=cluster.source,
                      node=self._node)
        self._cluster = cluster
        self._http = self._http_for(cluster)
        return True

    def _succeeded(self, outcome):
        self.counts.inc(outcome)
        if self._condition is not None:
            self._condition = None
            self.log.info("pod events are posted again")

    def _note(self, condition, log_format, level, **fields):
        """
        Log C{log_format} when the condition starts, not while it lasts.
        """
        if condition != self._condition:
            self._condition = condition
            getattr(self.log, level)(log_format, **fields)


def _timestamp(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))

