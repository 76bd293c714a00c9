"""
The bench's child processes and what /proc says of them: a child started in
its own session and dying with this process, its answers read line by line,
its socket waited for, its stop; CPU time, RSS and threads by PID, the load
average; the run's log lines.
"""

import os
import select
import socket
import subprocess
import sys
import time

from calls import REPO
from dev import sandbox

START_TIMEOUT = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PY = sys.executable


class BenchError(Exception):
    pass


def log(message, *args):
    stamp = time.strftime("%H:%M:%S")
    print("[{}] {}".format(stamp, message.format(*args) if args else message), flush=True)


def sleep_until(wall):
    delay = wall - time.time()
    if delay > 0:
        time.sleep(delay)


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
                sandbox.dying_with_parent(self.argv), cwd=self.cwd,
                stdin=subprocess.PIPE if self.capture == "both" else subprocess.DEVNULL,
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

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log_text().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout=10.0):
        process, self.process = self.process, None
        if process is None:
            return
        sandbox.terminate(process, timeout)
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


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]
