"""
Fault injection on the ConfigMap watch over a real socket: an API server
that streams bookmarks without end, read by the shim's own reading code
(L{cri_shim.sync.watch.ObjectWatch} over the production treq client and
connection pool) in this process.

The shim's memory must not grow with what a watch streams: before issue 17,
treq kept every byte of the response to replay it, for the watch's whole
life (60 changes of a 0.91 MB ConfigMap left a shim 56 MiB larger).  The
bound is on resident memory, with a wide margin; nothing here is timed (the
test waits for the last event, within trial's timeout).  Measured figures
go to trial's log (C{test.log}) as C{FAULTS} lines.
"""

import json
import os
import socket
import threading

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python import log as twisted_log
from twisted.trial import unittest

from cri_shim.registries import httputil
from cri_shim.registries.tls import agent
from cri_shim.sync.watch import ObjectWatch, Unreachable
from tests.fault_support import memory_kib

#: How much the stream carries.
STREAM = 64 * 1024 * 1024
#: How much the reader's resident memory may grow while it reads the stream
#: (measured: well under 1 MiB; a reader keeping the stream grows by more
#: than STREAM).
GROWTH_LIMIT_KIB = STREAM // 1024 // 4
#: The version of the last bookmark, which the reader waits for.
LAST = "999999999"
#: How long the server waits on its socket at most (a bound, not a timing).
SOCKET_TIMEOUT = 60.0


def _bookmark(version):
    return json.dumps({"type": "BOOKMARK", "object": {
        "kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"resourceVersion": version}}}).encode("utf-8") + b"\n"


def _chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


class _BookmarkServer:
    """
    Answers one watch with L{STREAM} bytes of bookmarks (the same 64 KiB
    block again and again), then one whose version is L{LAST}, then waits,
    the stream still open, for the client to close it.

    :ivar block_events: the bookmarks in one block; C{blocks} sent.
    """

    def __init__(self):
        self._listener = socket.socket()
        self._listener.settimeout(SOCKET_TIMEOUT)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self.port = self._listener.getsockname()[1]
        lines = [_bookmark(str(1000 + number)) for number in range(600)]
        self._block = b"".join(lines)
        self.block_events = len(lines)
        self.blocks = STREAM // len(self._block)
        self._client = None
        self._thread = threading.Thread(target=self._serve, name="bookmark-server",
                                        daemon=True)
        self._thread.start()

    def _serve(self):
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        self._client = client
        with client:
            client.settimeout(SOCKET_TIMEOUT)
            try:
                head = b""
                while b"\r\n\r\n" not in head:
                    received = client.recv(65536)
                    if not received:
                        return
                    head += received
                client.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n")
                block = _chunk(self._block)
                for _ in range(self.blocks):
                    client.sendall(block)
                client.sendall(_chunk(_bookmark(LAST)))
                client.recv(1)
            except OSError:
                return

    def stop(self):
        """
        Close the server's sockets, which ends its thread at once: it must
        not wait for the client's close, which needs the reactor this runs
        on.
        """
        self._listener.close()
        if self._client is not None:
            try:
                self._client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(SOCKET_TIMEOUT)


class _Cluster:
    def __init__(self, port):
        self.server = "http://127.0.0.1:{}".format(port)

    def headers(self):
        return {}


class WatchStreamMemoryTests(unittest.TestCase):
    timeout = 300

    def test_bookmarks_do_not_stay(self):
        """
        64 MiB of bookmarks on one watch: every one is read, and the
        reader's resident memory grows by less than a quarter of that while
        the watch is still open.
        """
        server = _BookmarkServer()
        self.addCleanup(server.stop)
        pool = httputil.pool(reactor)
        self.addCleanup(pool.closeCachedConnections)
        watch = ObjectWatch(HTTPClient(agent(reactor, None, pool)), reactor,
                            _Cluster(server.port), "kube-system", "image-cri-shim")
        seen = {"events": 0}
        measured = Deferred()

        def on_event(kind, thing):
            if seen["events"] == 0:
                seen["before"] = memory_kib(os.getpid())[0]
            seen["events"] += 1
            if thing["metadata"]["resourceVersion"] == LAST:
                seen["after"] = memory_kib(os.getpid())[0]
                watch.abort()
        watching = watch.watch("1", 300, on_event)
        watching.addErrback(lambda failure: failure.trap(Unreachable))
        watching.chainDeferred(measured)

        def check(_):
            growth = seen["after"] - seen["before"]
            twisted_log.msg("FAULTS {}: reader RSS before / after {} MiB of bookmarks (KiB): "
                            "{} / {} (growth {})".format(self.id(), STREAM // 2 ** 20,
                                                         seen["before"], seen["after"], growth))
            self.assertEqual(seen["events"], server.blocks * server.block_events + 1)
            self.assertLess(growth, GROWTH_LIMIT_KIB)
        return measured.addCallback(check)
