"""
Helpers for the fault-injection suites (L{tests.faults.test_registry},
L{tests.faults.test_config}): a scripted raw-socket HTTP server that can
hang, stall or trickle at any point of an exchange and records what it saw
(when each connection opened, what was asked on it, when the client closed
it); a tmpfs mount that is always unmounted; the memory of a process; the
suites' time scale; and a way to change a module constant inside the shim's
own process.

Standard library only; every thread and wait is bounded.
"""

import errno
import os
import selectors
import socket
import subprocess
import threading
import time

#: Set (to anything but C{""} or C{"0"}) for the long variants: the
#: registry flapping runs for L{LONG_FLAP_SECONDS} instead of
#: L{CI_FLAP_SECONDS}, and the ConfigMap request timeout is the shim's real
#: one instead of a shortened one.
LONG_ENV = "ICS_FAULTS_LONG"
CI_FLAP_SECONDS = 30.0
LONG_FLAP_SECONDS = 90.0


def long_run():
    """
    :return: whether the long variants were asked for (L{LONG_ENV}).
    """
    return os.environ.get(LONG_ENV, "") not in ("", "0")


# -- a scripted HTTP server --------------------------------------------------------

#: What a L{ScriptedServer} script returns for one request.
#: C{(REPLY, bytes)}: send the bytes (a whole response) and go on reading.
REPLY = "reply"
#: C{(STALL, bytes)}: send the bytes (usually part of a response), then never
#: send anything more on that connection, nor read from it; keep it open.
STALL = "stall"
#: C{(HOLE, None)}: send nothing, ever; keep the connection open.
HOLE = "hole"


class Connection:
    """
    What a L{ScriptedServer} saw of one client connection.

    :ivar opened: C{time.monotonic()} at accept.
    :ivar requests: C{(time, method, path)} per request head received.
    :ivar closed: C{time.monotonic()} when the client closed it (EOF or
        reset seen), or C{None} while it is open.
    """

    def __init__(self, sock):
        self.sock = sock
        self.opened = time.monotonic()
        self.requests = []
        self.closed = None
        self.buffer = b""
        self.stalled = False


class ScriptedServer:
    """
    A TCP server on 127.0.0.1 (one thread, non-blocking sockets) that reads
    HTTP/1.1 request heads and answers each as C{script(method, path)} says
    (L{REPLY}, L{STALL} or L{HOLE}).  Request bodies are not expected (the
    shim and containerd send HEAD and GET only).

    It notices when a client closes a connection even on one it never
    answers (a stalled connection is still watched for EOF), which is how
    the tests see that the shim really gave up on a request.  Its thread
    lives at most C{lifetime} seconds; L{close} ends it at once and closes
    every connection.
    """

    def __init__(self, script, lifetime=300.0):
        self.script = script
        self.connections = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._deadline = time.monotonic() + lifetime
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="scripted-http", daemon=True)
        self._thread.start()

    @property
    def host(self):
        """
        C{127.0.0.1:PORT}.
        """
        return "127.0.0.1:{}".format(self.port)

    @property
    def url(self):
        """
        C{http://127.0.0.1:PORT}.
        """
        return "http://" + self.host

    def snapshot(self):
        """
        :return: a list of C{(opened, [(time, method, path)...], closed)} per
            connection so far, safe to read from another thread.
        """
        with self._lock:
            return [(c.opened, list(c.requests), c.closed) for c in self.connections]

    def requests_for(self, needle):
        """
        :return: the connections (as in L{snapshot}) on which a request path
            held C{needle}.
        """
        return [entry for entry in self.snapshot()
                if any(needle in path for _, _, path in entry[1])]

    def close(self):
        """
        Stop serving and close every connection.  Idempotent.
        """
        self._stop.set()
        self._thread.join(5)

    # -- the thread -----------------------------------------------------------------

    def _run(self):
        try:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                for key, _ in self._selector.select(timeout=0.02):
                    if key.data is None:
                        self._accept()
                    else:
                        self._readable(key.data)
        finally:
            self._selector.close()
            self._listener.close()
            with self._lock:
                for connection in self.connections:
                    connection.sock.close()
                    if connection.closed is None:
                        connection.closed = time.monotonic()

    def _accept(self):
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            connection = Connection(sock)
            with self._lock:
                self.connections.append(connection)
            self._selector.register(sock, selectors.EVENT_READ, connection)

    def _readable(self, connection):
        try:
            data = connection.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._selector.unregister(connection.sock)
            connection.sock.close()
            with self._lock:
                connection.closed = time.monotonic()
            return
        if connection.stalled:
            # Read and drop: only the EOF matters now.
            return
        connection.buffer += data
        while b"\r\n\r\n" in connection.buffer and not connection.stalled:
            head, _, connection.buffer = connection.buffer.partition(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            method = parts[0]
            path = parts[1] if len(parts) > 1 else ""
            with self._lock:
                connection.requests.append((time.monotonic(), method, path))
            action, payload = self.script(method, path)
            if payload:
                self._send(connection, payload)
            if action != REPLY:
                connection.stalled = True

    def _send(self, connection, payload):
        # Small payloads only: a blocking send with a short timeout is fine.
        sock = connection.sock
        sock.setblocking(True)
        sock.settimeout(2.0)
        try:
            sock.sendall(payload)
        except OSError:
            pass
        finally:
            sock.setblocking(False)


def http_response(code=200, reason="OK", headers=(), body=b"", length=None):
    """
    :return: the bytes of an HTTP/1.1 response; C{length} (default: the
        body's) is the C{Content-Length} announced, which may be more than
        what is sent (a stalled body).
    """
    lines = ["HTTP/1.1 {} {}".format(code, reason)]
    lines += ["{}: {}".format(name, value) for name, value in headers]
    lines.append("Content-Length: {}".format(len(body) if length is None else length))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- tmpfs -------------------------------------------------------------------------


class MountError(Exception):
    """
    The test could not mount or unmount a filesystem.
    """


class Tmpfs:
    """
    A small tmpfs mounted on C{directory} (created if needed); L{unmount}
    (idempotent, lazy as a last resort) must be registered as a cleanup
    right after construction succeeds.

    :raise MountError: if it cannot be mounted (not root, or no mount
        permission in this container).
    """

    def __init__(self, directory, size="64k"):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.mounted = False
        self._run("mount", "-t", "tmpfs", "-o", "size={},mode=0755".format(size), "tmpfs",
                  directory)
        self.mounted = True

    def _run(self, *argv):
        try:
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                    timeout=15)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise MountError("{}: {}".format(" ".join(argv), e))
        if result.returncode != 0:
            raise MountError("{}: {}".format(" ".join(argv),
                                             result.stderr.decode("utf-8", "replace").strip()))

    def read_only(self):
        """
        Remount it read-only.
        """
        self._run("mount", "-o", "remount,ro", self.directory)

    def read_write(self):
        """
        Remount it read-write.
        """
        self._run("mount", "-o", "remount,rw", self.directory)

    def fill(self, name="filler"):
        """
        Fill it up with the file C{name}, until the kernel says ENOSPC.

        :return: the filler's path (remove it to free the space).
        """
        path = os.path.join(self.directory, name)
        chunk = b"\0" * 4096
        with open(path, "wb", buffering=0) as f:
            while True:
                try:
                    f.write(chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
        # Fill the last partial page too.
        with open(path, "ab", buffering=0) as f:
            while True:
                try:
                    f.write(b"\0")
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
        return path

    def unmount(self):
        """
        Unmount it (lazily if it is busy).  Idempotent.
        """
        if not self.mounted:
            return
        try:
            self._run("umount", self.directory)
        except MountError:
            self._run("umount", "-l", self.directory)
        self.mounted = False


def mounted(directory):
    """
    :return: whether something is mounted exactly on C{directory}.
    """
    target = os.path.realpath(directory)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == target:
                return True
    return False


# -- processes ---------------------------------------------------------------------


def memory_kib(pid):
    """
    :return: C{(VmRSS, VmHWM)} of process C{pid}, in KiB: its resident
        memory now and at its peak.
    """
    values = {}
    with open("/proc/{}/status".format(pid), encoding="ascii") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def patch_shim_module(node, module, name, value):
    """
    Make C{node}'s shim run with C{module.name = value} (a constant of the
    shim's, such as a request timeout, shortened so that a test does not
    wait for the real one): its command becomes C{python -c} code setting
    the constant before handing over to twistd, as L{ShimNode.shim_command}
    does.  The rest of the command is made when the shim starts (so a
    C{config_path} changed later is followed).

    :param node: a L{tests.e2e_support.ShimNode}.
    """
    original = node.shim_command
    prelude = "import {module} as _m; _m.{name} = {value!r}; ".format(
        module=module, name=name, value=value)

    def shim_command():
        command = original()
        code = command[2]
        # Another constant may have been set before: its prelude comes first.
        assert command[1] == "-c" and "from twisted.scripts.twistd" in code, command
        return command[:2] + [prelude + code] + command[3:]
    node.shim_command = shim_command
