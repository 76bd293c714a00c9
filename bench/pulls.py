"""
The pulls: cold C{PullImage} rewrites on all three targets, C{ImageStatus}
while slow pulls are in flight (head-of-line), and cold pulls through a shim
whose top registry is black-holed (failover).  Each writes its figures into
the run's record.
"""

import os
import re
import signal
import threading
import time

import grpc

from calls import (
    ALICE, BENCH, BOB, CALL_TIMEOUT, CHANNEL_OPTIONS, IMAGE_STATUS, PULL, PULL_TIMEOUT, REMOVE,
    TARGETS, ms, percentile, pull_body, remove_body, rotated)
from procs import PY, BenchError, log, proc_threads
from targets import metric_means


def measure_cold_pull(node, record):
    a = node.args
    shim = node.shim
    samples = {t: [] for t in TARGETS}
    scraped = shim.metrics()
    for k in range(a.cold_pulls):
        for t in rotated(k):
            tag = node.cold_tags[t][k]
            if t == "shim":
                body = pull_body("bench/coldpull:" + tag)
            else:
                body = pull_body("{}/bench/coldpull:{}".format(node.r0.host, tag), ALICE)
            t0 = time.perf_counter()
            node.call(t, PULL, body, PULL_TIMEOUT)
            samples[t].append(time.perf_counter() - t0)
    moved = shim.log_text().count("PullImage bench/coldpull:c")
    if moved < a.cold_pulls:
        record.notes.append("cold pull: only {} of {} shim pulls logged".format(
            moved, a.cold_pulls))
    figure = record.figures["PullImage cold"] = {
        t: {"p50": percentile(s, 0.5), "p90": percentile(s, 0.9), "max": max(s),
            "n": len(s)} for t, s in samples.items()}
    after = shim.metrics()
    names = {node.r0.host: "offline", node.r1.host: "mirror 1", node.slow_host: "mirror 2"}
    probes = metric_means(scraped, after, "image_cri_shim_probe_duration_seconds",
                          lambda labels: labels.get("kind") == "manifest")
    pulls = metric_means(scraped, after, "image_cri_shim_call_duration_seconds",
                         lambda labels: labels.get("method") == "PullImage")
    figure["shim metrics"] = "; ".join(
        ["manifest probes, mean: " + ", ".join(
            "{} {} ({} probes)".format(names.get(dict(labels)["registry"],
                                                 dict(labels)["registry"]), ms(mean), count)
            for labels, (count, mean) in sorted(probes.items()))] +
        ["PullImage served in {} on average ({} calls)".format(ms(mean), count)
         for labels, (count, mean) in pulls.items()]) if probes else ""
    log("PullImage cold       p50 direct {:.1f} ms, floor {:.1f} ms, shim {:.1f} ms",
        figure["direct"]["p50"] * 1e3, figure["floor"]["p50"] * 1e3,
        figure["shim"]["p50"] * 1e3)


def measure_hol(node, record):
    a = node.args
    figure = record.figures["head-of-line"] = {t: {"idle": [], "busy": [], "settled": [],
                                                   "pulls": [], "errors": 0}
                                               for t in TARGETS}
    status = node.warm_status()
    for k in range(a.hol_rounds):
        for t in rotated(k):
            tag = "{}-r{}".format(t, k)
            local = ["{}/bench/hol-{}:{}".format(node.slow_host, i, tag)
                     for i in range(a.hol_pulls)]
            names = local if t != "shim" else [
                "bench/hol-{}:{}".format(i, tag) for i in range(a.hol_pulls)]
            _hol_round(node, record, t, status[t], names, local, figure[t])
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
    record.note_rss("after head-of-line", node.shim.pid)
    record.shim_threads = proc_threads(node.shim.pid)


def _hol_round(node, record, target, status, names, local, out):
    a = node.args
    call = node.channels[target].unary_unary(IMAGE_STATUS)
    clock = time.perf_counter
    for _ in range(a.hol_idle_calls):
        t0 = clock()
        call(status, timeout=CALL_TIMEOUT)
        out["idle"].append(clock() - t0)
    pull = node.channels[target].unary_unary(PULL)
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
                record.notes.append("head-of-line {}: pull failed: {}".format(
                    target, getattr(error, "details", lambda: error)()))
    for name in local:
        try:
            node.call("direct", REMOVE, remove_body(name))
        except grpc.RpcError:
            pass


def measure_failover(node, record):
    a = node.args
    hole = node.child("blackhole", [PY, os.path.join(BENCH, "blackhole.py"), node.r0.host],
                      True)
    hole_host = "127.0.0.1:" + hole.expect("port")
    shim = node.start_shim("shim-failover", "http://" + hole_host)
    channel = grpc.insecure_channel("unix:" + shim.socket, options=CHANNEL_OPTIONS)
    pull = channel.unary_unary(PULL)
    direct = node.channels["direct"].unary_unary(PULL)
    r1 = node.r1.host
    before, after, baseline, marks = [], [], [], []
    tags = {name: iter(values) for name, values in node.failover_tags.items()}

    def timed(call, body):
        t0 = time.perf_counter()
        call(body, timeout=PULL_TIMEOUT)
        return time.perf_counter() - t0

    def wait_state(state, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current, reason = shim.health_state(hole_host)
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
    moved = len(re.findall(r"PullImage bench/failover:\S+ -> {}/".format(re.escape(r1)),
                           shim.log_text()))
    expected = len(before) + len(after)
    if moved != expected:
        record.notes.append("failover: {} of {} pulls went to the second registry".format(
            moved, expected))
    record.figures["failover"] = {
        "before": before, "after": after, "direct": baseline, "marks": marks,
        "probe_timeout": a.probe_timeout, "interval": a.health_interval}
    log("failover: before detection max {:.2f} s, after max {:.3f} s (direct {:.3f} s)",
        max(before), max(after), max(baseline))
    shim.stop()
    hole.stop()
