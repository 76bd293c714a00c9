"""
Edge cases of L{cri_shim.serve.grpc_server} found by mutation testing (make
mutate): the refusal messages, systemd's notifications, the 16 MiB message
limit to the byte, and a stop that leaves no worker thread behind.
"""

import os
import socket
import threading

import grpc
from twisted.internet import reactor
from twisted.application.service import MultiService
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from cri_shim.serve import methods
from cri_shim.serve.grpc_server import GrpcServerService, SocketInUse, claim_socket
from cri_shim.serve.passthrough import ProxyHandler
from cri_shim.serve.upstream import CHANNEL_OPTIONS, MAX_MESSAGE, Upstream
from cri_shim.testing import FakeRuntime
from tests.serve.test_grpc_server import short_folder


class ClaimSocketMessageTests(SynchronousTestCase):
    """
    What L{claim_socket} tells the operator when it refuses.
    """

    def test_messages(self):
        """
        Each refusal names the path and what is in the way.
        """
        folder = short_folder(self)
        regular = os.path.join(folder, "file")
        with open(regular, "w"):
            pass
        served = os.path.join(folder, "served.sock")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(served)
        listener.listen(1)
        self.addCleanup(listener.close)
        self.assertEqual(
            [str(self.assertRaises(SocketInUse, claim_socket, path))
             for path in (regular, served)],
            ["{} exists and is not a socket; refusing to replace it".format(regular),
             "another server is already listening on {}; refusing to start (stop it, or set "
             "a different 'shim' socket)".format(served)])


class GrpcServerServiceEdgeTests(TestCase):
    """
    L{GrpcServerService} relaying to a L{FakeRuntime}.
    """

    def setUp(self):
        folder = short_folder(self)
        self.runtime = FakeRuntime(os.path.join(folder, "runtime.sock"))
        self.addCleanup(self.runtime.stop)
        self.notify_path = os.path.join(folder, "notify")
        self.manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.manager.bind(self.notify_path)
        self.addCleanup(self.manager.close)
        self.patch(os, "environ", dict(os.environ, NOTIFY_SOCKET=self.notify_path))
        self.path = os.path.join(folder, "shim.sock")
        upstream = Upstream(os.path.join(folder, "runtime.sock"))
        self.service = GrpcServerService(self.path, ProxyHandler(upstream, {}, lambda: 60.0),
                                         upstream, reactor)
        self.channel = grpc.insecure_channel("unix:" + self.path, options=CHANNEL_OPTIONS)
        self.addCleanup(self.channel.close)

    def test_named(self):
        """
        The service is found under the name C{grpc} in the application's
        service tree.
        """
        root = MultiService()
        self.service.setServiceParent(root)
        self.assertIs(root.getServiceNamed("grpc"), self.service)

    def notifications(self):
        self.manager.setblocking(False)
        sent = []
        try:
            while True:
                sent.append(self.manager.recv(64))
        except BlockingIOError:
            return sent

    def workers(self):
        return [t for t in threading.enumerate() if t.name.startswith("cri-shim-grpc")]

    def test_notifies_and_leaves_no_worker(self):
        """
        systemd hears C{READY=1} once the socket serves and C{STOPPING=1} when
        the stop begins; once the stop's Deferred fires, no worker thread
        of the server is left.
        """
        self.service.startService()
        self.assertEqual(self.notifications(), [b"READY=1"])
        call = self.channel.unary_unary(methods.path("runtime.v1", "RuntimeService", "Version"))
        d = deferToThread(call, b"", timeout=10)

        def stop(_):
            self.assertNotEqual(self.workers(), [])
            return self.service.stopService()

        def stopped(_):
            self.assertEqual(self.notifications(), [b"STOPPING=1"])
            self.assertEqual(self.workers(), [])

        return d.addCallback(stop).addCallback(stopped)

    def test_message_limit(self):
        """
        A message of exactly 16 MiB is relayed both ways; one byte more is
        refused with RESOURCE_EXHAUSTED.
        """
        self.service.startService()
        self.addCleanup(self.service.stopService)
        call = self.channel.unary_unary(methods.path("runtime.v1", "RuntimeService", "ExecSync"))
        exact = b"x" * MAX_MESSAGE  # relayed as raw bytes, never parsed
        self.assertEqual(MAX_MESSAGE, 16 * 1024 * 1024)

        def relay(_):
            self.assertEqual(len(call(exact, timeout=30)), MAX_MESSAGE)
            error = self.assertRaises(grpc.RpcError, call, exact + b"x", timeout=30)
            self.assertEqual(error.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)

        return deferToThread(relay, None)
