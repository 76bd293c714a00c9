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

This file is the command line; the work is done by: ``targets`` (the sandbox
node and the three targets on it), ``loads`` (latency, throughput, soak),
``pulls`` (cold pull, head-of-line, failover), ``workers`` (the load worker
processes), ``profiling`` (py-spy, ``--profile``), ``report`` (the table and
``bench/results.md``), over ``calls`` (the CRI calls) and ``procs`` (child
processes, /proc).
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import loads  # noqa: E402
import pulls  # noqa: E402
from calls import BENCH, REPO  # noqa: E402
from procs import loadavg, log, proc_rss_mb  # noqa: E402
from profiling import profile  # noqa: E402
from report import Record, render  # noqa: E402
from targets import Node  # noqa: E402
from workers import Workers  # noqa: E402

PHASES = ("latency", "throughput", "coldpull", "hol", "soak", "failover")
#: --quick: every phase, short (well under a minute), to check that the bench works; its
#: figures mean little, and it writes beside the temporary files, not bench/results.md.
QUICK = {"calls": 200, "warmup": 20, "round": 50, "tp_seconds": 1.0, "tp_rounds": 1,
         "cold_pulls": 5, "listed_images": 30, "hol_pulls": 8, "hol_rounds": 1, "hol_layer_kb": 256,
         "hol_rate_kb": 256, "hol_idle_calls": 100, "failover_cycles": 1, "failover_after": 2,
         "soak": 5.0, "soak_pull_tags": 10, "max_seconds": 300.0,
         "out": os.path.join(tempfile.gettempdir(), "ics-bench-quick.md")}


class Watchdog(BaseException):
    pass


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
    p.add_argument("--listed-images", type=int, default=300,
                   help="distinct images pulled through the shim before the latency phase "
                        "(ListImages answers with them, shown under their requested names)")
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
    p.add_argument("--quick", action="store_true",
                   help="a short run of every phase, to check the bench works (options "
                        "given beside it still count)")
    if "--quick" in argv:
        p.set_defaults(**QUICK)
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
    record = Record()
    record.load = loadavg()
    node = Node(args)
    workers = None
    try:
        node.start()
        record.runtime = node.runtime
        record.note_rss("start", node.shim.pid)
        phases = args.phases
        if "latency" in phases:
            log("latency: {} calls per target per case, interleaved", args.calls)
            loads.measure_latency(node, record)
        workers = Workers(args.client_procs, node.dir)
        if "throughput" in phases:
            log("throughput: {} clients from {} processes", args.clients, args.client_procs)
            loads.measure_throughput(node, record, workers)
            record.floor_rss = proc_rss_mb(node.floor.pid)
        if "coldpull" in phases:
            log("cold PullImage: {} per target", args.cold_pulls)
            pulls.measure_cold_pull(node, record)
        if "hol" in phases:
            log("head-of-line: {} slow pulls", args.hol_pulls)
            pulls.measure_hol(node, record)
        if "soak" in phases:
            log("soak: {:.0f} s", args.soak)
            loads.soak(node, record, workers)
        if "profile" in phases:
            log("profile: py-spy on the shim")
            profile(node, record, workers)
        workers.close()
        workers = None
        if "failover" in phases:
            log("failover: {} cycles", args.failover_cycles)
            pulls.measure_failover(node, record)
    except Watchdog:
        sys.exit("bench/run.py: aborted after --max-seconds {:.0f}".format(args.max_seconds))
    except KeyboardInterrupt:
        print("\nbench/run.py: interrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)
        if workers is not None:
            workers.close()
        node.cleanup()
    finished = time.time()
    record.load = "{}, {}".format(record.load, loadavg())
    table, report = render(record, args, started, finished)
    with open(args.out, "w") as f:
        f.write(report)
    print()
    print(table)
    print("\nwritten: {}".format(os.path.relpath(args.out, os.getcwd())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
