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
Off with C{events: false}, and silently off where no cluster is found.  A
refusal holds events back (L{cri_shim.sync.pacing}): one namespace's (being
terminated, over its quota) for that namespace only, the identity's for
every pod, each for a window that doubles while refusals last and ends at
the next success; a 401 first reads the identity again and tries once more.
A pod whose namespace or name Kubernetes would not take is never posted for
(dropped, counted, said once), and every name in a URL is quoted.  Messages
never carry a configured password: it is scrubbed from the whole texts
before they are shortened.
"""

import collections
import json
import socket
import time
from urllib.parse import quote

from twisted.application import service
from twisted.internet.defer import inlineCallbacks, returnValue, succeed
from twisted.logger import Logger

from cri_shim.metrics import Counter, Metrics
from cri_shim.model import podevent
from cri_shim.registries.httputil import describe_failure, read_capped
from cri_shim.sync.pacing import IDENTITY, Gate, TokenBucket, refusal
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
        self._gate = Gate(clock.seconds)
        self._invalid_said = False
        self._condition = None
        self._sending = None
        self._wakeup = None
        self._serial = 0
        self.counts = (metrics or Metrics()).add(Counter(
            "image_cri_shim_pod_events_total", "Pod events, by outcome (posted, aggregated, "
            "dropped, failed, invalid).", ("outcome",)))

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
        if not self.running or not self._holder.current.config.events:
            return
        wrong = podevent.name_problem(event.pod)
        if wrong is not None:
            self.counts.inc("invalid")
            if not self._invalid_said:
                self._invalid_said = True
                self.log.info("pod events: a pod's {which} {value} is not a valid Kubernetes "
                              "name; events for such pods are dropped (said once)", which=wrong,
                              value=repr(getattr(event.pod, wrong))[:100])
            return
        if self._held(event.pod.namespace):
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

    def _held(self, namespace):
        """
        :return: whether events for C{namespace} are held back now (the
            event is dropped and counted).
        """
        if self._gate.held(namespace):
            self.counts.inc("dropped")
            return True
        return False

    @inlineCallbacks
    def _send(self, event, at):
        if not self._find_cluster():
            self._queue.clear()
            return
        pod = event.pod
        if self._held(pod.namespace):
            return
        message = event.render(self._scrub)
        key = (pod.namespace, pod.name, pod.uid, event.reason, message)
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
                self._succeeded("aggregated", pod.namespace)
                return
            if code != 404:
                return
        self._serial += 1
        name = podevent.event_name(pod.name, at, self._serial)
        code = yield self._request("POST", pod.namespace, None, self._event(
            event, message, name, stamp), "application/json")
        if code in (200, 201):
            self._series[key] = _Series(name, 1, at)
            self._series.move_to_end(key)
            while len(self._series) > SERIES:
                self._series.popitem(last=False)
            self._succeeded("posted", pod.namespace)

    def _event(self, event, message, name, stamp):
        pod = event.pod
        return {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": pod.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod.name,
                               "namespace": pod.namespace, "uid": pod.uid},
            "reason": event.reason, "type": event.type,
            "message": message,
            "source": {"component": COMPONENT, "host": self._node},
            "reportingComponent": COMPONENT, "reportingInstance": self._node,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }

    def _scrub(self, message):
        """
        Runtimes' errors are quoted in messages: make sure no configured
        password rides along (given each whole text, before it is cut).
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
        answer = yield self._ask(method, namespace, name, body, content_type)
        if answer is not None and answer[0] == 401 and self._rediscover():
            # Kubelet may have rotated its certificate, or the kubeconfig
            # changed: read the identity again before holding events back.
            answer = yield self._ask(method, namespace, name, body, content_type)
        if answer is None:
            returnValue(None)
        code, data = answer
        scope, why = refusal(code, data)
        if scope is not None:
            self.counts.inc("failed")
            self._gate.refused(scope, namespace, code, why, self._cluster)
            if scope == IDENTITY:
                self._identity_refused(code)
        elif code not in (200, 201, 404):
            self.counts.inc("failed")
            self._note("status:{}".format(code), "pod events: API server answered {code}: "
                       "{detail}; events are dropped until it accepts them", "warn",
                       code=code, detail=status_message(data))
        returnValue(code)

    @inlineCallbacks
    def _ask(self, method, namespace, name, body, content_type):
        """
        :return: a Deferred firing with C{(status code, body)}, or C{None}
            when the request failed (logged when that starts).
        """
        cluster = self._cluster
        try:
            headers = cluster.headers()
            headers.update({"Accept": ["application/json"], "Content-Type": [content_type]})
            d = self._http.request(method, event_url(cluster.server, namespace, name),
                                   headers=headers, data=json.dumps(body).encode("utf-8"))
            d.addCallback(lambda response: read_capped(response, MAX_RESPONSE).addCallback(
                lambda data: (response.code, data)))
            d.addTimeout(REQUEST_TIMEOUT, self._clock)
            answer = yield d
        except Exception as e:
            self.counts.inc("failed")
            if self.running:
                self._note("unreachable", "pod events: API server {server} unreachable "
                           "({reason}); events are dropped until it answers", "warn",
                           server=cluster.server, reason=describe_failure(e, REQUEST_TIMEOUT))
            returnValue(None)
        returnValue(answer)

    def _rediscover(self):
        """
        Find the cluster again: its kubeconfig, token and certificate read
        anew.

        :return: whether one was found.
        """
        cluster, warnings = self._discover()
        if cluster is None:
            return False
        self.log.info("pod events: {server} does not accept {identity}; found {again} "
                      "(from {source}) and trying once more", server=self._cluster.server,
                      identity=self._cluster.identity, again=cluster.identity,
                      source=cluster.source)
        self._cluster, self._http = cluster, self._http_for(cluster)
        return True

    def _identity_refused(self, code):
        """
        The identity may not post events: the events waiting are dropped,
        and after a 401 the cluster is found again when the hold ends.
        """
        self.counts.inc("dropped", amount=len(self._queue))
        self._queue.clear()
        if code == 401:
            self._cluster = self._http = self._looked_at = None

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

    def _succeeded(self, outcome, namespace):
        self.counts.inc(outcome)
        self._gate.succeeded(namespace)
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


def event_url(server, namespace, name=None):
    """
    :return: the URL of the Events of C{namespace}, or of the Event
        C{name} there; each name quoted as one path segment.
    """
    url = "{}/api/v1/namespaces/{}/events".format(server, quote(namespace, safe=""))
    return url if name is None else url + "/" + quote(name, safe="")


def _timestamp(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))

