"""
Tests for L{cri_shim.serve.grpc_server}: claiming the socket, and the service's
start and graceful stop, over a real UNIX socket.
"""

import os
import shutil
import socket
import stat
import tempfile

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dev.cri_client import CRIClient
from cri_shim.serve.grpc_server import GrpcServerService, SocketInUse, claim_socket
from cri_shim.serve.passthrough import ProxyHandler
from cri_shim.testing import FakeRuntime
from cri_shim.serve.upstream import Upstream


def short_folder(case):
    folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
    case.addCleanup(shutil.rmtree, folder, True)
    return folder


class ClaimSocketTests(SynchronousTestCase):
    def setUp(self):
        self.folder = short_folder(self)

    def test_creates_folder(self):
        """
        A missing parent folder is made, mode 0711.
        """
        path = os.path.join(self.folder, "run", "shim.sock")
        claim_socket(path)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o711)

    def test_stale_socket_removed(self):
        """
        A socket file nobody listens on is removed.
        """
        path = os.path.join(self.folder, "shim.sock")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.close()
        claim_socket(path)
        self.assertFalse(os.path.exists(path))

    def test_live_socket_refused(self):
        """
        A socket another server listens on is left alone, with a clear
        error.
        """
        path = os.path.join(self.folder, "shim.sock")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen(1)
        self.addCleanup(listener.close)
        error = self.assertRaises(SocketInUse, claim_socket, path)
        self.assertIn("another server is already listening on " + path, str(error))
        self.assertTrue(os.path.exists(path))

    def test_not_a_socket(self):
        """
        A regular file in the way is never deleted.
        """
        path = os.path.join(self.folder, "shim.sock")
        with open(path, "w") as f:
            f.write("precious")
        self.assertRaises(SocketInUse, claim_socket, path)
        with open(path) as f:
            self.assertEqual(f.read(), "precious")


class GrpcServerServiceTests(TestCase):
    def setUp(self):
        folder = short_folder(self)
        self.runtime = FakeRuntime(os.path.join(folder, "runtime.sock"))
        self.addCleanup(self.runtime.stop)
        self.path = os.path.join(folder, "shim.sock")
        upstream = Upstream(os.path.join(folder, "runtime.sock"))
        handler = ProxyHandler(upstream, {}, lambda: 60.0)
        self.service = GrpcServerService(self.path, handler, upstream, reactor, grace=5.0)
        self.client = CRIClient(self.path)
        self.addCleanup(self.client.close)

    def version(self):
        return deferToThread(self.client.Version, self.client.api.VersionRequest(), timeout=10)

    def test_serves_with_mode(self):
        """
        Once started, the socket is mode 0660 and calls are relayed; after
        the stop's Deferred fires the socket is gone.
        """
        self.service.startService()
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o660)
        d = self.version()

        def stop(_):
            return self.service.stopService()

        def gone(_):
            self.assertFalse(os.path.exists(self.path))

        return d.addCallback(stop).addCallback(gone)

    def test_graceful_stop(self):
        """
        A call in flight when the stop begins still completes.
        """
        self.runtime.delays["Version"] = 0.5
        self.service.startService()
        call = self.version()
        # Wait until the runtime has the call, then stop.
        waiting = deferToThread(self.runtime.arrived.wait, 10)

        def stop(arrived):
            self.assertTrue(arrived)
            return self.service.stopService()

        waiting.addCallback(stop)
        return call.addCallback(lambda response: waiting)
