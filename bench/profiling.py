"""
Where the shim's time goes under load (``--profile``): py-spy records the
shim while the load workers call it, and its raw stacks are summed up by
frame and by component for the report.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time

from calls import IMAGE_STATUS, VERSION, VERSION_BODY, status_body
from procs import PY, sleep_until

_CATEGORIES = (("/cri_shim/", "cri_shim"), ("/twisted/logger/", "twisted.logger"),
               ("/twisted/", "twisted (reactor, treq)"), ("/treq/", "twisted (reactor, treq)"),
               ("/grpc/", "grpc (Python layer)"), ("/google/protobuf/", "protobuf"),
               ("/threading.py", "threads, locks, queues"),
               ("/concurrent/futures/", "threads, locks, queues"),
               ("/queue.py", "threads, locks, queues"))
_BOOTSTRAP = ("/threading.py", "/concurrent/futures/thread.py")


def profile(node, record, workers):
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(PY), "py-spy")
    if not os.path.exists(spy):
        record.notes.append("--profile: py-spy not found (pip install py-spy)")
        return
    a = node.args
    results = {}
    # Kept after the run (the sandbox directory is not): flamegraph.pl input.
    record.profile_dir = tempfile.mkdtemp(prefix="ics-bench-profile-")
    for label, path, body in (("Version", VERSION, VERSION_BODY),
                              ("ImageStatus warm", IMAGE_STATUS, status_body("nginx:latest"))):
        raw = os.path.join(record.profile_dir, "profile-{}.txt".format(
            label.split()[0].lower()))
        seconds = 10
        command = {"socket": node.shim.socket, "concurrency": a.clients // a.client_procs,
                   "start_at": time.time() + 1.0, "duration": seconds + 3,
                   "calls": [{"path": path, "body": body.hex()}]}
        answers = workers.start([command] * a.client_procs, seconds + 60)
        sleep_until(command["start_at"] + 1)
        # --gil: only samples of the thread holding the GIL, i.e. where the
        # shim's Python time goes (it is one core at most).
        subprocess.run([spy, "record", "--pid", str(node.shim.pid), "-d", str(seconds),
                        "-r", "200", "--format", "raw", "-o", raw, "--nonblocking",
                        "--gil", "--full-filenames"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=seconds + 60)
        answers()
        results[label] = summarize_profile(raw)
    record.figures["profile"] = results


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
