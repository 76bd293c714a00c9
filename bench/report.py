"""
The report: what the run found (its record), the table printed at the end
and C{bench/results.md} (the machine it ran on, the table, what each figure
is, the notes of the run).
"""

import datetime
import os
import platform
import subprocess
import sys

import grpc

from calls import REPO, TARGETS, ms, percentile, us
from procs import proc_rss_mb, proc_threads, rss_split


class Record:
    """
    What a run found, for the report: the figures by name, notes, the shim's
    RSS at each step, and what the run saw of the machine and the shim.
    """

    def __init__(self):
        self.figures = {}
        self.notes = []
        self.rss, self.rss_parts = {}, {}
        self.runtime = "?"
        self.images_listed = 0
        self.load = "?"
        self.shim_threads = 0
        self.floor_rss = None
        self.profile_dir = None

    def note_rss(self, label, pid, value=None):
        """The shim's RSS now (or C{value}, read earlier), with its parts and threads."""
        self.rss[label] = proc_rss_mb(pid) if value is None else value
        self.rss_parts[label] = "{}; {} threads".format(rss_split(pid), proc_threads(pid))


def verdict(ok):
    return "**PASS**" if ok else "**MISS**"


def render(record, args, started, finished):
    f = record.figures
    rows = []

    def row(name, direct, floor, shim, by_floor, by_direct, target="", ok=None):
        rows.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            name, direct, floor, shim, by_floor, by_direct, target,
            "" if ok is None else verdict(ok)))

    def ratio(a, b):
        return "{:.2f}×".format(a / b) if b else "–"

    targets = {"Version": 1.10, "ListImages": 1.10, "ImageStatus warm": 1.25}
    for label, figure in f.items():
        if "kind" not in figure:  # the latency figures, in the order they were measured
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
    if record.rss:
        after_load = {k: v for k, v in record.rss.items() if k != "start"}
        worst = max(after_load.values()) if after_load else record.rss["start"]
        row("shim RSS after load (max of: {})".format(", ".join(
            "{} {:.1f}".format(k, v) for k, v in record.rss.items())), "–",
            "{:.1f} MB".format(proc_rss_mb_or(record.floor_rss)), "{:.1f} MB".format(worst),
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
    return table, details(record, args, started, finished, table)


def proc_rss_mb_or(value):
    return value if value is not None else float("nan")


def details(record, args, started, finished, table):
    f = record.figures
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
    w("| runtime | {} |".format(record.runtime))
    w("| shim | {} |".format(tree_version(args.shim_tree)))
    w("| command | `{}` |".format(" ".join(["bench/run.py"] + sys.argv[1:])))
    w("| load average (1 min) at start, end | {} |".format(record.load))
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
          "holds.".format(lat["shim"]["n"], args.warmup, record.images_listed,
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
              args.hol_idle_calls * args.hol_rounds, record.shim_threads))
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
            "{} {:.1f} ({})".format(k, v, record.rss_parts.get(k, "")) for k, v in
            record.rss.items()) +
          "; floor proxy {:.1f} after its load. Soak: {:.0f} s of {} calls in flight "
          "through the shim, cycling Version, ListImages, ImageStatus (warm, cold, and a "
          "new absent name each time), PullImage nginx:latest (warm), RemoveImage of an "
          "absent image, and PullImage of {} fresh tags (cold, then warm once each was seen). "
          "Growth is measured from the first sample after a tenth of the run to the end; "
          "samples (s: MB): {}. Shim CPU over the soak: {:.3f} s per 1000 calls. "
          "`BENCH_SOAK=600 make bench` runs the 10-minute soak.".format(
              proc_rss_mb_or(record.floor_rss), soak["seconds"], args.soak_concurrency,
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
            record.profile_dir))
    if record.notes:
        w("\n## Notes from the run\n")
        for note in record.notes:
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
