# -*- test-case-name: tests.test_tap -*-
"""
The composition root: command-line options and the service tree that
C{twistd image-cri-shim} runs.  Only this module resolves the global reactor.
"""

import os
import random
import sys

# gRPC's core logs routine connection events (GOAWAY on every shutdown) to
# stderr unless told otherwise; keep its errors only, unless the operator set
# a level.  This must happen before grpc is imported, hence the imports below
# it.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from functools import partial

from treq.client import HTTPClient
from twisted.application import service
from twisted.internet import task
from twisted.logger import Logger
from twisted.python import usage

from cri_shim import __version__
from cri_shim.model import config as configuration, schema
from cri_shim.serve import methods
from cri_shim.sync import apiclient, kube
from cri_shim.ops.admin import AdminResource, AdminState, add_readouts, admin_service
from cri_shim.serve.bridge import cancellable_caller, pull_tracker
from cri_shim.ops.cache_stats import CacheStatsLogger
from cri_shim.sync.configfile import mode_notices, read_config
from cri_shim.sync.configmap import ConfigMapSync
from cri_shim.sync.events import EventRecorder, node_name
from cri_shim.ops.dryrun import dry_run
from cri_shim.registries.health import RegistryHealthChecker
from cri_shim.serve.grpc_server import GrpcServerService, SocketInUse, claim_socket
from cri_shim.serve.image_service import ImageService
from cri_shim.serve.name_store import NameStore, ReconcileService
from cri_shim.serve.views import NameView, thd_image_names
from cri_shim.metrics import Metrics
from cri_shim.serve.passthrough import ProxyHandler
from cri_shim.registries.probe import Prober
from cri_shim.registries import httputil
from cri_shim.registries.tls import agent, registry_policy
from cri_shim.sync.reloader import ConfigReloader, log_notices
from cri_shim.registries.resolver import Resolver
from cri_shim.snapshot import SnapshotHolder
from cri_shim.serve.upstream import Upstream

log = Logger()


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = (
        "Serve the Kubernetes CRI on a UNIX socket, relay every call to the container "
        "runtime, and rewrite image pulls to the private or offline registry that holds "
        "the image, with that registry's credentials.")
    optParameters = [
        ["config", "c", configuration.DEFAULT_CONFIG_PATH, "The configuration file."],
        ["file", "f", None, "Same as --config (the sealos image-cri-shim flag)."],
    ]
    optFlags = [
        ["dry-run", None, "Check the config, the runtime's socket and every registry "
         "(reachable, TLS, login), print the effective config with secrets redacted, and "
         "exit 0 if all is well, else 1."],
    ]

    def opt_version(self):
        """
        Print the version and exit.
        """
        print("image-cri-shim {}".format(__version__))
        raise SystemExit(0)

    def postOptions(self):
        path = self["file"] or self["config"]
        self["config"] = path
        try:
            text, mode = read_config(path)
        except OSError as e:
            raise usage.UsageError("cannot read the config file {}: {}".format(
                path, e.strerror or e))
        self["text"] = text
        if self["dry-run"]:
            task.react(lambda reactor: dry_run(reactor, path, text, sys.stdout, runtime_socket)
                       .addCallback(_exit))
        try:
            config, notices = schema.load(text, source=path)
        except configuration.ConfigError as e:
            raise usage.UsageError("invalid config file {}:\n  {}".format(
                path, "\n  ".join(e.problems)))
        self["loaded"] = (config, notices + mode_notices(mode, config))


def _exit(status):
    raise SystemExit(status)


class StartupError(Exception):
    """
    The shim cannot start as configured; the message says why.
    """


def runtime_socket(config, exists=os.path.exists):
    """
    :return: the runtime's socket path: C{cri}, or the one found.
    :raise StartupError: when there is none and C{force} is off.
    """
    try:
        path = config.cri or configuration.detect_cri(exists)
    except configuration.ConfigError as e:
        raise StartupError(e.problems[0])
    if path is not None and exists(path):
        return path
    if not config.force:
        raise StartupError(
            "no CRI socket at {} (is the container runtime running?); set 'force: true' to "
            "start anyway and wait for it".format(
                path or ", ".join(configuration.CRI_SOCKETS)))
    path = path or configuration.CRI_SOCKETS[0]
    log.warn("no CRI socket at {path} yet; starting anyway (force: true): calls fail with "
             "UNAVAILABLE until the runtime answers", path=path)
    return path


def makeService(options, reactor=None):
    """
    Build the service tree: the gRPC server last, so it stops first.

    :raise SystemExit: with a one-line reason when the shim cannot start.
    """
    if reactor is None:
        from twisted.internet import reactor
    config, notices = options["loaded"]
    log_notices(log, options["config"], notices)
    try:
        cri = runtime_socket(config)
        claim_socket(config.shim)
    except (StartupError, SocketInUse) as e:
        # twistd prints a traceback for anything but SystemExit here.
        raise SystemExit("image-cri-shim: {}".format(e))

    metrics = Metrics()
    holder = SnapshotHolder(config, reactor.seconds)
    pool = httputil.pool(reactor)
    registries_http = HTTPClient(agent(reactor, registry_policy(holder, reactor), pool))
    prober = Prober(registries_http, reactor, metrics)
    holder.subscribe(lambda snapshot: (pool.closeCachedConnections(), prober.forget_tokens()))
    # One random source for every timer's jitter, seeded apart on each node.
    uniform = random.SystemRandom().random
    health = RegistryHealthChecker(holder, registries_http, reactor, metrics, uniform)
    resolver = Resolver(prober, on_unreachable=health.report_unreachable,
                        on_reachable=health.report_reachable)
    upstream = Upstream(cri)
    lookup = cancellable_caller(reactor, resolver.lookup)
    report_unreachable = partial(reactor.callFromThread, health.report_unreachable)

    track_pull = pull_tracker(reactor, health.pull_started, health.pull_ended)
    events = EventRecorder(holder, reactor, partial(kube.find_cluster, os.environ),
                           partial(apiclient.http_for, reactor), node_name(os.environ), metrics)
    report_event = partial(reactor.callFromThread, events.record)
    store = NameStore(config.state_dir)
    rewriting = {}
    for package in methods.API:
        images = ImageService(package, upstream, holder, lookup, report_unreachable, metrics,
                              store, report_event, track_pull)
        rewriting.update(images.handlers())
        rewriting.update(NameView(package, upstream, holder, store, images.thd_local_name,
                                  metrics).handlers())
    proxy = ProxyHandler(upstream, rewriting, lambda: holder.current.config.timeout, metrics)

    # Control path first, the gRPC server last: MultiService stops in
    # reverse order, so the server stops taking calls first.
    root = service.MultiService()
    root.setName("image-cri-shim")
    reloader = ConfigReloader(options["config"], holder, reactor, options["text"],
                              metrics=metrics, uniform=uniform)
    reloader.setServiceParent(root)
    poller = ConfigMapSync(options["config"], holder, reloader, reactor,
                           partial(kube.find_cluster, os.environ),
                           partial(apiclient.http_for, reactor), metrics=metrics,
                           uniform=uniform)
    reloader.also_on_sighup(poller.resync)
    poller.setServiceParent(root)
    health.setServiceParent(root)
    events.setServiceParent(root)
    CacheStatsLogger(holder, reactor, uniform).setServiceParent(root)
    ReconcileService(store, partial(thd_image_names, upstream), reactor).setServiceParent(root)
    grpc_server = GrpcServerService(config.shim, proxy, upstream, reactor)
    if config.admin:
        add_readouts(metrics, holder, health, reloader, poller)
        state = AdminState(metrics, holder, health, resolver, reloader, grpc_server, upstream,
                           reactor)
        admin_service(config.admin, AdminResource(state), reactor,
                      config.admin_token_file).setServiceParent(root)
    grpc_server.setServiceParent(root)
    return root
