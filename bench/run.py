#!/usr/bin/env python3
"""
image-cri-shim's cost against containerd itself.

Three ways to reach one real containerd, measured in the same run, in small
interleaved rounds (direct, floor, shim, the order rotating each round) so
that machine noise hits all three alike:

- direct: the client calls containerd's socket;
- floor: bench/floor_proxy.py, the least a Python gRPC proxy can do (grpcio
  sync server relaying raw bytes), as its own process;
- shim: image-cri-shim as a real ``twistd`` process, with an offline registry
  and two mirrors (three sandbox registries, images pushed).

Every figure is a ratio between them (absolute times beside it).  Run as root
(containerd needs it): ``make bench``, or ``.venv/bin/python bench/run.py
--help``.  Every child process is stopped at the end, on Ctrl-C, and when this
process dies; the whole run is bounded by ``--max-seconds``.
"""

import argparse
import asyncio
import datetime
import http.client
import json
import math
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, REPO)
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc  # noqa: E402

from cri_shim.serve import methods  # noqa: E402
from dev import sandbox  # noqa: E402

PACKAGE = "runtime.v1"
API = methods.API[PACKAGE]
VERSION = methods.path(PACKAGE, "RuntimeService", "Version")
LIST_IMAGES = methods.path(PACKAGE, "ImageService", "ListImages")
IMAGE_STATUS = methods.path(PACKAGE, "ImageService", "ImageStatus")
PULL = methods.path(PACKAGE, "ImageService", "PullImage")
REMOVE = methods.path(PACKAGE, "ImageService", "RemoveImage")

TARGETS = ("direct", "floor", "shim")
PHASES = ("latency", "throughput", "coldpull", "hol", "soak", "failover")
MAX_MESSAGE = 16 * 1024 * 1024
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", MAX_MESSAGE),
                   ("grpc.max_send_message_length", MAX_MESSAGE))
ALICE = ("alice", "alice-pw")
BOB = ("bob", "b:o:b-pw")
CALL_TIMEOUT = 30.0
PULL_TIMEOUT = 120.0
START_TIMEOUT = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PY = sys.executable


class BenchError(Exception):
    pass


class Watchdog(BaseException):
    pass


# -- small helpers ---------------------------------------------------------------------------

def status_body(name):
    return API.ImageStatusRequest(image=API.ImageSpec(image=name)).SerializeToString()


def pull_body(name, auth=None):
    request = API.PullImageRequest(image=API.ImageSpec(image=name))
    if auth is not None:
        request.auth.username, request.auth.password = auth
    return request.SerializeToString()


def remove_body(name):
    return API.RemoveImageRequest(image=API.ImageSpec(image=name)).SerializeToString()


def percentile(samples, q):
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def proc_cpu(pid):
    """utime + stime of a process, in seconds (all its threads)."""
    with open("/proc/{}/stat".format(pid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mb(pid, field="VmRSS"):
    """VmRSS (or RssAnon, RssFile) of a process, in MB."""
    with open("/proc/{}/status".format(pid)) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def rss_split(pid):
    return "anon {:.1f} + file {:.1f}".format(proc_rss_mb(pid, "RssAnon"),
                                             proc_rss_mb(pid, "RssFile"))


def proc_threads(pid):
    return len(os.listdir("/proc/{}/task".format(pid)))


def sleep_until(wall):
    delay = wall - time.time()
    if delay > 0:
        time.sleep(delay)


def rotated(k):
    k %= len(TARGETS)
    return TARGETS[k:] + TARGETS[:k]


def log(message, *args):
    stamp = time.strftime("%H:%M:%S")
    print("[{}] {}".format(stamp, message.format(*args) if args else message), flush=True)


# -- child processes --------------------------------------------------------------------------

class Child:
    """
    A helper process: own session (a Ctrl-C meant for make does not kill it
    before the cleanup stops it in order), SIGTERM when this process dies.
    """

    def __init__(self, name, argv, log_path, capture=False, env=(), cwd=REPO):
        self.name = name
        self.cwd = cwd
        self.env = dict(env)
        self.argv = argv
        self.log_path = log_path
        self.capture = capture
        self.process = None
        self._buffer = b""

    def start(self):
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                sandbox.dying_with_parent(self.argv), cwd=self.cwd, stdin=subprocess.PIPE if self.capture == "both" else
                subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.capture else log_file, stderr=log_file,
                env=dict(os.environ, PYTHONUNBUFFERED="1", **self.env), start_new_session=True)
        return self

    @property
    def pid(self):
        return self.process.pid

    def readline(self, timeout):
        """The next line of its stdout, or BenchError after timeout."""
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("{}: no answer in {} s; log:\n{}".format(
                    self.name, timeout, self.log_tail()))
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise BenchError("{} exited ({}); log:\n{}".format(
                        self.name, self.process.poll(), self.log_tail()))
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def expect(self, prefix, timeout=START_TIMEOUT):
        while True:
            line = self.readline(timeout)
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout=10.0):
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def wait_for_socket(path, child, timeout=START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        if os.path.exists(path):
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(path)
                    return
                except OSError:
                    pass
        if child.process.poll() is not None:
            raise BenchError("{} exited with {}:\n{}".format(child.name, child.process.returncode,
                                                            child.log_tail()))
        if time.monotonic() > deadline:
            raise BenchError("{} does not serve on {} after {} s:\n{}".format(
                child.name, path, timeout, child.log_tail()))
        time.sleep(0.02)


class Shim(Child):
    """image-cri-shim as ``twistd -n image-cri-shim --config FILE``."""

    def __init__(self, directory, name, config_text, env=(), tree=REPO):
        self.socket = os.path.join(directory, name + ".sock")
        self.config_path = os.path.join(directory, name + ".yaml")
        self.admin = os.path.join(directory, name + "-admin.sock")
        with open(self.config_path, "w") as f:
            # Each shim its own admin socket: the default one is the host's.
            f.write("shim: {}\nadmin: {}\n".format(self.socket, self.admin) + config_text)
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

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


# -- load workers (separate processes, grpc.aio) --------------------------------------------

class Workers:
    """
    A pool of client processes (``run.py --worker``), each a grpc.aio client
    keeping N calls in flight: the client's CPU is spread over processes and
    kept off this one's GIL.
    """

    def __init__(self, count, directory):
        self.children = [Child("worker{}".format(i), [PY, os.path.abspath(__file__), "--worker"],
                               os.path.join(directory, "worker{}.log".format(i)),
                               capture="both").start() for i in range(count)]
        for child in self.children:
            child.expect("ready")

    def run(self, commands, timeout):
        for child, command in zip(self.children, commands):
            child.process.stdin.write((json.dumps(command) + "\n").encode())
            child.process.stdin.flush()
        return [json.loads(child.readline(timeout)) for child in self.children]

    def close(self):
        for child in self.children:
            child.stop()


def worker_main():
    asyncio.run(_worker())


async def _worker():
    loop = asyncio.get_running_loop()
    channels = {}
    print("ready", flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        result = await _worker_load(command, channels)
        print(json.dumps(result), flush=True)
    for channel in channels.values():
        await channel.close()


async def _worker_load(command, channels):
    loop = asyncio.get_running_loop()
    path = command["socket"]
    channel = channels.get(path)
    if channel is None:
        channel = channels[path] = grpc.aio.insecure_channel("unix:" + path,
                                                             options=CHANNEL_OPTIONS)
    calls = []
    for spec in command["calls"]:
        bodies = [bytes.fromhex(b) for b in spec.get("bodies", [spec.get("body", "")])]
        calls.append((channel.unary_unary(spec["path"]), bodies, spec.get("absent", False),
                      spec.get("timeout", CALL_TIMEOUT)))
    counters = {"unique": 0}

    def body_of(index):
        _, bodies, absent, _ = calls[index]
        if absent:
            counters["unique"] += 1
            return status_body("bench/absent-{}-{}:v1".format(os.getpid(), counters["unique"]))
        counters[index] = counters.get(index, -1) + 1
        return bodies[counters[index] % len(bodies)]

    for index, (call, _, absent, timeout) in enumerate(calls):
        if not absent and len(calls[index][1]) == 1:
            for _ in range(command.get("warmup", 20)):
                await call(calls[index][1][0], timeout=timeout)
    await asyncio.sleep(max(0.0, command["start_at"] - time.time()))
    cpu0 = _self_cpu()
    end = loop.time() + command["duration"]
    latencies, errors = [], []

    async def client(offset):
        i = offset
        while loop.time() < end:
            index = i % len(calls)
            i += 1
            call, _, _, timeout = calls[index]
            started = loop.time()
            try:
                await call(body_of(index), timeout=timeout)
            except grpc.aio.AioRpcError as e:
                errors.append("{}: {}".format(e.code().name, e.details()))
            finished = loop.time()
            if finished <= end:
                latencies.append(finished - started)

    await asyncio.gather(*[client(k) for k in range(command["concurrency"])])
    return {"count": len(latencies), "errors": len(errors), "error": errors[:1],
            "cpu": _self_cpu() - cpu0, "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99)}


def _self_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the benchmark ----------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.sandbox = sandbox.Sandbox(registries=[ALICE, BOB, None])
        self.dir = self.sandbox.directory
        self.children = []
        self.channels = {}
        self.figures = {}
        self.notes = []
        self.shim = None
        self.rss, self.rss_parts = {}, {}
        self.runtime = "?"
        self.images_listed = 0
        self.load = "?"
        self.shim_threads = 0
        self.floor_rss = None

    # -- setup -------------------------------------------------------------------------------

    def child(self, name, argv, capture=False):
        child = Child(name, argv, os.path.join(self.dir, name + ".log"), capture).start()
        self.children.append(child)
        return child

    def start(self):
        args = self.args
        self.load = loadavg()
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
        self.shim = Shim(self.dir, "shim", self.config(self.r0.url), self.shim_env(),
                         self.args.shim_tree).start()
        self.children.append(self.shim)
        self.sockets = {"direct": self.containerd.socket, "floor": self.floor_socket,
                        "shim": self.shim.socket}
        for target, path in self.sockets.items():
            self.channels[target] = grpc.insecure_channel("unix:" + path,
                                                          options=CHANNEL_OPTIONS)
        self.prime()

    def shim_env(self):
        return dict(item.split("=", 1) for item in self.args.shim_env)

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

    def prime(self):
        """Pull what the measurements need: nginx through the shim (a warm rewrite), the
        rest directly (present locally, no decision cached)."""
        self.call("shim", PULL, pull_body("nginx:latest"), PULL_TIMEOUT)
        for name, auth in (("library/redis:7", ALICE), ("bench/coldpull:base", ALICE),
                           ("bench/failover:base", ALICE)):
            self.call("direct", PULL, pull_body("{}/{}".format(self.r0.host, name), auth),
                      PULL_TIMEOUT)
        version = API.VersionResponse.FromString(self.call("direct", VERSION, b""))
        self.runtime = "{} {}".format(version.runtime_name, version.runtime_version)
        self.rss, self.rss_parts = {}, {}
        self.note_rss("start")

    def note_rss(self, label, value=None):
        self.rss[label] = proc_rss_mb(self.shim.pid) if value is None else value
        self.rss_parts[label] = "{}; {} threads".format(rss_split(self.shim.pid),
                                                       proc_threads(self.shim.pid))

    # -- latency -----------------------------------------------------------------------------

    def latency_cases(self):
        r0 = self.r0.host
        same = lambda body: {t: body for t in TARGETS}  # noqa: E731
        return [
            ("Version", "pass-through", VERSION,
             same(API.VersionRequest(version="0.1.0").SerializeToString())),
            ("ListImages", "pass-through", LIST_IMAGES,
             same(API.ListImagesRequest().SerializeToString())),
            ("ImageStatus warm", "warm rewrite", IMAGE_STATUS,
             {"direct": status_body(r0 + "/library/nginx:latest"),
              "floor": status_body(r0 + "/library/nginx:latest"),
              "shim": status_body("nginx:latest")}),
            ("ImageStatus cold", "cold rewrite", IMAGE_STATUS,
             {"direct": status_body(r0 + "/library/redis:7"),
              "floor": status_body(r0 + "/library/redis:7"),
              "shim": status_body("redis:7")}),
            ("ImageStatus absent", "cold, nowhere", IMAGE_STATUS,
             {"direct": status_body("docker.io/bench/absent:v1"),
              "floor": status_body("docker.io/bench/absent:v1"),
              "shim": status_body("bench/absent:v1")}),
        ]

    def measure_latency(self):
        a = self.args
        rounds = math.ceil(a.calls / a.round)
        for label, kind, path, bodies in self.latency_cases():
            calls = {t: self.channels[t].unary_unary(path) for t in TARGETS}
            answers = {}
            for t in TARGETS:
                for _ in range(a.warmup):
                    answers[t] = calls[t](bodies[t], timeout=CALL_TIMEOUT)
            if label.startswith("ImageStatus"):
                # The shim must hand back what containerd says of the local name.
                if not answers["shim"] == answers["direct"] == answers["floor"]:
                    raise BenchError("{}: the shim's answer differs from containerd's".format(
                        label))
            samples = {t: [] for t in TARGETS}
            clock = time.perf_counter
            for k in range(rounds):
                for t in rotated(k):
                    call, body, out = calls[t], bodies[t], samples[t]
                    for _ in range(a.round):
                        t0 = clock()
                        call(body, timeout=CALL_TIMEOUT)
                        out.append(clock() - t0)
            self.figures[label] = {
                t: {"p50": percentile(s, 0.5), "p99": percentile(s, 0.99), "n": len(s)}
                for t, s in samples.items()}
            self.figures[label]["kind"] = kind
            self.figures[label]["bytes"] = len(answers["direct"])
            f = self.figures[label]
            log("{:<20} p50 direct {:.0f} us, floor {:.0f} us, shim {:.0f} us ({} calls each)",
                label, f["direct"]["p50"] * 1e6, f["floor"]["p50"] * 1e6,
                f["shim"]["p50"] * 1e6, len(samples["shim"]))
        self.images_listed = len(API.ListImagesResponse.FromString(
            self.call("direct", LIST_IMAGES, b"")).images)

    # -- throughput --------------------------------------------------------------------------

    def measure_throughput(self, workers):
        a = self.args
        per = a.clients // a.client_procs
        cases = [("Version", VERSION, {t: API.VersionRequest(version="0.1.0")
                                       .SerializeToString() for t in TARGETS}),
                 ("ImageStatus warm", IMAGE_STATUS,
                  {"direct": status_body(self.r0.host + "/library/nginx:latest"),
                   "floor": status_body(self.r0.host + "/library/nginx:latest"),
                   "shim": status_body("nginx:latest")})]
        pids = {"floor": self.floor.pid, "shim": self.shim.pid,
                "containerd": self.containerd.process.pid}
        for label, path, bodies in cases:
            totals = {t: {"count": 0, "seconds": 0.0, "errors": 0, "cpu": {}, "client": 0.0,
                          "p50": [], "p99": []} for t in TARGETS}
            for k in range(a.tp_rounds):
                for t in rotated(k):
                    start_at = time.time() + 1.0
                    command = {"socket": self.sockets[t], "concurrency": per,
                               "start_at": start_at, "duration": a.tp_seconds,
                               "calls": [{"path": path, "body": bodies[t].hex()}]}
                    done = []
                    thread = threading.Thread(target=lambda: done.append(workers.run(
                        [command] * a.client_procs, a.tp_seconds + 60)))
                    thread.start()
                    sleep_until(start_at)
                    cpu0 = {name: proc_cpu(pid) for name, pid in pids.items()}
                    sleep_until(start_at + a.tp_seconds)
                    cpu1 = {name: proc_cpu(pid) for name, pid in pids.items()}
                    thread.join(a.tp_seconds + 90)
                    if not done:
                        raise BenchError("the load workers did not answer")
                    total = totals[t]
                    for result in done[0]:
                        total["count"] += result["count"]
                        total["errors"] += result["errors"]
                        total["client"] += result["cpu"]
                        total["p50"].append(result["p50"])
                        total["p99"].append(result["p99"])
                        if result["errors"]:
                            self.notes.append("throughput {} {}: {} errors, e.g. {}".format(
                                label, t, result["errors"], result["error"]))
                    total["seconds"] += a.tp_seconds
                    for name in pids:
                        total["cpu"][name] = total["cpu"].get(name, 0.0) + cpu1[name] - cpu0[name]
            figure = self.figures["throughput " + label] = {}
            for t, total in totals.items():
                figure[t] = {"rate": total["count"] / total["seconds"], "calls": total["count"],
                             "errors": total["errors"],
                             "cpu_per_1000": {name: cpu / total["count"] * 1000
                                              for name, cpu in total["cpu"].items()},
                             "client_per_1000": total["client"] / total["count"] * 1000,
                             "cores": dict({name: cpu / total["seconds"]
                                            for name, cpu in total["cpu"].items()},
                                           clients=total["client"] / total["seconds"]),
                             "p50": max(total["p50"]), "p99": max(total["p99"])}
            log("throughput {:<16} direct {:.0f}/s, floor {:.0f}/s, shim {:.0f}/s", label,
                figure["direct"]["rate"], figure["floor"]["rate"], figure["shim"]["rate"])
        self.note_rss("after throughput")

    # -- cold pull ---------------------------------------------------------------------------

    def measure_cold_pull(self):
        a = self.args
        samples = {t: [] for t in TARGETS}
        scraped = self.shim.metrics()
        for k in range(a.cold_pulls):
            for t in rotated(k):
                tag = self.cold_tags[t][k]
                if t == "shim":
                    body = pull_body("bench/coldpull:" + tag)
                else:
                    body = pull_body("{}/bench/coldpull:{}".format(self.r0.host, tag), ALICE)
                t0 = time.perf_counter()
                self.call(t, PULL, body, PULL_TIMEOUT)
                samples[t].append(time.perf_counter() - t0)
        text = self.shim.log_text()
        moved = text.count("PullImage bench/coldpull:c")
        if moved < a.cold_pulls:
            self.notes.append("cold pull: only {} of {} shim pulls logged".format(
                moved, a.cold_pulls))
        self.figures["PullImage cold"] = {
            t: {"p50": percentile(s, 0.5), "p90": percentile(s, 0.9), "max": max(s),
                "n": len(s)} for t, s in samples.items()}
        after = self.shim.metrics()
        names = {self.r0.host: "offline", self.r1.host: "mirror 1", self.slow_host: "mirror 2"}
        probes = metric_means(scraped, after, "image_cri_shim_probe_duration_seconds",
                              lambda labels: labels.get("kind") == "manifest")
        pulls = metric_means(scraped, after, "image_cri_shim_call_duration_seconds",
                             lambda labels: labels.get("method") == "PullImage")
        self.figures["PullImage cold"]["shim metrics"] = "; ".join(
            ["manifest probes, mean: " + ", ".join(
                "{} {} ({} probes)".format(names.get(dict(labels)["registry"],
                                                     dict(labels)["registry"]), ms(mean), count)
                for labels, (count, mean) in sorted(probes.items()))] +
            ["PullImage served in {} on average ({} calls)".format(ms(mean), count)
             for labels, (count, mean) in pulls.items()]) if probes else ""
        f = self.figures["PullImage cold"]
        log("PullImage cold       p50 direct {:.1f} ms, floor {:.1f} ms, shim {:.1f} ms",
            f["direct"]["p50"] * 1e3, f["floor"]["p50"] * 1e3, f["shim"]["p50"] * 1e3)

    # -- head-of-line ------------------------------------------------------------------------

    def measure_hol(self):
        a = self.args
        figure = self.figures["head-of-line"] = {t: {"idle": [], "busy": [], "settled": [],
                                                     "pulls": [], "errors": 0}
                                                 for t in TARGETS}
        r0 = self.r0.host
        status = {"direct": status_body(r0 + "/library/nginx:latest"),
                  "floor": status_body(r0 + "/library/nginx:latest"),
                  "shim": status_body("nginx:latest")}
        for k in range(a.hol_rounds):
            for t in rotated(k):
                tag = "{}-r{}".format(t, k)
                local = ["{}/bench/hol-{}:{}".format(self.slow_host, i, tag)
                         for i in range(a.hol_pulls)]
                names = local if t != "shim" else [
                    "bench/hol-{}:{}".format(i, tag) for i in range(a.hol_pulls)]
                self.hol_round(t, status[t], names, local, figure[t])
        for t in TARGETS:
            f = figure[t]
            f["idle_p99"] = percentile(f["idle"], 0.99)
            f["busy_p99"] = percentile(f["busy"], 0.99)
            f["settled_p99"] = percentile(f["settled"], 0.99)
            f["idle_p50"] = percentile(f["idle"], 0.5)
            f["busy_p50"] = percentile(f["busy"], 0.5)
            f["pull_p50"] = percentile(f["pulls"], 0.5)
            f["pull_min"] = min(f["pulls"]) if f["pulls"] else float("nan")
            f["n"] = len(f["busy"])
            log("head-of-line {:<6} ImageStatus p99 idle {:.2f} ms, with {} pulls {:.2f} ms "
                "({} samples); pulls took {:.1f} s (median)", t, f["idle_p99"] * 1e3,
                a.hol_pulls, f["busy_p99"] * 1e3, f["n"], f["pull_p50"])
        self.note_rss("after head-of-line")
        self.shim_threads = proc_threads(self.shim.pid)

    def hol_round(self, target, status, names, local, out):
        a = self.args
        call = self.channels[target].unary_unary(IMAGE_STATUS)
        clock = time.perf_counter
        for _ in range(a.hol_idle_calls):
            t0 = clock()
            call(status, timeout=CALL_TIMEOUT)
            out["idle"].append(clock() - t0)
        pull = self.channels[target].unary_unary(PULL)
        lock = threading.Lock()
        state = {"in_flight": len(names), "ended": []}
        launched = clock()

        def done(future):
            with lock:
                state["in_flight"] -= 1
                state["ended"].append((clock() - launched, future.exception()))

        futures = [pull.future(pull_body(name), timeout=PULL_TIMEOUT) for name in names]
        for future in futures:
            future.add_done_callback(done)
        deadline = launched + PULL_TIMEOUT
        while state["in_flight"] == len(names) and clock() < deadline:
            t0 = clock()
            call(status, timeout=CALL_TIMEOUT)
            elapsed = clock() - t0
            if state["in_flight"] == len(names):
                out["busy"].append(elapsed)
                if t0 - launched > 1.0:
                    out["settled"].append(elapsed)
        for future in futures:
            try:
                future.result(timeout=max(deadline - clock(), 1.0))
            except grpc.RpcError:
                pass
        for seconds, error in state["ended"]:
            out["pulls"].append(seconds)
            if error is not None:
                out["errors"] += 1
                if out["errors"] == 1:
                    self.notes.append("head-of-line {}: pull failed: {}".format(
                        target, getattr(error, "details", lambda: error)()))
        for name in local:
            try:
                self.call("direct", REMOVE, remove_body(name))
            except grpc.RpcError:
                pass

    # -- soak --------------------------------------------------------------------------------

    def soak(self, workers):
        a = self.args
        pull_tags = [pull_body("bench/soakpull:" + tag).hex() for tag in self.soak_tags]
        calls = [
            {"path": VERSION, "body": API.VersionRequest(version="0.1.0").SerializeToString()
             .hex()},
            {"path": LIST_IMAGES, "body": ""},
            {"path": IMAGE_STATUS, "body": status_body("nginx:latest").hex()},
            {"path": IMAGE_STATUS, "body": status_body("redis:7").hex()},
            {"path": IMAGE_STATUS, "absent": True},
            {"path": PULL, "body": pull_body("nginx:latest").hex(), "timeout": PULL_TIMEOUT},
            {"path": REMOVE, "body": remove_body("bench/absent:v9").hex()},
        ]
        procs = a.client_procs
        per = max(a.soak_concurrency // procs, 1)
        commands = []
        for i in range(procs):
            mine = calls + [{"path": PULL, "bodies": pull_tags[i::procs],
                             "timeout": PULL_TIMEOUT}] if pull_tags[i::procs] else calls
            commands.append({"socket": self.shim.socket, "concurrency": per,
                             "start_at": time.time() + 1.0, "duration": a.soak,
                             "calls": mine, "warmup": 5})
        start_at = commands[0]["start_at"]
        done = []
        thread = threading.Thread(target=lambda: done.append(workers.run(commands, a.soak + 120)))
        thread.start()
        sleep_until(start_at)
        cpu0 = proc_cpu(self.shim.pid)
        samples = []
        step = max(min(a.soak / 20.0, 30.0), 1.0)
        while time.time() < start_at + a.soak:
            samples.append((time.time() - start_at, proc_rss_mb(self.shim.pid)))
            time.sleep(min(step, max(start_at + a.soak - time.time(), 0.01)))
        samples.append((time.time() - start_at, proc_rss_mb(self.shim.pid)))
        cpu1 = proc_cpu(self.shim.pid)
        thread.join(a.soak + 150)
        if not done:
            raise BenchError("the soak workers did not answer")
        count = sum(r["count"] for r in done[0])
        errors = sum(r["errors"] for r in done[0])
        if errors:
            self.notes.append("soak: {} errors, e.g. {}".format(
                errors, [r["error"] for r in done[0] if r["error"]][0]))
        # Growth from the first sample past the first tenth (warm-up) to the end.
        settle = [rss for when, rss in samples if when >= a.soak / 10.0] or [samples[-1][1]]
        self.figures["soak"] = {"seconds": a.soak, "calls": count, "errors": errors,
                                "rss_start": settle[0], "rss_end": samples[-1][1],
                                "rss_max": max(rss for _, rss in samples),
                                "rss_min": min(rss for _, rss in samples),
                                "growth": samples[-1][1] - settle[0],
                                "cpu_per_1000": (cpu1 - cpu0) / max(count, 1) * 1000,
                                "samples": samples}
        self.note_rss("end of soak", samples[-1][1])
        log("soak {:.0f} s: {} calls, RSS {:.1f} -> {:.1f} MB", a.soak, count, settle[0],
            samples[-1][1])

    # -- profile (optional) ------------------------------------------------------------------

    def profile(self, workers):
        spy = shutil.which("py-spy") or os.path.join(os.path.dirname(PY), "py-spy")
        if not os.path.exists(spy):
            self.notes.append("--profile: py-spy not found (pip install py-spy)")
            return
        a = self.args
        results = {}
        # Kept after the run (the sandbox directory is not): flamegraph.pl input.
        self.profile_dir = tempfile.mkdtemp(prefix="ics-bench-profile-")
        for label, path, body in (
                ("Version", VERSION, API.VersionRequest(version="0.1.0").SerializeToString()),
                ("ImageStatus warm", IMAGE_STATUS, status_body("nginx:latest"))):
            raw = os.path.join(self.profile_dir, "profile-{}.txt".format(
                label.split()[0].lower()))
            seconds = 10
            command = {"socket": self.shim.socket, "concurrency": a.clients // a.client_procs,
                       "start_at": time.time() + 1.0, "duration": seconds + 3,
                       "calls": [{"path": path, "body": body.hex()}]}
            done = []
            thread = threading.Thread(target=lambda: done.append(workers.run(
                [command] * a.client_procs, seconds + 60)))
            thread.start()
            sleep_until(command["start_at"] + 1)
            # --gil: only samples of the thread holding the GIL, i.e. where the
            # shim's Python time goes (it is one core at most).
            subprocess.run([spy, "record", "--pid", str(self.shim.pid), "-d", str(seconds),
                            "-r", "200", "--format", "raw", "-o", raw, "--nonblocking",
                            "--gil", "--full-filenames"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=seconds + 60)
            thread.join(seconds + 90)
            results[label] = summarize_profile(raw)
        self.figures["profile"] = results

    # -- failover ----------------------------------------------------------------------------

    def measure_failover(self):
        a = self.args
        hole = self.child("blackhole", [PY, os.path.join(BENCH, "blackhole.py"), self.r0.host],
                          True)
        hole_host = "127.0.0.1:" + hole.expect("port")
        shim = Shim(self.dir, "shim-failover", self.config("http://" + hole_host),
                   self.shim_env(), self.args.shim_tree).start()
        self.children.append(shim)
        channel = grpc.insecure_channel("unix:" + shim.socket, options=CHANNEL_OPTIONS)
        pull = channel.unary_unary(PULL)
        direct = self.channels["direct"].unary_unary(PULL)
        r1 = self.r1.host
        before, after, baseline, marks = [], [], [], []
        tags = {name: iter(values) for name, values in self.failover_tags.items()}

        def timed(call, body):
            t0 = time.perf_counter()
            call(body, timeout=PULL_TIMEOUT)
            return time.perf_counter() - t0

        def wait_state(state, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                current, reason = health_state(shim.log_text(), hole_host)
                if current == state:
                    return reason
                time.sleep(0.02)
            raise BenchError("registry {} not {} after {} s:\n{}".format(
                hole_host, state, timeout, shim.log_tail()))

        try:
            for _ in range(a.failover_cycles):
                wait_state("up", 30 + 8 * a.health_interval)
                os.kill(hole.pid, signal.SIGUSR1)
                hole.expect("mode hole", 5)
                before.append(timed(pull, pull_body("bench/failover:" + next(tags["before"]))))
                marks.append(wait_state("down", a.probe_timeout + 5))
                for _ in range(a.failover_after):
                    after.append(timed(pull, pull_body("bench/failover:" + next(tags["after"]))))
                    baseline.append(timed(direct, pull_body(
                        "{}/bench/failover:{}".format(r1, next(tags["direct"])), BOB)))
                os.kill(hole.pid, signal.SIGUSR2)
                hole.expect("mode relay", 5)
        finally:
            channel.close()
        text = shim.log_text()
        moved = len(re.findall(r"PullImage bench/failover:\S+ -> {}/".format(re.escape(r1)),
                               text))
        expected = len(before) + len(after)
        if moved != expected:
            self.notes.append("failover: {} of {} pulls went to the second registry".format(
                moved, expected))
        self.figures["failover"] = {
            "before": before, "after": after, "direct": baseline, "marks": marks,
            "probe_timeout": a.probe_timeout, "interval": a.health_interval}
        log("failover: before detection max {:.2f} s, after max {:.3f} s (direct {:.3f} s)",
            max(before), max(after), max(baseline))
        shim.stop()
        hole.stop()

    # -- cleanup -----------------------------------------------------------------------------

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


_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


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


_HEALTH_LINE = re.compile(r"registry (\S+): (\w+) -> (\w+) \((.*)\)")


def health_state(text, name):
    state = reason = None
    for match in _HEALTH_LINE.finditer(text):
        if match.group(1) == name:
            state, reason = match.group(3), match.group(4)
    return state, reason


_CATEGORIES = (("/cri_shim/", "cri_shim"), ("/twisted/logger/", "twisted.logger"),
               ("/twisted/", "twisted (reactor, treq)"), ("/treq/", "twisted (reactor, treq)"),
               ("/grpc/", "grpc (Python layer)"), ("/google/protobuf/", "protobuf"),
               ("/threading.py", "threads, locks, queues"),
               ("/concurrent/futures/", "threads, locks, queues"),
               ("/queue.py", "threads, locks, queues"))
_BOOTSTRAP = ("/threading.py", "/concurrent/futures/thread.py")


def summarize_profile(path, top=14):
    """
    Top frames of py-spy's raw (collapsed) output: own time by frame and by
    component, inclusive time by frame (thread bootstrap frames left out).
    """
    own, inclusive, parts, ours, total = {}, {}, {}, {}, 0
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        count = int(count)
        frames = stack.split(";")
        if frames and frames[0].startswith(("process ", "thread ")):
            frames = frames[1:]
        if not frames:
            continue
        total += count
        innermost = frames[-1]
        part = next((name for key, name in _CATEGORIES if key in innermost), "other")
        parts[part] = parts.get(part, 0) + count
        own[_short(innermost)] = own.get(_short(innermost), 0) + count
        for frame in set(frames):
            if not any(key in frame for key in _BOOTSTRAP):
                inclusive[_short(frame)] = inclusive.get(_short(frame), 0) + count
            if "/cri_shim/" in frame or "/twisted/" in frame:
                ours[_short(frame)] = ours.get(_short(frame), 0) + count
    if not total:
        return None
    rank = lambda table: [(frame, count / total) for frame, count in  # noqa: E731
                          sorted(table.items(), key=lambda item: -item[1])[:top]]
    return {"samples": total, "self": rank(own), "inclusive": rank(inclusive),
            "parts": rank(parts), "ours": rank(ours)}


def _short(frame):
    """C{func (/long/path/pkg/file.py:12)} -> C{func (pkg/file.py:12)}."""
    return re.sub(r" \((?:[^()]*/)?([^()/]+/[^()/]+)\)", r" (\1)", frame)


# -- the report -----------------------------------------------------------------------------

def us(seconds):
    return "{:.0f} µs".format(seconds * 1e6)


def ms(seconds):
    return "{:.1f} ms".format(seconds * 1e3)


def verdict(ok):
    return "**PASS**" if ok else "**MISS**"


def render(bench, args, started, finished):
    f = bench.figures
    rows = []

    def row(name, direct, floor, shim, by_floor, by_direct, target="", ok=None):
        rows.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            name, direct, floor, shim, by_floor, by_direct, target,
            "" if ok is None else verdict(ok)))

    def ratio(a, b):
        return "{:.2f}×".format(a / b) if b else "–"

    targets = {"Version": 1.10, "ListImages": 1.10, "ImageStatus warm": 1.25}
    for label, _, _, _ in bench.latency_cases():
        figure = f.get(label)
        if figure is None:
            continue
        for q in ("p50", "p99"):
            d, fl, s = (figure[t][q] for t in TARGETS)
            limit = targets.get(label) if q == "p50" else None
            row("{} {} ({})".format(label, q, figure["kind"]), us(d), us(fl), us(s),
                ratio(s, fl), ratio(s, d),
                "≤ {:.2f}× floor".format(limit) if limit else "",
                s / fl <= limit if limit else None)
    cold = f.get("PullImage cold")
    if cold:
        for q in ("p50", "p90"):
            d, fl, s = (cold[t][q] for t in TARGETS)
            row("PullImage cold rewrite {} (image present)".format(q), ms(d), ms(fl), ms(s),
                ratio(s, fl), ratio(s, d))
    for label in ("Version", "ImageStatus warm"):
        tp = f.get("throughput " + label)
        if tp is None:
            continue
        d, fl, s = (tp[t]["rate"] for t in TARGETS)
        row("throughput {}, {} clients".format(label, args.clients),
            "{:.0f}/s".format(d), "{:.0f}/s".format(fl), "{:.0f}/s".format(s),
            ratio(s, fl), ratio(s, d), "≥ 0.90× floor", s / fl >= 0.9)
        fc, sc = tp["floor"]["cpu_per_1000"]["floor"], tp["shim"]["cpu_per_1000"]["shim"]
        row("proxy CPU s per 1000 {} calls".format(label), "–", "{:.3f} s".format(fc),
            "{:.3f} s".format(sc), ratio(sc, fc), "–")
    hol = f.get("head-of-line")
    if hol:
        cells = ["{} → {} (×{:.2f})".format(ms(hol[t]["idle_p99"]), ms(hol[t]["busy_p99"]),
                                            hol[t]["busy_p99"] / hol[t]["idle_p99"])
                 for t in TARGETS]
        shim_ratio = hol["shim"]["busy_p99"] / hol["shim"]["idle_p99"]
        row("ImageStatus p99, idle → {} slow pulls in flight".format(args.hol_pulls), *cells,
            ratio(hol["shim"]["busy_p99"], hol["floor"]["busy_p99"]),
            ratio(hol["shim"]["busy_p99"], hol["direct"]["busy_p99"]),
            "shim ≤ 2× its idle", shim_ratio <= 2.0)
    fo = f.get("failover")
    if fo:
        limit = fo["probe_timeout"] + 0.5
        row("failover cold pull, top registry black-holed, before detection (max of {})"
            .format(len(fo["before"])), "–", "–",
            "{:.2f} s".format(max(fo["before"])), "–", "–",
            "≤ probeTimeout {:g} s + 0.5 s".format(fo["probe_timeout"]),
            max(fo["before"]) <= limit)
        row("failover cold pull, after detection (max of {}; p50 {})".format(
            len(fo["after"]), ms(percentile(fo["after"], 0.5))),
            "{} (max)".format(ms(max(fo["direct"]))), "–",
            ms(max(fo["after"])), "–",
            ratio(max(fo["after"]), max(fo["direct"])), "≤ 0.2 s", max(fo["after"]) <= 0.2)
    if bench.rss:
        after_load = {k: v for k, v in bench.rss.items() if k != "start"}
        worst = max(after_load.values()) if after_load else bench.rss["start"]
        row("shim RSS after load (max of: {})".format(", ".join(
            "{} {:.1f}".format(k, v) for k, v in bench.rss.items())), "–",
            "{:.1f} MB".format(proc_rss_mb_or(bench.floor_rss)), "{:.1f} MB".format(worst),
            "–", "–", "≤ 64 MB", worst <= 64)
    soak = f.get("soak")
    if soak:
        row("soak RSS growth, {:.0f} s of mixed calls ({} calls)".format(
            soak["seconds"], soak["calls"]), "–", "–",
            "{:+.1f} MB ({:.1f} → {:.1f})".format(soak["growth"], soak["rss_start"],
                                                 soak["rss_end"]),
            "–", "–", "< 5 MB", soak["growth"] < 5)

    header = [
        "| figure | direct | floor | shim | shim ÷ floor | shim ÷ direct | target | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    table = "\n".join(header + rows)
    return table, details(bench, args, started, finished, table)


def proc_rss_mb_or(value):
    return value if value is not None else float("nan")


def details(bench, args, started, finished, table):
    f = bench.figures
    out = []
    w = out.append
    w("# image-cri-shim benchmark: the shim against containerd itself\n")
    w("Generated by `make bench` (`bench/run.py`) on {} (took {:.0f} s).\n".format(
        datetime.datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M"),
        finished - started))
    w("| machine | |\n|---|---|")
    w("| cores | {} |".format(os.cpu_count()))
    w("| CPU | {} |".format(cpu_model()))
    w("| kernel | {} |".format(platform.release()))
    w("| Python | {} |".format(platform.python_version()))
    w("| grpcio | {} |".format(grpc.__version__))
    w("| protobuf | {} |".format(_version("google.protobuf")))
    w("| Twisted | {} |".format(_version("twisted")))
    w("| runtime | {} |".format(bench.runtime))
    w("| shim | {} |".format(tree_version(args.shim_tree)))
    w("| command | `{}` |".format(" ".join(["bench/run.py"] + sys.argv[1:])))
    w("| load average (1 min) at start, end | {} |".format(bench.load))
    w("")
    w("**direct**: the client calls containerd's socket. **floor**: `bench/floor_proxy.py`, a "
      "grpcio sync server relaying every method as raw bytes to containerd (no Twisted, no "
      "parsing), its own process. **shim**: image-cri-shim under `twistd -n`, offline "
      "registry (login) + 2 mirrors (one with a login, one anonymous behind "
      "`bench/throttle_proxy.py`), `probeTimeout: {:g}s`. All three measured in the same run "
      "in interleaved rounds ({} calls per target per round, the order rotating), so "
      "machine noise hits them alike: read the ratios, not the absolute times.\n".format(
          args.probe_timeout, args.round))
    w(table)
    w("")
    w("## What each figure is\n")
    lat = f.get("Version")
    if lat:
        w("- **Latency** (p50/p99): one client, one call at a time, {} calls per target after "
          "{} warm-up calls, raw request bytes (the client parses nothing). Pass-through: "
          "`Version` and `ListImages` ({} images, {} bytes per answer). Warm rewrite: "
          "`ImageStatus nginx:latest` after it was pulled through the shim (the shim asks "
          "containerd for the cached name: 1 runtime call). Cold rewrite: `ImageStatus "
          "redis:7`, pulled earlier straight from the offline registry, so no decision is "
          "cached: the shim asks containerd for the name as given (miss), then the offline "
          "name (hit): 2 runtime calls; ImageStatus never probes a registry. \"Absent\": a "
          "name no one has, 1 + 3 runtime calls (the name as asked, then each registry's). "
          "For direct and floor each is the one plain `ImageStatus` of the name containerd "
          "holds.".format(lat["shim"]["n"], args.warmup, bench.images_listed,
                          f["ListImages"]["bytes"]))
    cold = f.get("PullImage cold")
    if cold:
        s, d = cold["shim"]["p50"], cold["direct"]["p50"]
        w("- **PullImage cold rewrite**: {} pulls per target of fresh tags of an image whose "
          "blobs containerd already holds (so the pull itself is a manifest fetch). The shim "
          "gets `bench/coldpull:TAG`: no decision cached, it asks the three registries "
          "(HEAD manifest; Basic-auth registries answer 401 first, so 2 requests each) and "
          "pulls from the offline one with its login. Direct and floor pull the already "
          "rewritten name with the same login. The registry lookup costs the shim "
          "{:.1f} ms at p50 ({} vs {}); max {} / {} / {}.".format(
              cold["shim"]["n"], (s - d) * 1e3, ms(s), ms(d), ms(cold["direct"]["max"]),
              ms(cold["floor"]["max"]), ms(cold["shim"]["max"])))
        if cold.get("shim metrics"):
            w("  The shim's own metrics over these pulls: {}.".format(cold["shim metrics"]))
    tp = f.get("throughput Version")
    if tp:
        w("- **Throughput**: {} clients in flight for {} s × {} rounds per target, from {} "
          "client processes (grpc.aio, {} calls in flight each, raw bytes), interleaved as "
          "above. On {} cores the client cannot be kept off the CPU; it costs {:.3f} CPU s "
          "per 1000 calls (measured in the workers, same for every target), containerd "
          "{:.3f} s direct. The proxy's CPU per 1000 calls is read from /proc/PID/stat "
          "(utime+stime, all threads) over the same window. Latency under that load "
          "(worst round), p50/p99: direct {} / {}, floor {} / {}, shim {} / {}.".format(
              args.clients, args.tp_seconds, args.tp_rounds, args.client_procs,
              args.clients // args.client_procs, os.cpu_count(),
              tp["direct"]["client_per_1000"], tp["direct"]["cpu_per_1000"]["containerd"],
              ms(tp["direct"]["p50"]), ms(tp["direct"]["p99"]), ms(tp["floor"]["p50"]),
              ms(tp["floor"]["p99"]), ms(tp["shim"]["p50"]), ms(tp["shim"]["p99"])))
        cpu = ", ".join("{}: {:.3f}".format(t, tp[t]["cpu_per_1000"]["containerd"])
                        for t in TARGETS)
        w("  containerd's own CPU s per 1000 `Version` calls ({}).".format(cpu))
        w("  Cores kept busy during the `Version` load: " + "; ".join(
            "{}: {}".format(t, ", ".join("{} {:.2f}".format(name, tp[t]["cores"][name])
                                         for name in (["clients", "containerd"] +
                                                      ([t] if t != "direct" else []))))
            for t in TARGETS) + ". A Python proxy is bounded by its GIL (about one core); "
          "the clients are not the limit for floor and shim, they are for direct.")
    hol = f.get("head-of-line")
    if hol:
        w("- **Head-of-line**: {} `PullImage` calls at once of {} different images ({} KiB of "
          "random bytes each) from a registry behind `bench/throttle_proxy.py` "
          "({} KiB/s per connection), so each pull takes seconds (median: direct {:.1f} s, "
          "floor {:.1f} s, shim {:.1f} s; shortest {:.1f} s); meanwhile one client calls "
          "`ImageStatus` (warm) one call at a time. Only calls made while all {} pulls were "
          "in flight count (direct {}, floor {}, shim {} samples); the idle p99 is {} "
          "calls just before, in the same round. The shim's pulls are cold rewrites (all "
          "three registries asked first). Images are removed after each round. Shim threads "
          "afterwards: {}.".format(
              args.hol_pulls, args.hol_pulls, args.hol_layer_kb, args.hol_rate_kb,
              hol["direct"]["pull_p50"], hol["floor"]["pull_p50"], hol["shim"]["pull_p50"],
              min(hol[t]["pull_min"] for t in TARGETS),
              args.hol_pulls, hol["direct"]["n"], hol["floor"]["n"], hol["shim"]["n"],
              args.hol_idle_calls * args.hol_rounds, bench.shim_threads))
        w("  p50 idle → busy: " + ", ".join("{} {} → {}".format(
            t, ms(hol[t]["idle_p50"]), ms(hol[t]["busy_p50"])) for t in TARGETS) + ". "
          "p99 of the busy calls made after the pulls' first second (the shim's registry "
          "lookups are over by then): " + ", ".join("{} {}".format(
              t, ms(hol[t]["settled_p99"])) for t in TARGETS) + ".")
    fo = f.get("failover")
    if fo:
        w("- **Failover**: a second shim whose offline (top-priority) registry is reached "
          "through `bench/blackhole.py`; the image is on it and on the first mirror. Each of "
          "{} cycles: wait until the health checker has it up, black-hole it (connections "
          "accepted, nothing answered, pooled ones included), pull a fresh tag through the "
          "shim (before detection), then {} more fresh tags once the shim has marked it down "
          "(after), each beside a direct pull of the same kind from the mirror; then relay "
          "again. `probeTimeout: {:g}s`, `healthCheck: {{interval: {:g}s, timeout: {:g}s, "
          "failureThreshold: 3}}`. Before: {}. After: {}. Direct: {}. How it was marked "
          "down: {}.".format(
              len(fo["before"]), args.failover_after, fo["probe_timeout"], fo["interval"],
              fo["probe_timeout"], ", ".join("{:.2f} s".format(x) for x in fo["before"]),
              ", ".join("{:.0f}".format(x * 1e3) for x in fo["after"]) + " ms",
              ", ".join("{:.0f}".format(x * 1e3) for x in fo["direct"]) + " ms",
              "; ".join(sorted(set(str(m) for m in fo["marks"])))))
    soak = f.get("soak")
    if soak:
        w("- **RSS and soak**: RSS from /proc/PID/status (VmRSS), MB: " + ", ".join(
            "{} {:.1f} ({})".format(k, v, bench.rss_parts.get(k, "")) for k, v in
            bench.rss.items()) +
          "; floor proxy {:.1f} after its load. Soak: {:.0f} s of {} calls in flight "
          "through the shim, cycling Version, ListImages, ImageStatus (warm, cold, and a "
          "new absent name each time), PullImage nginx:latest (warm), RemoveImage of an "
          "absent image, and PullImage of {} fresh tags (cold, then warm once each was seen). "
          "Growth is measured from the first sample after a tenth of the run to the end; "
          "samples (s: MB): {}. Shim CPU over the soak: {:.3f} s per 1000 calls. "
          "`BENCH_SOAK=600 make bench` runs the 10-minute soak.".format(
              proc_rss_mb_or(bench.floor_rss), soak["seconds"], args.soak_concurrency,
              args.soak_pull_tags,
              ", ".join("{:.0f}: {:.1f}".format(t, r) for t, r in soak["samples"]),
              soak["cpu_per_1000"]))
    prof = f.get("profile")
    if prof:
        w("\n## Profile of the shim (py-spy --gil, 200 Hz, {} clients)\n".format(args.clients))
        for label, summary in prof.items():
            if not summary:
                continue
            w("{} load, {} samples holding the GIL; own time by component:\n".format(
                label, summary["samples"]))
            for title, key in ((None, "parts"), ("own time by frame:\n", "self"),
                               ("inclusive:\n", "inclusive"),
                               ("inclusive, shim and Twisted frames only:\n", "ours")):
                if title is not None:
                    w(title)
                w("```")
                for frame, share in summary[key]:
                    w("{:5.1f}%  {}".format(share * 100, frame))
                w("```")
        w("Raw stacks (py-spy `--format raw`, for flamegraph.pl): {}".format(
            bench.profile_dir))
    if bench.notes:
        w("\n## Notes from the run\n")
        for note in bench.notes:
            w("- " + note)
    return "\n".join(out) + "\n"


def tree_version(tree):
    try:
        commit = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", tree, "status", "--porcelain", "--", "cri_shim",
                                "twisted"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return tree
    return "{} {}{}".format(tree if tree != REPO else "commit", commit or "?",
                            " + uncommitted changes" if dirty else "")


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module):
    try:
        return __import__(module, fromlist=["__version__"]).__version__
    except Exception:
        return "unknown"


# -- main -----------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default=os.path.join(BENCH, "results.md"),
                   help="the Markdown report to write")
    p.add_argument("--calls", type=int, default=2000, help="latency calls per target and case")
    p.add_argument("--warmup", type=int, default=200, help="warm-up calls per target and case")
    p.add_argument("--round", type=int, default=100, help="calls per target per round")
    p.add_argument("--clients", type=int, default=32, help="calls in flight, throughput")
    p.add_argument("--client-procs", type=int, default=2, help="client processes")
    p.add_argument("--tp-seconds", type=float, default=4.0, help="one throughput round")
    p.add_argument("--tp-rounds", type=int, default=3, help="throughput rounds per target")
    p.add_argument("--cold-pulls", type=int, default=60, help="cold PullImage per target")
    p.add_argument("--hol-pulls", type=int, default=64, help="slow pulls in flight")
    p.add_argument("--hol-rounds", type=int, default=2, help="head-of-line rounds per target")
    p.add_argument("--hol-layer-kb", type=int, default=1536, help="layer size, KiB")
    p.add_argument("--hol-rate-kb", type=int, default=384,
                   help="slow registry: KiB/s per connection")
    p.add_argument("--hol-idle-calls", type=int, default=2000,
                   help="ImageStatus calls before each head-of-line round")
    p.add_argument("--probe-timeout", type=float, default=1.0, help="the shims' probeTimeout")
    p.add_argument("--health-interval", type=float, default=2.0,
                   help="the shims' healthCheck.interval")
    p.add_argument("--failover-cycles", type=int, default=5)
    p.add_argument("--failover-after", type=int, default=4,
                   help="pulls after detection per cycle")
    p.add_argument("--soak", type=float, default=float(os.environ.get("BENCH_SOAK", 60)),
                   help="soak seconds (env BENCH_SOAK)")
    p.add_argument("--soak-concurrency", type=int, default=8)
    p.add_argument("--soak-pull-tags", type=int, default=200,
                   help="fresh tags pulled (cold) during the soak")
    p.add_argument("--phases", default=",".join(PHASES),
                   help="the phases to run, of: " + ",".join(PHASES + ("profile",)))
    p.add_argument("--profile", action="store_true",
                   help="also profile the shim under load with py-spy (pip install py-spy)")
    p.add_argument("--shim-env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment for the shims (e.g. MALLOC_ARENA_MAX=2); repeatable")
    p.add_argument("--shim-tree", default=REPO, metavar="DIR",
                   help="run the shim from this work tree (with cri_shim/_proto built): "
                        "A/B a change against the same floor and containerd")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="abort after this long (default: 900 + soak)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.phases = set(args.phases.split(",")) | ({"profile"} if args.profile else set())
    unknown = args.phases - set(PHASES + ("profile",))
    if unknown:
        p.error("unknown phases: " + ", ".join(sorted(unknown)))
    if any("=" not in item for item in args.shim_env):
        p.error("--shim-env takes NAME=VALUE")
    if args.max_seconds is None:
        args.max_seconds = 900 + args.soak
    if args.clients % args.client_procs:
        p.error("--clients must be a multiple of --client-procs")
    return args


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


def _watchdog(signum, frame):
    raise Watchdog()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        return worker_main()
    if os.geteuid() != 0:
        sys.exit("bench/run.py runs containerd, which needs root")
    missing = [b for b in ("containerd", "ctr", "docker-registry", "htpasswd")
               if shutil.which(b) is None]
    if missing:
        sys.exit("missing {}: run make setup as root".format(", ".join(missing)))
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGALRM, _watchdog)
    signal.alarm(int(args.max_seconds))
    started = time.time()
    bench = Bench(args)
    workers = None
    try:
        bench.start()
        phases = args.phases
        if "latency" in phases:
            log("latency: {} calls per target per case, interleaved", args.calls)
            bench.measure_latency()
        workers = Workers(args.client_procs, bench.dir)
        if "throughput" in phases:
            log("throughput: {} clients from {} processes", args.clients, args.client_procs)
            bench.measure_throughput(workers)
            bench.floor_rss = proc_rss_mb(bench.floor.pid)
        if "coldpull" in phases:
            log("cold PullImage: {} per target", args.cold_pulls)
            bench.measure_cold_pull()
        if "hol" in phases:
            log("head-of-line: {} slow pulls", args.hol_pulls)
            bench.measure_hol()
        if "soak" in phases:
            log("soak: {:.0f} s", args.soak)
            bench.soak(workers)
        if "profile" in phases:
            log("profile: py-spy on the shim")
            bench.profile(workers)
        workers.close()
        workers = None
        if "failover" in phases:
            log("failover: {} cycles", args.failover_cycles)
            bench.measure_failover()
    except Watchdog:
        sys.exit("bench/run.py: aborted after --max-seconds {:.0f}".format(args.max_seconds))
    except KeyboardInterrupt:
        print("\nbench/run.py: interrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)
        if workers is not None:
            workers.close()
        bench.cleanup()
    finished = time.time()
    bench.load = "{}, {}".format(bench.load, loadavg())
    table, report = render(bench, args, started, finished)
    with open(args.out, "w") as f:
        f.write(report)
    print()
    print(table)
    print("\nwritten: {}".format(os.path.relpath(args.out, os.getcwd())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
