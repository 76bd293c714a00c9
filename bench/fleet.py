#!/usr/bin/env python3
"""
What the shim costs a cluster's shared services, per node and for a fleet.

Two measurements run side by side in this one process, on one reactor:

- **fleet**: the shim's real ConfigMap client (L{ConfigMapSync} with its file
  reloader, each node its own config file, snapshot holder and HTTP client)
  instantiated N times against an in-process API server
  (L{cri_shim.testing.FakeAPIServer}, following the real watch contract,
  served by twisted.web on 127.0.0.1), which counts the requests.  Reported:
  requests per second at steady state; the propagation of a change, p50 and
  p99 (from the API server storing it to each node's config being
  published, and the part of it that is the wire: to the node having parsed
  the event); the reconnect storm after an API server restart (peak
  requests per second, how long the reconnections take to spread).
- **idle**: one real shim (C{twistd -n image-cri-shim}, default intervals)
  with a kubeconfig naming an API server fake over HTTPS and two registries
  (counting fakes on 127.0.0.1), left idle: API server requests per
  minute, registry requests per minute per registry, CPU %, RSS.

Both are extrapolated to 5,000 nodes beside the Go shim's figures (one GET
every 15 s, no health checks).  The report goes to bench/results.md, section
"Fleet" (``--quick``: to the temp folder).  ``make bench-fleet``.
"""

import argparse
import base64
import collections
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, REPO)

import yaml  # noqa: E402
from treq.client import HTTPClient  # noqa: E402
from twisted.internet import reactor, ssl  # noqa: E402
from twisted.internet.defer import inlineCallbacks  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402
from twisted.web.client import Agent  # noqa: E402
from twisted.web.server import Site  # noqa: E402

from cri_shim.model import schema  # noqa: E402
from cri_shim.registries import httputil  # noqa: E402
from cri_shim.snapshot import SnapshotHolder  # noqa: E402
from cri_shim.sync.configmap import ConfigMapSync  # noqa: E402
from cri_shim.sync.reloader import ConfigReloader  # noqa: E402
from cri_shim.testing import FakeAPIServer, FakeRegistries, FakeRegistry, make_ca, make_cert  # noqa: E402,E501

NAMESPACE, NAME, KEY = "kube-system", "image-cri-shim", "registries.yaml"
NODES_5000 = 5000
#: The Go shim: one GET of the ConfigMap every reloadInterval (15 s), no
#: health checks.
GO_GET_INTERVAL = 15.0
LOCAL = (b"shim: /run/image-cri-shim.sock\naddress: http://sealos.hub:5000\n"
         b"auth: admin:local-pw\n")


def cluster_text(password, address="http://sealos.hub:5000"):
    return ("sealos:\n  address: {}\n"
            "  auth: {{username: admin, password: {}}}\n".format(address, password))


def log(message, *args):
    print("[{}] {}".format(time.strftime("%H:%M:%S"), message.format(*args)), flush=True)


class _Cluster:
    source = "bench"
    identity = "bench node"

    def __init__(self, server, token):
        self.server = server
        self._token = token

    def headers(self):
        return {"Authorization": ["Bearer " + self._token]}


class _Node:
    """
    One node's ConfigMap client and what the bench reads of it.
    """

    def __init__(self, folder, index, cluster):
        self.path = os.path.join(folder, "node-{}.yaml".format(index))
        with open(self.path, "wb") as f:
            f.write(LOCAL)
        self.holder = SnapshotHolder(schema.load(LOCAL)[0], reactor.seconds)
        self.reloader = ConfigReloader(self.path, self.holder, reactor, LOCAL,
                                       handle_sighup=False)
        self.published = {}
        self.parsed = {}
        self.holder.subscribe(self._published)
        pool = httputil.pool(reactor)
        http = HTTPClient(Agent(reactor, pool=pool))
        self.sync = ConfigMapSync(self.path, self.holder, self.reloader, reactor,
                                  lambda: (cluster, []), lambda _: http)
        # The wire part of the propagation: when this node has parsed an
        # event (the real client's handler, timed on the way in).
        event = self.sync._event

        def timed(settings, kind, thing):
            if kind == "MODIFIED":
                self.parsed[thing["metadata"]["resourceVersion"]] = reactor.seconds()
            return event(settings, kind, thing)
        self.sync._event = timed

    def _published(self, snapshot):
        offline = snapshot.config.offline
        if offline is not None and offline.credentials is not None:
            self.published[offline.credentials.password.reveal()] = reactor.seconds()


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


class Fleet:
    """
    N ConfigMap clients and the API server they share.
    """

    def __init__(self, count, folder):
        self.count = count
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self.api = FakeAPIServer(token="fleet-token", clock=reactor)
        self.api.record = True
        self.site = Site(self.api)
        self.site.noisy = False
        self.port = reactor.listenTCP(0, self.site, backlog=4096, interface="127.0.0.1")
        self.number = self.port.getHost().port
        self.api.set_configmap(NAMESPACE, NAME, {KEY: cluster_text("v0")})
        cluster = _Cluster("http://127.0.0.1:{}".format(self.number), "fleet-token")
        self.nodes = [_Node(folder, i, cluster) for i in range(count)]
        self.changes = []
        self.results = {}

    def requests_between(self, start, end):
        return [entry for entry in self.api.log if start <= entry[0] < end]

    @inlineCallbacks
    def start(self):
        started = reactor.seconds()
        for node in self.nodes:
            node.sync.startService()
        while any("v0" not in node.published for node in self.nodes):
            yield deferLater(reactor, 0.5, lambda: None)
        self.results["start"] = (reactor.seconds() - started, len(self.api.log))
        log("fleet: {} nodes synced in {:.1f} s ({} requests)", self.count,
            reactor.seconds() - started, len(self.api.log))

    @inlineCallbacks
    def change(self, password):
        """
        Change the ConfigMap; wait until every node published it.
        """
        stored = reactor.seconds()
        self.api.set_configmap(NAMESPACE, NAME, {KEY: cluster_text(password)})
        version = self.api.version
        deadline = stored + 120
        while reactor.seconds() < deadline and any(
                password not in node.published for node in self.nodes):
            yield deferLater(reactor, 0.1, lambda: None)
        published = [node.published[password] - stored for node in self.nodes
                     if password in node.published]
        parsed = [node.parsed[version] - stored for node in self.nodes
                  if version in node.parsed]
        self.changes.append((password, published, parsed))
        log("fleet: change {}: published by {} nodes, p50 {:.3f} s, p99 {:.3f} s; "
            "parsed p50 {:.3f} s, p99 {:.3f} s", password, len(published),
            percentile(published, 0.5), percentile(published, 0.99),
            percentile(parsed, 0.5), percentile(parsed, 0.99))

    @inlineCallbacks
    def restart(self, down_seconds, watch_seconds):
        """
        Stop the API server (every connection cut, as a crash), start it
        again after C{down_seconds} with its watch history gone; count
        requests per second for C{watch_seconds}.
        """
        yield self.port.stopListening()
        self.api.drop_watches()
        stopped = reactor.seconds()
        yield deferLater(reactor, down_seconds, lambda: None)
        self.api.compact()
        self.port = reactor.listenTCP(self.number, self.site, backlog=4096,
                                      interface="127.0.0.1")
        restarted = reactor.seconds()
        yield deferLater(reactor, watch_seconds, lambda: None)
        window = self.requests_between(stopped, reactor.seconds())
        per_second = collections.Counter(int(t - restarted) for t, _, _ in window)
        kinds = collections.Counter(kind for _, kind, _ in window)
        seconds = sorted(t - restarted for t, _, _ in window)
        self.results["restart"] = {
            "down": down_seconds, "requests": len(window), "kinds": dict(kinds),
            "peak": max(per_second.values()) if per_second else 0,
            "p95": percentile(seconds, 0.95), "last": seconds[-1] if seconds else None,
            "per_second": sorted(per_second.items()),
        }
        log("fleet: restart: {} requests ({}), peak {}/s, 95% within {:.1f} s, last at "
            "{:.1f} s", len(window), dict(kinds), self.results["restart"]["peak"],
            self.results["restart"]["p95"], seconds[-1] if seconds else -1)

    @inlineCallbacks
    def stop(self):
        for node in self.nodes:
            yield node.sync.stopService()
        yield self.port.stopListening()


@inlineCallbacks
def solo(folder, changes):
    """
    One node alone with its API server: the propagation a node sees when its
    merge has a core to itself, as on a real node.

    :return: the seconds from each change stored to its config published.
    """
    fleet = Fleet(1, os.path.join(folder, "solo"))
    yield fleet.start()
    for index in range(changes):
        yield deferLater(reactor, 0.5, lambda: None)
        yield fleet.change("solo-{}".format(index))
    yield fleet.stop()
    return [p for _, published, _ in fleet.changes for p in published]


class IdleShim:
    """
    One real shim process, idle, with its API server and two registries in
    this process.
    """

    def __init__(self, folder):
        self.folder = folder
        self.api = FakeAPIServer(token="idle-token", clock=reactor)
        ca = make_ca()
        certificate = make_cert(ca, sans=["127.0.0.1"])
        options = ssl.PrivateCertificate.loadPEM(certificate[0] + certificate[1]).options()
        self.api_port = reactor.listenSSL(0, Site(self.api), options, interface="127.0.0.1")
        self.registries = FakeRegistries()
        self.registry_ports = []
        self.fakes = []
        for _ in range(2):
            port = reactor.listenTCP(0, Site(self.registries), interface="127.0.0.1")
            host = "127.0.0.1:{}".format(port.getHost().port)
            self.fakes.append((host, self.registries.add(host, FakeRegistry())))
            self.registry_ports.append(port)
        # The ConfigMap names the same registries as the file.
        self.api.set_configmap(NAMESPACE, NAME, {KEY: cluster_text(
            "idle", "http://" + self.fakes[0][0])})
        kubeconfig = os.path.join(folder, "kubeconfig")
        with open(kubeconfig, "w") as f:
            yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "idle",
                "clusters": [{"name": "idle", "cluster": {
                    "server": "https://127.0.0.1:{}".format(self.api_port.getHost().port),
                    "certificate-authority-data": base64.b64encode(ca[0]).decode("ascii")}}],
                "users": [{"name": "idle", "user": {"token": "idle-token"}}],
                "contexts": [{"name": "idle", "context": {"cluster": "idle", "user": "idle"}}],
            }, f)
        os.chmod(kubeconfig, 0o600)
        self.config = os.path.join(folder, "idle.yaml")
        with open(self.config, "w") as f:
            f.write("shim: {}\ncri: {}\nforce: true\nadmin: {}\naddress: http://{}\n"
                    "registries:\n  - address: http://{}\n".format(
                        os.path.join(folder, "idle.sock"), os.path.join(folder, "none.sock"),
                        os.path.join(folder, "admin.sock"), self.fakes[0][0],
                        self.fakes[1][0]))
        os.chmod(self.config, 0o600)
        environment = dict(os.environ, KUBECONFIG=kubeconfig, HOME=folder, PYTHONPATH=REPO)
        environment.pop("KUBERNETES_SERVICE_HOST", None)
        self.log_path = os.path.join(folder, "idle-shim.log")
        self.process = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "twistd"), "-n", "--pidfile=",
             "image-cri-shim", "--config", self.config],
            cwd=REPO, env=environment, stdout=open(self.log_path, "wb"),
            stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.time()

    def counts(self):
        return (self.api.requests, [len(fake.seen) for _, fake in self.fakes])

    def cpu_seconds(self):
        with open("/proc/{}/stat".format(self.process.pid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self):
        with open("/proc/{}/status".format(self.process.pid)) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    @inlineCallbacks
    def measure(self, settle, seconds):
        """
        Wait C{settle} seconds (the start: the first list and watch, one
        check of each registry), then measure C{seconds} of idling.
        """
        yield deferLater(reactor, settle, lambda: None)
        if self.process.poll() is not None:
            raise RuntimeError("the idle shim exited; see " + self.log_path)
        at_start = self.counts()
        cpu, wall = self.cpu_seconds(), time.time()
        log("idle: after {:.0f} s: API server {} requests, registries {}", settle, *at_start)
        yield deferLater(reactor, seconds, lambda: None)
        api, regs = self.counts()
        minutes = (time.time() - wall) / 60.0
        result = {
            "minutes": minutes, "start": at_start,
            "api_per_min": (api - at_start[0]) / minutes,
            "api_requests": api - at_start[0],
            "registry_requests": [r - s for r, s in zip(regs, at_start[1])],
            "cpu_percent": 100.0 * (self.cpu_seconds() - cpu) / (time.time() - wall),
            "rss_mb": self.rss_mb(),
        }
        log("idle: over {:.1f} min: API server {} requests, registries {}, CPU {:.3f} %, "
            "RSS {:.1f} MB", minutes, result["api_requests"], result["registry_requests"],
            result["cpu_percent"], result["rss_mb"])
        return result

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def report(args, fleet, idle, took, commit):
    n = fleet.count
    start_s, start_requests = fleet.results["start"]
    steady = fleet.results["steady"]
    per_node_min = steady["requests"] / n / (steady["seconds"] / 60.0)
    published = [v for _, p, _ in fleet.changes for v in p]
    parsed = [v for _, _, q in fleet.changes for v in q]
    alone = fleet.results["solo"]
    per_node_p99 = percentile(parsed, 0.99) + percentile(alone, 0.99)
    restart = fleet.results["restart"]
    go_per_node_min = 60.0 / GO_GET_INTERVAL
    lines = [
        "## Fleet",
        "",
        "Generated by `make bench-fleet` (`bench/fleet.py{}`) on {} (took {:.0f} s), commit {}.".format(
            " " + " ".join(sys.argv[1:]) if sys.argv[1:] else "",
            time.strftime("%Y-%m-%d %H:%M"), took, commit),
        "",
        "**Fleet**: the shim's real ConfigMap client (`ConfigMapSync` with its file reloader, "
        "each node its own config file, snapshot and HTTP connection) instantiated **N = {}** "
        "times in one process against an in-process API server (`FakeAPIServer`: list, "
        "watch with bookmarks and `timeoutSeconds`, 410 for a compacted `resourceVersion`) "
        "served by twisted.web on 127.0.0.1, which counts requests. All N start at once. "
        "This process (N clients and the API server) held {:.0f} MB RSS at steady state: "
        "memory did not limit N."
        .format(n, steady["rss_mb"]),
        "",
        "| figure | N = {} measured | per node | 5,000 nodes (extrapolated) | Go shim, 5,000 "
        "nodes | target | |".format(n),
        "|---|---|---|---|---|---|---|",
        "| start: list + watch, requests by the time every node applied the ConfigMap | {} "
        "requests in {:.1f} s | 2 | – | – | | |".format(
            start_requests, start_s),
        "| steady state, {:.0f} min after the start (watch renewals only) | {} requests, "
        "{:.2f}/s | {:.3f} /min | {:.1f}/s | {:.0f}/s (a quorum GET every 15 s) | ≤ 0.2 /node/min "
        "| **{}** |".format(steady["seconds"] / 60.0, steady["requests"],
                            steady["requests"] / steady["seconds"], per_node_min,
                            per_node_min * NODES_5000 / 60.0,
                            NODES_5000 / GO_GET_INTERVAL,
                            "PASS" if per_node_min <= 0.2 else "MISS"),
        "| long-run renewal rate (timeoutSeconds drawn from 300..420 s, mean 360 s) | – | "
        "0.167 /min | 13.9/s | {:.0f}/s | | |".format(NODES_5000 / GO_GET_INTERVAL),
        "| change propagation, API server → event parsed by each node, p50 / p99 "
        "({} changes × {} nodes) | {:.3f} s / {:.3f} s | | | up to 15 s (poll period) | | |".format(
            len(fleet.changes), n, percentile(parsed, 0.5), percentile(parsed, 0.99)),
        "| change propagation, API server → config published (merge, atomic write, "
        "publish), all N nodes in this one process: their N merges share one core and one "
        "thread pool, p50 / p99 | {:.3f} s / {:.3f} s | | | | | |".format(
            percentile(published, 0.5), percentile(published, 0.99)),
        "| change propagation, API server → config published, one node alone ({} "
        "changes), p50 / p99 | | {:.3f} s / {:.3f} s | | | | |".format(
            len(alone), percentile(alone, 0.5), percentile(alone, 0.99)),
        "| **change propagation per node** (each node merging on its own CPU, as in a "
        "cluster): the fleet's wire p99 + one node's p99 | | {:.3f} s | {:.3f} s + "
        "fan-out | up to 15 s | p99 ≤ 2 s | **{}** |".format(
            per_node_p99, per_node_p99, "PASS" if per_node_p99 <= 2.0 else "MISS"),
        "| API server restart ({:.0f} s down, every watch cut, history compacted): "
        "requests | {} ({}) | | | | | |".format(
            restart["down"], restart["requests"], ", ".join(
                "{} {}".format(v, k) for k, v in sorted(restart["kinds"].items()))),
        "| restart: peak requests in one second | {} | | {:.0f} (×{:.1f}) | 333 (the "
        "polls go on; no storm, no backoff) | ≤ N/10 = {} | **{}** |".format(
            restart["peak"], restart["peak"] * NODES_5000 / n, NODES_5000 / n, n // 10,
            "PASS" if restart["peak"] <= n / 10 else "MISS"),
        "| restart: reconnections spread over (95% / last, s after the restart) | "
        "{:.1f} s / {:.1f} s | | | | | |".format(restart["p95"], restart["last"]),
        "",
        "Requests per second after the restart (s: count): " + ", ".join(
            "{}: {}".format(s, c) for s, c in restart["per_second"]) + ".",
        "",
    ]
    if idle is not None:
        regs = idle["registry_requests"]
        lines += [
            "**One idle real shim** (`twistd -n image-cri-shim`, default intervals: "
            "reloadInterval 15s, healthCheck interval 10s, cache stats every minute), a "
            "kubeconfig naming an API server fake over HTTPS, two registries (counting "
            "fakes), no runtime calls, measured over {:.1f} minutes after its start "
            "(at start: {} API server requests, registries {}: the first list and watch, "
            "one `GET /v2/` per registry not seen yet).".format(
                idle["minutes"], idle["start"][0], idle["start"][1]),
            "",
            "| figure | one node | 5,000 nodes (extrapolated) | Go shim, 5,000 nodes | "
            "before (issue 13) | target | |",
            "|---|---|---|---|---|---|---|",
            "| API server requests /min | {:.2f} | {:.1f}/s | {:.0f}/s | 3.7 /min/node "
            "(≈ 300/s) | | |".format(idle["api_per_min"],
                                      idle["api_per_min"] * NODES_5000 / 60.0,
                                      NODES_5000 / GO_GET_INTERVAL),
            "| registry requests /min, per registry | {} | {} | 0 (no health checks) | "
            "6.9 /min/node (≈ 575/s per registry) | 0 over 10 min | **{}** |".format(
                " / ".join("{:.2f}".format(r / idle["minutes"]) for r in regs),
                " / ".join("{:.0f}/s".format(r / idle["minutes"] * NODES_5000 / 60.0)
                           for r in regs),
                "PASS" if not any(regs) and idle["minutes"] >= 10 else "MISS"),
            "| CPU | {:.3f} % of a core | {:.1f} cores | – | 0.17 % | | |".format(
                idle["cpu_percent"], idle["cpu_percent"] * NODES_5000 / 100.0),
            "| RSS | {:.1f} MB | – | – | 72 MB | | |".format(idle["rss_mb"]),
            "",
        ]
    text = "\n".join(lines)
    print(text)
    if args.quick:
        path = os.path.join(tempfile.gettempdir(), "bench-fleet.md")
    else:
        path = os.path.join(BENCH, "results.md")
    _write_section(path, text)
    log("report written to {}", path)


def _write_section(path, text):
    """
    Replace (or add) the "## Fleet" section of C{path}, leaving the rest.
    """
    old = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
    start = old.find("## Fleet\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + 1)
        new = old[:start] + text + (old[end + 1:] if end >= 0 else "")
    with open(path, "w", encoding="utf-8") as f:
        f.write(new.rstrip("\n") + "\n")


def _own_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _commit():
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                       text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


@inlineCallbacks
def main(args):
    began = time.time()
    commit = _commit()
    folder = tempfile.mkdtemp(prefix="bench-fleet-", dir="/dev/shm" if os.path.isdir(
        "/dev/shm") else None)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    reactor.getThreadPool().adjustPoolsize(maxthreads=8)
    idle = fleet = None
    try:
        idle_result = None
        if args.idle > 0:
            idle = IdleShim(folder)
            idle_done = idle.measure(args.idle_settle, args.idle)
            # Its start (first list and watch, first registry checks) is
            # answered before this process gets busy starting the fleet.
            yield deferLater(reactor, 5, lambda: None)
        fleet = Fleet(args.nodes, folder)
        yield fleet.start()
        steady_start = reactor.seconds()
        # Changes in the steady state: the event carries them, no request.
        for index, at in enumerate(args.change_at):
            yield deferLater(reactor, max(steady_start + at - reactor.seconds(), 0),
                             lambda: None)
            yield fleet.change("v{}".format(index + 1))
        yield deferLater(reactor, max(steady_start + args.steady - reactor.seconds(), 0),
                         lambda: None)
        window = fleet.requests_between(steady_start, reactor.seconds())
        fleet.results["steady"] = {"requests": len(window),
                                   "seconds": reactor.seconds() - steady_start,
                                   "rss_mb": _own_rss_mb()}
        log("fleet: steady state: {} requests over {:.0f} s", len(window),
            reactor.seconds() - steady_start)
        yield fleet.restart(args.down, args.after_restart)
        # Alone: the fleet's clients stopped first.
        stopping, fleet = fleet, None
        yield stopping.stop()
        stopping.results["solo"] = yield solo(folder, args.solo_changes)
        if idle is not None:
            idle_result = yield idle_done
        report(args, stopping, idle_result, time.time() - began, commit)
    finally:
        if idle is not None:
            idle.stop()
        if fleet is not None:
            yield fleet.stop()
        shutil.rmtree(folder, ignore_errors=True)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--steady", type=float, default=900.0,
                        help="seconds of steady state after the start")
    parser.add_argument("--change-at", type=float, nargs="*", default=[120, 240, 480, 720],
                        help="seconds into the steady state at which the ConfigMap changes")
    parser.add_argument("--down", type=float, default=5.0,
                        help="seconds the API server is down at its restart")
    parser.add_argument("--after-restart", type=float, default=120.0)
    parser.add_argument("--idle", type=float, default=600.0,
                        help="seconds the idle shim is measured (0: not run)")
    parser.add_argument("--idle-settle", type=float, default=20.0)
    parser.add_argument("--solo-changes", type=int, default=50)
    parser.add_argument("--quick", action="store_true",
                        help="200 nodes, short phases, report to the temp folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.steady, args.change_at = 200, 60.0, [20, 40]
        args.after_restart, args.idle, args.idle_settle = 60.0, 30.0, 10.0
    return args


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    failures = []

    def run():
        d = main(arguments)
        d.addErrback(failures.append)
        d.addBoth(lambda _: reactor.stop())
    reactor.callWhenRunning(run)
    reactor.run()
    if failures:
        failures[0].printTraceback()
        sys.exit(1)
