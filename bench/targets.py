"""
The three targets on one sandbox node: containerd itself (direct), the floor
proxy and the shim (a real ``twistd``), with the registries and images they
serve; started, primed and stopped in order.  Also what a running shim says
of itself: its metrics and the registry health in its log.
"""

import http.client
import os
import re
import socket
import sys
import time

import grpc

from calls import (
    ALICE, API, BENCH, BOB, CALL_TIMEOUT, CHANNEL_OPTIONS, PULL, PULL_TIMEOUT, REPO, TARGETS,
    VERSION, pull_body, status_bodies)
from dev import sandbox
from procs import PY, BenchError, Child, log, wait_for_socket

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_HEALTH_LINE = re.compile(r"registry (\S+): (\w+) -> (\w+) \((.*)\)")


class Shim(Child):
    """image-cri-shim as ``twistd -n image-cri-shim --config FILE``."""

    def __init__(self, directory, name, config_text, env=(), tree=REPO):
        self.socket = os.path.join(directory, name + ".sock")
        self.config_path = os.path.join(directory, name + ".yaml")
        self.admin = os.path.join(directory, name + "-admin.sock")
        with open(self.config_path, "w") as f:
            # Each shim its own admin socket and names store: the default
            # ones are the host's.
            f.write("shim: {}\nadmin: {}\nstateDir: {}\n".format(
                self.socket, self.admin, os.path.join(directory, name + "-state")) + config_text)
        Child.__init__(self, name, [
            PY, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
            "image-cri-shim", "--config", self.config_path],
            os.path.join(directory, name + ".log"), env=env, cwd=tree)

    def start(self):
        Child.start(self)
        wait_for_socket(self.socket, self)
        return self

    def metrics(self):
        """
        The shim's Prometheus samples from its admin socket, as
        C{{(name, ((label, value), ...)): number}}, or C{{}} if it has none.
        """
        class UnixConnection(http.client.HTTPConnection):
            def connect(conn):
                conn.sock = socket.socket(socket.AF_UNIX)
                conn.sock.settimeout(10)
                conn.sock.connect(self.admin)

        try:
            connection = UnixConnection("localhost", timeout=10)
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
            connection.close()
        except OSError:
            return {}
        if response.status != 200:
            return {}
        samples = {}
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match:
                labels = tuple(sorted(_LABEL.findall(match.group(2) or "")))
                samples[(match.group(1), labels)] = float(match.group(3))
        return samples

    def health_state(self, name):
        """
        :return: C{(state, reason)} of the last transition its log shows for
            registry C{name}, or C{(None, None)}.
        """
        state = reason = None
        for match in _HEALTH_LINE.finditer(self.log_text()):
            if match.group(1) == name:
                state, reason = match.group(3), match.group(4)
        return state, reason


def metric_means(before, after, family, keep=lambda labels: True):
    """
    Mean of a histogram over what happened between two scrapes, by label
    set: {labels: (count, mean seconds)}.
    """
    means = {}
    for (name, labels), total in after.items():
        if name != family + "_sum" or not keep(dict(labels)):
            continue
        count = after.get((family + "_count", labels), 0) - before.get(
            (family + "_count", labels), 0)
        if count:
            means[labels] = (int(count), (total - before.get((name, labels), 0)) / count)
    return means


class Node:
    """
    A sandbox node (containerd and three registries: offline with a login,
    a mirror with another, and an anonymous one behind
    C{bench/throttle_proxy.py}), the floor proxy and the shim in front of it.
    """

    def __init__(self, args):
        self.args = args
        self.sandbox = sandbox.Sandbox(registries=[ALICE, BOB, None])
        self.dir = self.sandbox.directory
        self.children = []
        self.channels = {}
        self.shim = None
        self.runtime = "?"

    def child(self, name, argv, capture=False):
        child = Child(name, argv, os.path.join(self.dir, name + ".log"), capture).start()
        self.children.append(child)
        return child

    def start(self):
        args = self.args
        log("sandbox in {}: containerd and three registries", self.dir)
        self.sandbox.start()
        self.r0, self.r1, self.r2 = self.sandbox.registries
        self.containerd = self.sandbox.containerd
        throttle = self.child("throttle", [PY, os.path.join(BENCH, "throttle_proxy.py"),
                                           self.r2.host, str(args.hol_rate_kb * 1024)], True)
        self.slow_host = "127.0.0.1:" + throttle.expect("port")
        self.floor_socket = os.path.join(self.dir, "floor.sock")
        floor = self.child("floor", [PY, os.path.join(BENCH, "floor_proxy.py"),
                                     self.floor_socket, self.containerd.socket])
        wait_for_socket(self.floor_socket, floor)
        self.floor = floor
        self.push_images()
        self.shim = self.start_shim("shim", self.r0.url)
        self.sockets = {"direct": self.containerd.socket, "floor": self.floor_socket,
                        "shim": self.shim.socket}
        for target, path in self.sockets.items():
            self.channels[target] = grpc.insecure_channel("unix:" + path,
                                                          options=CHANNEL_OPTIONS)
        self.prime()

    def start_shim(self, name, offline_url):
        """A shim (stopped with the node) whose offline registry is C{offline_url}."""
        shim = Shim(self.dir, name, self.config(offline_url),
                    dict(item.split("=", 1) for item in self.args.shim_env),
                    self.args.shim_tree).start()
        self.children.append(shim)
        return shim

    def config(self, offline_url):
        a = self.args
        return (
            "cri: {cri}\n"
            "address: {offline}\n"
            "auth: {alice[0]}:{alice[1]}\n"
            "registries:\n"
            "  - address: {r1}\n"
            "    auth: {bob[0]}:{bob[1]}\n"
            "    priority: 600\n"
            "  - address: http://{slow}\n"
            "    priority: 500\n"
            "probeTimeout: {probe}s\n"
            "healthCheck:\n"
            "  interval: {interval}s\n"
            "  timeout: {probe}s\n"
            "  failureThreshold: 3\n"
            "configMap:\n"
            "  enabled: false\n"
        ).format(cri=self.containerd.socket, offline=offline_url, alice=ALICE, bob=BOB,
                 r1=self.r1.url, slow=self.slow_host, probe=a.probe_timeout,
                 interval=a.health_interval)

    def push_images(self):
        a = self.args
        started = time.monotonic()
        self.r0.push_image("library/nginx", "latest", content=b"bench nginx\n")
        self.r0.push_image("library/redis", "7", content=b"bench redis\n")
        for k in range(a.listed_images):
            self.r0.push_image("bench/listed-{}".format(k), "v1",
                               content="bench listed {}\n".format(k).encode("ascii"))
        self.cold_tags = {t: ["c{}-{}".format(k, t) for k in range(a.cold_pulls)]
                          for t in TARGETS}
        push_tags(self.r0, "bench/coldpull", ["base"] + sum(self.cold_tags.values(), []),
                  b"bench cold pull\n")
        self.soak_tags = ["s{}".format(k) for k in range(a.soak_pull_tags)]
        push_tags(self.r0, "bench/soakpull", self.soak_tags, b"bench soak pull\n")
        cycles = a.failover_cycles
        self.failover_tags = {
            "before": ["b{}".format(k) for k in range(cycles)],
            "after": ["a{}".format(k) for k in range(cycles * a.failover_after)],
            "direct": ["d{}".format(k) for k in range(cycles * a.failover_after)]}
        tags = ["base"] + sum(self.failover_tags.values(), [])
        push_tags(self.r0, "bench/failover", tags, b"bench failover\n")
        push_tags(self.r1, "bench/failover", tags, b"bench failover\n")
        self.hol_tags = ["{}-r{}".format(t, k) for k in range(a.hol_rounds) for t in TARGETS]
        layer = a.hol_layer_kb * 1024
        for i in range(a.hol_pulls):
            push_tags(self.r2, "bench/hol-{}".format(i), self.hol_tags,
                      os.urandom(layer))
        log("pushed images in {:.1f} s", time.monotonic() - started)

    def call(self, target, path, body, timeout=CALL_TIMEOUT):
        return self.channels[target].unary_unary(path)(body, timeout=timeout)

    def warm_status(self):
        """C{ImageStatus} of the image pulled through the shim, per target."""
        return status_bodies(self.r0.host + "/library/nginx:latest", "nginx:latest")

    def prime(self):
        """Pull what the measurements need: nginx through the shim (a warm rewrite), the
        rest directly (present locally, no decision cached)."""
        self.call("shim", PULL, pull_body("nginx:latest"), PULL_TIMEOUT)
        # Images the shim shows under the names asked for, for ListImages.
        for k in range(self.args.listed_images):
            self.call("shim", PULL, pull_body("bench/listed-{}:v1".format(k)), PULL_TIMEOUT)
        for name, auth in (("library/redis:7", ALICE), ("bench/coldpull:base", ALICE),
                           ("bench/failover:base", ALICE)):
            self.call("direct", PULL, pull_body("{}/{}".format(self.r0.host, name), auth),
                      PULL_TIMEOUT)
        version = API.VersionResponse.FromString(self.call("direct", VERSION, b""))
        self.runtime = "{} {}".format(version.runtime_name, version.runtime_version)

    def cleanup(self):
        for channel in self.channels.values():
            channel.close()
        self.channels = {}
        for child in reversed(self.children):
            try:
                child.stop()
            except Exception as e:  # keep stopping the others
                print("stopping {}: {}".format(child.name, e), file=sys.stderr)
        self.sandbox.cleanup()


def push_tags(registry, repository, tags, content):
    """Push one image under the first tag, then the same manifest under every other."""
    registry.push_image(repository, tags[0], content=content)
    status, _, manifest = registry.request(
        "GET", "/v2/{}/manifests/{}".format(repository, tags[0]),
        headers={"Accept": sandbox.MANIFEST_MEDIA_TYPE})
    if status != 200:
        raise BenchError("GET manifest {}:{}: {}".format(repository, tags[0], status))
    for tag in tags[1:]:
        status, _, body = registry.request(
            "PUT", "/v2/{}/manifests/{}".format(repository, tag), manifest,
            {"Content-Type": sandbox.MANIFEST_MEDIA_TYPE})
        if status != 201:
            raise BenchError("PUT manifest {}:{}: {} {!r}".format(repository, tag, status,
                                                                   body[:200]))
