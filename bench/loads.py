"""
The call loads: latency (one call at a time, the three targets in
interleaved rounds), throughput (many calls in flight from the load workers,
each target's CPU read from /proc) and the soak (mixed calls through the shim
for a while, its RSS sampled).  Each writes its figures into the run's record.
"""

import math
import time

from calls import (
    API, CALL_TIMEOUT, IMAGE_STATUS, LIST_IMAGES, PULL, PULL_TIMEOUT, REMOVE, TARGETS, VERSION,
    VERSION_BODY, percentile, pull_body, remove_body, rotated, status_bodies, status_body)
from procs import BenchError, log, proc_cpu, proc_rss_mb, sleep_until


def latency_cases(node):
    r0 = node.r0.host
    same = lambda body: {t: body for t in TARGETS}  # noqa: E731
    return [
        ("Version", "pass-through", VERSION, same(VERSION_BODY)),
        ("ListImages", "pass-through", LIST_IMAGES,
         same(API.ListImagesRequest().SerializeToString())),
        ("ImageStatus warm", "warm rewrite", IMAGE_STATUS, node.warm_status()),
        ("ImageStatus cold", "cold rewrite", IMAGE_STATUS,
         status_bodies(r0 + "/library/redis:7", "redis:7")),
        ("ImageStatus absent", "cold, nowhere", IMAGE_STATUS,
         status_bodies("docker.io/bench/absent:v1", "bench/absent:v1")),
    ]


def measure_latency(node, record):
    a = node.args
    rounds = math.ceil(a.calls / a.round)
    for label, kind, path, bodies in latency_cases(node):
        calls = {t: node.channels[t].unary_unary(path) for t in TARGETS}
        answers = {}
        for t in TARGETS:
            for _ in range(a.warmup):
                answers[t] = calls[t](bodies[t], timeout=CALL_TIMEOUT)
        if label.startswith("ImageStatus"):
            # The shim must hand back what containerd says of the local name,
            # shown under the name asked for.
            if not (_unnamed(answers["shim"]) == _unnamed(answers["direct"])
                    and answers["direct"] == answers["floor"]):
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
        record.figures[label] = {
            t: {"p50": percentile(s, 0.5), "p99": percentile(s, 0.99), "n": len(s)}
            for t, s in samples.items()}
        record.figures[label]["kind"] = kind
        record.figures[label]["bytes"] = len(answers["direct"])
        f = record.figures[label]
        log("{:<20} p50 direct {:.0f} us, floor {:.0f} us, shim {:.0f} us ({} calls each)",
            label, f["direct"]["p50"] * 1e6, f["floor"]["p50"] * 1e6,
            f["shim"]["p50"] * 1e6, len(samples["shim"]))
    record.images_listed = len(API.ListImagesResponse.FromString(
        node.call("direct", LIST_IMAGES, b"")).images)


def _unnamed(raw):
    """
    :return: an ImageStatusResponse without the image's names.
    """
    response = API.ImageStatusResponse.FromString(raw)
    response.image.ClearField("repo_tags")
    response.image.ClearField("repo_digests")
    return response.SerializeToString()


def measure_throughput(node, record, workers):
    a = node.args
    per = a.clients // a.client_procs
    cases = [("Version", VERSION, {t: VERSION_BODY for t in TARGETS}),
             ("ImageStatus warm", IMAGE_STATUS, node.warm_status())]
    pids = {"floor": node.floor.pid, "shim": node.shim.pid,
            "containerd": node.containerd.process.pid}
    for label, path, bodies in cases:
        totals = {t: {"count": 0, "seconds": 0.0, "errors": 0, "cpu": {}, "client": 0.0,
                      "p50": [], "p99": []} for t in TARGETS}
        for k in range(a.tp_rounds):
            for t in rotated(k):
                start_at = time.time() + 1.0
                command = {"socket": node.sockets[t], "concurrency": per,
                           "start_at": start_at, "duration": a.tp_seconds,
                           "calls": [{"path": path, "body": bodies[t].hex()}]}
                answers = workers.start([command] * a.client_procs, a.tp_seconds + 60)
                sleep_until(start_at)
                cpu0 = {name: proc_cpu(pid) for name, pid in pids.items()}
                sleep_until(start_at + a.tp_seconds)
                cpu1 = {name: proc_cpu(pid) for name, pid in pids.items()}
                total = totals[t]
                for result in answers():
                    total["count"] += result["count"]
                    total["errors"] += result["errors"]
                    total["client"] += result["cpu"]
                    total["p50"].append(result["p50"])
                    total["p99"].append(result["p99"])
                    if result["errors"]:
                        record.notes.append("throughput {} {}: {} errors, e.g. {}".format(
                            label, t, result["errors"], result["error"]))
                total["seconds"] += a.tp_seconds
                for name in pids:
                    total["cpu"][name] = total["cpu"].get(name, 0.0) + cpu1[name] - cpu0[name]
        figure = record.figures["throughput " + label] = {}
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
    record.note_rss("after throughput", node.shim.pid)


def soak(node, record, workers):
    a = node.args
    shim = node.shim
    pull_tags = [pull_body("bench/soakpull:" + tag).hex() for tag in node.soak_tags]
    calls = [
        {"path": VERSION, "body": VERSION_BODY.hex()},
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
        commands.append({"socket": shim.socket, "concurrency": per,
                         "start_at": time.time() + 1.0, "duration": a.soak,
                         "calls": mine, "warmup": 5})
    start_at = commands[0]["start_at"]
    answers = workers.start(commands, a.soak + 120)
    sleep_until(start_at)
    cpu0 = proc_cpu(shim.pid)
    samples = []
    step = max(min(a.soak / 20.0, 30.0), 1.0)
    while time.time() < start_at + a.soak:
        samples.append((time.time() - start_at, proc_rss_mb(shim.pid)))
        time.sleep(min(step, max(start_at + a.soak - time.time(), 0.01)))
    samples.append((time.time() - start_at, proc_rss_mb(shim.pid)))
    cpu1 = proc_cpu(shim.pid)
    results = answers()
    count = sum(r["count"] for r in results)
    errors = sum(r["errors"] for r in results)
    if errors:
        record.notes.append("soak: {} errors, e.g. {}".format(
            errors, [r["error"] for r in results if r["error"]][0]))
    # Growth from the first sample past the first tenth (warm-up) to the end.
    settle = [rss for when, rss in samples if when >= a.soak / 10.0] or [samples[-1][1]]
    record.figures["soak"] = {"seconds": a.soak, "calls": count, "errors": errors,
                              "rss_start": settle[0], "rss_end": samples[-1][1],
                              "rss_max": max(rss for _, rss in samples),
                              "rss_min": min(rss for _, rss in samples),
                              "growth": samples[-1][1] - settle[0],
                              "cpu_per_1000": (cpu1 - cpu0) / max(count, 1) * 1000,
                              "samples": samples}
    record.note_rss("end of soak", shim.pid, samples[-1][1])
    log("soak {:.0f} s: {} calls, RSS {:.1f} -> {:.1f} MB", a.soak, count, settle[0],
        samples[-1][1])
