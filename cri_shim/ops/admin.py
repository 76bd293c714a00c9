# -*- test-case-name: tests.ops.test_admin -*-
"""
The admin endpoint (twisted.web, on a UNIX socket by default): Prometheus
C{/metrics}, C{/healthz}, C{/readyz}, and what C{image-cri-shim-ctl} asks:
C{/registries}, C{/explain?image=...}, C{POST /cache/flush}, C{POST /reload}.
Reactor thread only; nothing it answers holds a secret.  Who may reach
it, and how many at once: L{cri_shim.ops.access}.
"""

import json
import os
import platform

import grpc
import twisted

from twisted.application import service
from twisted.internet.defer import fail, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, UNIXServerEndpoint
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from cri_shim import __version__
from cri_shim.model import reference, rewrite
from cri_shim.model.selector import Pod
from cri_shim.ops import access
from cri_shim.ops.readiness import Readiness
from cri_shim.registries.health import DOWN
from cri_shim.metrics import Readout

log = Logger()

#: Seconds an idle admin connection is kept.
_IDLE_TIMEOUT = 60


def admin_service(address, root, reactor, token_file=""):
    """
    :param address: a UNIX socket path, or C{host:port}.
    :param token_file: C{adminTokenFile}: where the bearer token that opens
        the whole endpoint on TCP is, or C{""}.
    :return: a service serving C{root} there (sockets: mode 0600, in a
        folder made 0700; TCP: see L{access.TCPGuard}), at most
        L{access.MAX_CONNECTIONS} connections at a time.
    """
    folder = None
    if address.startswith("/"):
        folder = os.path.dirname(address)
        endpoint = UNIXServerEndpoint(reactor, address, mode=0o600, wantPID=True)
    else:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        kind = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
        endpoint = kind(reactor, int(port), interface=host)
        root = access.TCPGuard(root, _token(token_file))
    site = _QuietSite(root, timeout=_IDLE_TIMEOUT, reactor=reactor)
    site.noisy = False
    return _AdminService(endpoint, access.ConnectionLimit(site, address), address, folder)


def _token(path):
    """
    :return: the token in C{path}, or C{None} when there is none or it
        cannot be used (said in the log).
    """
    if not path:
        return None
    try:
        return access.read_token(path)
    except access.TokenError as e:
        log.error("adminTokenFile: {reason}; the admin actions are not served over TCP",
                  reason=str(e))
        return None


class _QuietSite(Site):
    """
    No access log: a Prometheus scrape every few seconds would flood the
    journal.
    """

    def log(self, request):
        pass


class _AdminService(service.Service):
    """
    Listens on the admin endpoint.  The endpoint is not essential: when it
    cannot listen, that is logged and the shim keeps serving CRI.
    """

    name = "admin"
    log = Logger()

    def __init__(self, endpoint, site, address, folder):
        self._endpoint = endpoint
        self._site = site
        self._address = address
        self._folder = folder
        self._port = None

    def startService(self):
        service.Service.startService(self)
        if self._folder is None:
            self.log.warn("the admin endpoint is on TCP ({address}): any local user can reach "
                          "it; only /metrics, /healthz and /readyz are served there without "
                          "the bearer token of adminTokenFile", address=self._address)
        try:
            if self._folder is not None:
                os.makedirs(self._folder, mode=0o700, exist_ok=True)
            d = self._endpoint.listen(self._site)
        except OSError as e:
            d = fail(e)
        d.addCallbacks(self._listening, self._failed)

    def _listening(self, port):
        self._port = port
        self.log.info("admin endpoint on {address}", address=self._address)

    def _failed(self, failure):
        self.log.error("the admin endpoint cannot listen on {address} ({reason}); CRI is "
                       "served all the same", address=self._address,
                       reason=failure.getErrorMessage())

    def stopService(self):
        service.Service.stopService(self)
        if self._port is not None:
            port, self._port = self._port, None
            return port.stopListening()
        return None


def add_readouts(metrics, holder, health, reloader, poller):
    """
    Add the metrics read from the control path at scrape time: cache
    counters, registry health, config reloads, ConfigMap sync, build.
    """
    stats = holder.stats
    for name, attribute, help in (
            ("hits", "hits", "Rewrite cache hits."),
            ("misses", "misses", "Rewrite cache misses."),
            ("evictions", "evictions", "Rewrite cache entries dropped (full or expired)."),
            ("invalidations", "invalidations", "Rewrite cache emptied by a new config.")):
        metrics.add(Readout("image_cri_shim_cache_{}_total".format(name), help,
                            read=lambda attribute=attribute: [((), getattr(stats, attribute))],
                            kind="counter"))
    metrics.add(Readout("image_cri_shim_cache_entries", "Rewrite decisions cached.",
                        read=lambda: [((), len(holder.current.cache))]))
    metrics.add(Readout(
        "image_cri_shim_registry_up", "1 unless the registry is found down.", ("registry",),
        read=lambda: [((name,), int(state.state != DOWN))
                      for name, state in sorted(health.registries.items())]))
    metrics.add(Readout(
        "image_cri_shim_registry_state", "The registry's health state (1 for the current one).",
        ("registry", "state"), read=lambda: [((name, state.state), 1)
                                             for name, state in sorted(health.registries.items())]))
    metrics.add(Readout(
        "image_cri_shim_config_last_reload_success_timestamp_seconds",
        "When the running config was loaded (Unix time).",
        read=lambda: [((), reloader.last_success)]))
    metrics.add(Readout(
        "image_cri_shim_configmap_sync_state", "The ConfigMap sync's state (1 for the current "
        "one).", ("state",), read=lambda: [((poller.condition,), 1)]))
    metrics.add(Readout(
        "image_cri_shim_configmap_last_success_timestamp_seconds",
        "When the ConfigMap was last read (Unix time; absent before the first time).",
        read=lambda: [((), poller.last_success)] if poller.last_success is not None else []))
    build = (__version__, platform.python_version(), grpc.__version__, twisted.__version__)
    metrics.add(Readout("image_cri_shim_build_info", "The shim's build.",
                        ("version", "python", "grpcio", "twisted"), read=lambda: [(build, 1)]))


class AdminResource(Resource):
    """
    The admin endpoint's root.

    :param state: the L{AdminState} it reports on.
    """

    def __init__(self, state):
        Resource.__init__(self)
        self.putChild(b"metrics", _Leaf(lambda request: (
            "text/plain; version=0.0.4; charset=utf-8", state.metrics.render())))
        self.putChild(b"healthz", _Leaf(lambda request: ("text/plain", b"ok\n")))
        self.putChild(b"readyz", _Leaf(state.ready))
        self.putChild(b"registries", _Leaf(state.registries))
        self.putChild(b"explain", _Leaf(state.explain))
        cache = Resource()
        cache.putChild(b"flush", _Leaf(state.flush_cache, method=b"POST"))
        self.putChild(b"cache", cache)
        self.putChild(b"reload", _Leaf(state.reload, method=b"POST"))


class AdminState:
    """
    What the admin endpoint reads and does.
    """

    log = Logger()

    def __init__(self, metrics, holder, health, resolver, reloader, grpc, upstream, reactor):
        self.metrics = metrics
        self._holder = holder
        self._health = health
        self._resolver = resolver
        self._reloader = reloader
        self._grpc = grpc
        self._readiness = Readiness(lambda: deferToThreadPool(
            reactor, reactor.getThreadPool(), upstream.runtime_answers, 2.0), reactor)

    def ready(self, request):
        """
        Ready when the CRI socket serves and the runtime answers (its answer
        is given again for L{cri_shim.ops.readiness.TTL} seconds).
        """
        if not self._grpc.running:
            return _status(request, 503, "not serving")
        d = self._readiness.runtime_answers()
        d.addCallback(lambda answers: ("text/plain", b"ready\n") if answers
                      else _status(request, 503, "the runtime does not answer"))
        return d

    def registries(self, request):
        """
        The registries in failover order, with health and login (no secret).
        """
        snapshot = self._holder.current
        rows = []
        for registry in snapshot.config.registries:
            health = self._health.registries.get(registry.name)
            rows.append({
                "registry": registry.name,
                "url": registry.address.url,
                "priority": registry.priority,
                "offline": registry.offline,
                "state": self._health.state(registry.name),
                "reason": health.reason if health else "not checked",
                "since": health.changed if health else None,
                "check_seconds": health.last_latency if health else None,
                "login": _login(registry),
            })
        return _json(rows)

    def explain(self, request):
        """
        How an image would be pulled (for a pod in C{namespace} with the
        C{label}s given, if any): the workload rules that match, candidates in
        order, the cache entry, the decision and whose credentials go with it.
        """
        names = request.args.get(b"image") or [b""]
        name = names[0].decode("utf-8", "replace")
        try:
            ref = reference.parse(name).with_default_tag()
            pod = _pod(request.args)
        except (reference.InvalidReference, ValueError) as e:
            return _status(request, 400, str(e))
        snapshot = self._holder.current
        cached = snapshot.cache.get(rewrite.cache_key(ref, rewrite.scope(snapshot.config, ref, pod)))
        rules = [{
            "registry": registry.name,
            "namespaces": list(registry.namespaces) or None,
            "podSelector": (registry.pod_selector.describe()
                            if registry.pod_selector is not None else None),
            "matches": rewrite.admits(registry, pod),
        } for registry in snapshot.config.registries if registry.restricted]
        candidates = [{
            "registry": candidate.registry.name,
            "priority": candidate.registry.priority,
            "health": self._health.state(candidate.registry.name),
            "name": str(candidate.target),
        } for candidate in rewrite.candidates(snapshot.config, ref, down=snapshot.down, pod=pod)]
        d = maybeDeferred(self._resolver.resolve, snapshot, ref, pod)
        d.addCallback(lambda decision: _json({
            "image": name,
            "normalized": str(ref),
            "pod": None if pod is None else {"namespace": pod.namespace,
                                             "labels": pod.label_map},
            "rules": rules,
            "candidates": candidates,
            "cached": _decision(cached) if cached is not None else None,
            "decision": _decision(decision),
        }))
        return d

    def flush_cache(self, request):
        """
        Empty the rewrite cache (the configuration stays).
        """
        entries = len(self._holder.current.cache)
        self._holder.publish(self._holder.current.config)
        self.log.info("rewrite cache flushed by an admin request ({entries} entries)",
                      entries=entries)
        return _json({"flushed": entries})

    def reload(self, request):
        """
        Re-read the config file now.
        """
        return self._reloader.reload("admin request").addCallback(
            lambda reloaded: _json({"reloaded": reloaded}))


def _pod(args):
    """
    :return: the L{Pod} that C{namespace} and C{label=k=v} (repeated) in a
        query describe, or C{None} (a pull for no pod) when neither is given.
    :raise ValueError: for a label without C{=}.
    """
    namespace = (args.get(b"namespace") or [b""])[0].decode("utf-8", "replace")
    labels = [label.decode("utf-8", "replace") for label in args.get(b"label", ())]
    if not namespace and not labels:
        return None
    if not all("=" in label for label in labels):
        raise ValueError("a label is key=value")
    return Pod("", namespace, labels=dict(label.split("=", 1) for label in labels))


def _decision(decision):
    registry = decision.registry
    return {
        "name": str(decision.target) if decision.moved else str(decision.original),
        "moved": decision.moved,
        "registry": registry.name if registry is not None else None,
        "source": decision.source,
        "asked": list(decision.tried),
        "credentials": ("{} of {}".format(_login(registry), registry.name)
                        if decision.moved else
                        "kubelet's if it sends any, else {} of {}".format(
                            _login(registry), registry.name)
                        if registry is not None else "kubelet's, if it sends any"),
    }


def _login(registry):
    credentials = registry.credentials
    if credentials is None:
        return "anonymous"
    return "login {!r} (password redacted)".format(credentials.username)


def _json(document):
    return "application/json", (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _status(request, code, text):
    request.setResponseCode(code)
    return "text/plain", (text + "\n").encode("utf-8")


class _Leaf(Resource):
    """
    One endpoint: C{answer(request)} returns C{(content type, bytes)} or a
    Deferred of it.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, answer, method=b"GET"):
        Resource.__init__(self)
        self._answer = answer
        self._method = method

    def render(self, request):
        if request.method != self._method:
            request.setResponseCode(405)
            request.setHeader(b"allow", self._method)
            return b"method not allowed\n"
        gone = []
        request.notifyFinish().addErrback(lambda failure: gone.append(failure))
        d = maybeDeferred(self._answer, request)
        d.addCallback(self._write, request, gone)
        d.addErrback(self._failed, request, gone)
        return NOT_DONE_YET

    def _write(self, answer, request, gone):
        if gone:
            return
        content_type, body = answer
        request.setHeader(b"content-type", content_type.encode("ascii"))
        request.write(body)
        request.finish()

    def _failed(self, failure, request, gone):
        self.log.failure("admin request {path} failed", failure,
                         path=request.path.decode("ascii", "replace"))
        if gone:
            return
        request.setResponseCode(500)
        request.write(b"internal error; see the shim's log\n")
        request.finish()
