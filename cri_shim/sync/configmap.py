# -*- test-case-name: tests.sync.test_configmap -*-
"""
ConfigMap sync: follow the cluster-wide settings (default
C{kube-system/image-cri-shim}, key C{registries.yaml}) by list and watch
(L{cri_shim.sync.watch}), merge them into the local config, validate the
result, and hand it to the file reloader, which writes it (atomically, mode
0600, only when it changes) and publishes it.  A change reaches the node as
soon as the API server has it.

At steady state a node costs the API server one request per watch renewal
(every L{WATCH_SECONDS}, jittered).  A watch that breaks is resumed from its
C{resourceVersion} after a jittered, exponential backoff (the first within
L{RECONNECT_SPREAD}, so that a restarted API server is not met by every node
at once).  A C{resourceVersion} the API server says it cannot serve (410
Gone: too old; C{ResourceVersionTooLarge}: newer than its store, as after an
etcd restore) is dropped and the ConfigMap listed again at once, as client-go
does; backed off if the version listed is unusable too.  An identity that
may get but not watch is polled instead, every C{reloadInterval} (at least
L{MIN_POLL_INTERVAL}), jittered, which is logged once.  L{resync} (SIGHUP)
lists again at once.

Each condition is logged when it starts, not on every attempt: no cluster,
no ConfigMap, no permission, an outage, invalid content (the last good
config keeps running).  A local edit the reloader publishes is merged over
again with the last ConfigMap seen, without asking the API server.
"""

import random

from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, returnValue, succeed
from twisted.logger import Logger

from cri_shim.model.duration import jittered
from cri_shim.metrics import Metrics
from cri_shim.sync.merger import Merger, Skip
from cri_shim.sync.watch import Garbage, ObjectWatch, Refused, Unreachable

#: The shortest wait between polls, when the identity may not watch: every
#: node asks the API server, so a short C{reloadInterval} (which the
#: ConfigMap itself may set) must not make the cluster's nodes flood it.
MIN_POLL_INTERVAL = 10.0
#: A watch's C{timeoutSeconds} is drawn from this range: its renewal is the
#: one request a node sends at steady state.
WATCH_SECONDS = (300.0, 420.0)
#: The first reconnection after a failure comes within this many seconds
#: (drawn at random); each failure in a row doubles it, up to L{MAX_BACKOFF}.
RECONNECT_SPREAD = 30.0
#: The longest wait between attempts while the API server is failing.
MAX_BACKOFF = 300.0
#: A watch ended by the API server this much before its C{timeoutSeconds}
#: counts as a failure (backed off), not a renewal.
EARLY_END = 5.0


class ConfigMapSync(service.Service):
    """
    :param path: the local config file.
    :param holder: the L{cri_shim.snapshot.SnapshotHolder} (settings).
    :param reloader: the L{cri_shim.sync.reloader.ConfigReloader}: it reads
        the local file, and writes and publishes the merged config.
    :param clock: an C{IReactorTime}.
    :param discover: returns C{(cluster or None, [warnings])}; see
        L{cri_shim.sync.kube.find_cluster}.
    :param http_for: makes a treq-shaped client for a cluster.
    :param uniform: the random source of every wait (see
        L{cri_shim.model.duration.jittered}).
    """

    name = "configmap"
    log = Logger()

    def __init__(self, path, holder, reloader, clock, discover, http_for, metrics=None,
                 uniform=random.random):
        self._metrics = metrics or Metrics()
        #: When the API server last told the ConfigMap's state (clock seconds).
        self.last_success = None
        self.path = path
        self._holder = holder
        self._reloader = reloader
        self._clock = clock
        self._discover = discover
        self._http_for = http_for
        self._uniform = uniform
        self._cluster = None
        self._http = None
        self._watch = None
        self._watched = None
        self._version = None
        self._failures = 0
        # Versions found unusable in a row, with no event between them.
        self._unusable = 0
        self._polling = False
        self._interrupted = False
        self._sleeping = None
        self._loop = None
        self._condition = None
        self._merger = Merger(path, reloader, self._note, lambda: self.running, clock,
                              self._poll_interval)
        self._floored = None
        self._settings = holder.current.config.configmap
        holder.subscribe(self._published)

    def startService(self):
        service.Service.startService(self)
        # The first list starts now but never holds up serving: it runs
        # while the gRPC server already answers from the local file.
        self._loop = self._run()

    def stopService(self):
        """
        :return: a Deferred that fires when the merge in progress, if any, is
            done; it writes nothing once stopped, and the request to the API
            server in progress is abandoned.
        """
        service.Service.stopService(self)
        self._interrupt()
        self._merger.cancel()
        return DeferredList([self._loop or succeed(None), self._merger.idle()])

    def resync(self, reason):
        """
        List the ConfigMap again now (SIGHUP, a change of C{configMap:}),
        with the backoff reset; a watch in progress is dropped.
        """
        if not self.running:
            return
        self.log.info("ConfigMap sync: {reason}: listing the ConfigMap again now",
                      reason=reason)
        self._version = None
        self._failures = self._unusable = 0
        self._polling = False
        self._interrupt()

    def _interrupt(self):
        self._interrupted = True
        if self._watch is not None:
            self._watch.abort()
        sleeping, self._sleeping = self._sleeping, None
        if sleeping is not None:
            sleeping.callback(None)

    def _published(self, snapshot):
        settings = snapshot.config.configmap
        if settings != self._settings:
            self._settings = settings
            self.resync("configMap settings changed")
        else:
            # The reloader published a local edit: merge the last ConfigMap
            # seen over it again.
            self._merger.again()

    @property
    def condition(self):
        """
        The sync's state in one word (C{in-sync}, C{not-found}, C{denied},
        C{unreachable}, C{invalid}...), for metrics.
        """
        return (self._condition or "starting").split(":")[0]

    # -- the API server --------------------------------------------------------

    @inlineCallbacks
    def _run(self):
        while self.running:
            self._interrupted = False
            try:
                wait = yield self._step()
            except Exception as e:
                if not isinstance(e, Skip):
                    # A bug must not end the sync: it is retried, backed off.
                    self.log.failure("ConfigMap sync failed")
                    e = Skip("failed", "ConfigMap sync failed", level="error", outage=True)
                skip = e
                if self._interrupted or not self.running:
                    continue
                if skip.outage:
                    self._failures += 1
                wait = self._backoff(self._failures) if skip.outage else \
                    self._poll_interval(skip)
                self._note(skip.condition, skip.log_format, skip.level, skip.outage,
                           retry=wait, **skip.fields)
            if self.running and not self._interrupted and wait != 0:
                self._sleeping = sleeping = Deferred()
                if wait is not None:
                    call = self._clock.callLater(wait, self._wake, sleeping)
                    sleeping.addBoth(lambda result: call.active() and call.cancel())
                yield sleeping

    def _wake(self, sleeping):
        if self._sleeping is sleeping:
            self._sleeping = None
            sleeping.callback(None)

    @inlineCallbacks
    def _step(self):
        """
        One list and/or one watch.

        :return: a Deferred firing with the seconds to wait before the next
            step (C{None}: until L{resync}).
        """
        settings = self._holder.current.config.configmap
        where = "{}/{}".format(settings.namespace, settings.name)
        if not settings.enabled:
            raise Skip("disabled", "ConfigMap sync is off (configMap.enabled: false)")
        cluster = self._find_cluster()
        if self._watched != (settings.namespace, settings.name):
            self._watched = (settings.namespace, settings.name)
            self._watch = ObjectWatch(self._http, self._clock, cluster, settings.namespace,
                                      settings.name)
            self._version = None
        if self._version is None or self._polling:
            version, document = yield self._ask(self._watch.list(), cluster, where, "get")
            self._version = version
            self._seen(settings, document)
            yield self._merger.idle()
            self._failures = 0
            if not self.running or self._interrupted:
                returnValue(0)
            if self._polling:
                returnValue(self._poll_interval())
        timeout = WATCH_SECONDS[0] + self._uniform() * (WATCH_SECONDS[1] - WATCH_SECONDS[0])
        started = self._clock.seconds()
        try:
            yield self._ask(self._watch.watch(self._version, timeout,
                                              lambda kind, thing: self._event(settings, kind,
                                                                              thing)),
                            cluster, where, "watch")
        except _Unusable as unusable:
            if not self._unusable:
                self.log.info("ConfigMap sync: the API server cannot watch from resourceVersion "
                              "{version} ({code} {detail}); listing the ConfigMap again",
                              version=self._version, code=unusable.code,
                              detail=unusable.detail)
            self._version = None
            self._unusable += 1
            returnValue(self._backoff(self._unusable - 1) if self._unusable > 1 else 0)
        except _WatchDenied as denied:
            self._polling = True
            self.log.warn("ConfigMap sync: {identity} may not watch configmap {where} ({code} "
                          "{detail}); polling it every {interval:g}s instead. Grant it 'list' "
                          "and 'watch' on that ConfigMap (conf/rbac.yaml)",
                          identity=cluster.identity, where=where, code=403,
                          detail=denied.detail, interval=self._base_interval())
            returnValue(self._poll_interval())
        self._unusable = 0
        if self._clock.seconds() - started < timeout - EARLY_END:
            self._failures += 1
            returnValue(self._backoff(self._failures))
        self._failures = 0
        returnValue(0)

    def _event(self, settings, kind, thing):
        self._unusable = 0
        self._version = thing["metadata"]["resourceVersion"]
        self.last_success = self._clock.seconds()
        if kind != "BOOKMARK":
            self._seen(settings, None if kind == "DELETED" else thing)

    def _seen(self, settings, document):
        self.last_success = self._clock.seconds()
        self._merger.offer(settings, document)

    @inlineCallbacks
    def _ask(self, request, cluster, where, verb):
        """
        :return: C{request}'s result, its failures told as L{Skip}.
        """
        try:
            result = yield request
        except Unreachable as e:
            raise Skip("unreachable", "API server {server} unreachable ({reason})",
                        level="warn", outage=True, server=cluster.server, reason=e.reason)
        except Garbage as e:
            raise Skip("garbage", "API server sent something that is not ConfigMap "
                        "{where} ({reason}); the last good config keeps running",
                        level="warn", outage=True, where=where, reason=e.reason)
        except Refused as e:
            if e.unusable and verb == "watch":
                raise _Unusable(e.code, e.detail)
            if e.code == 403 and verb == "watch":
                raise _WatchDenied(e.detail)
            if e.code in (401, 403):
                raise Skip(
                    "denied:{}".format(e.code),
                    "ConfigMap sync: {identity} (from {source}) may not {verb} configmap "
                    "{where}: {code} {detail}. Grant it 'get', 'list' and 'watch' on that "
                    "ConfigMap (conf/rbac.yaml), or set configMap.enabled: false",
                    level="error", outage=e.code == 401 and verb == "watch",
                    identity=cluster.identity, source=cluster.source, verb=verb,
                    where=where, code=e.code, detail=e.detail)
            raise Skip("status:{}".format(e.code), "API server answered {code} for "
                        "ConfigMap {where}: {detail}", level="warn", outage=True,
                        code=e.code, where=where, detail=e.detail)
        returnValue(result)

    def _base_interval(self):
        config = self._holder.current.config
        return max(config.reload_interval, MIN_POLL_INTERVAL)

    def _poll_interval(self, skip=None):
        """
        :return: the wait before the next poll (C{None} when sync is off).
        """
        if skip is not None and skip.condition == "disabled":
            return None
        config = self._holder.current.config
        base = self._base_interval()
        if self._polling and base > config.reload_interval:
            if self._floored != config.reload_interval:
                self.log.warn(
                    "reloadInterval: {interval:g}s is too short to ask the API server that "
                    "often; the ConfigMap is polled every {floor:g}s (the local file is "
                    "still read every {interval:g}s)", interval=config.reload_interval,
                    floor=MIN_POLL_INTERVAL)
            self._floored = config.reload_interval
        return jittered(base, self._uniform)

    def _backoff(self, failures):
        """
        :return: a wait drawn from [0, L{RECONNECT_SPREAD} * 2 ** (C{failures}
            in a row - 1)), at most L{MAX_BACKOFF}: full jitter, so that nodes
            that lost the API server together come back apart.
        """
        window = RECONNECT_SPREAD * 2 ** min(max(failures - 1, 0), 16)
        return self._uniform() * min(window, MAX_BACKOFF)

    def _note(self, condition, log_format, level="info", outage=False, retry=None, **fields):
        """
        Count an attempt's outcome, C{condition}, and log it if the sync's
        condition changed (C{log_format} C{None}: it was logged already).
        """
        changed = condition != self._condition
        self._condition = condition
        self._metrics.syncs.inc(self.condition)
        if not changed or log_format is None:
            return
        if outage:
            log_format += "; retrying in {retry:.3g}s, backing off up to {max_backoff:g}s"
            fields.update(retry=retry, max_backoff=MAX_BACKOFF)
        getattr(self.log, level)(log_format, **fields)

    def _find_cluster(self):
        if self._cluster is None:
            cluster, warnings = self._discover()
            if cluster is None:
                raise Skip("no-cluster", "no Kubernetes API server found ({warnings}); using "
                            "the local config only", warnings="; ".join(warnings) or
                            "no in-cluster service account or kubeconfig")
            for warning in warnings:
                self.log.warn("ConfigMap sync: {warning}", warning=warning)
            self.log.info("ConfigMap sync uses {server} as {identity} (from {source})",
                          server=cluster.server, identity=cluster.identity,
                          source=cluster.source)
            self._cluster = cluster
            self._http = self._http_for(cluster)
        return self._cluster


class _Unusable(Exception):
    """
    The watch's resourceVersion cannot be served (410 Gone: too old;
    C{ResourceVersionTooLarge}: too new); list again.
    """

    def __init__(self, code, detail):
        Exception.__init__(self, code, detail)
        self.code = code
        self.detail = detail


class _WatchDenied(Exception):
    """
    403 on watch: the identity may get but not watch.
    """

    def __init__(self, detail):
        Exception.__init__(self, detail)
        self.detail = detail
