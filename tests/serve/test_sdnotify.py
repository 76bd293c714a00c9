"""
Tests for L{cri_shim.serve.sdnotify}, against a real datagram socket.
"""

import os
import shutil
import socket
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.serve.sdnotify import notify


class NotifyTests(SynchronousTestCase):
    def listen(self, address):
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(address)
        receiver.settimeout(5)
        self.addCleanup(receiver.close)
        return receiver

    def test_path(self):
        """
        The state goes as one datagram to the socket path.
        """
        folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, folder, True)
        path = os.path.join(folder, "notify")
        receiver = self.listen(path)
        self.assertTrue(notify("READY=1", {"NOTIFY_SOCKET": path}))
        self.assertEqual(receiver.recv(100), b"READY=1")

    def test_abstract(self):
        """
        An address starting with @ is an abstract socket.
        """
        name = "ics-test-{}".format(os.getpid())
        receiver = self.listen("\0" + name)
        self.assertTrue(notify("READY=1", {"NOTIFY_SOCKET": "@" + name}))
        self.assertEqual(receiver.recv(100), b"READY=1")

    def test_no_manager(self):
        """
        Without NOTIFY_SOCKET nothing is sent; a dead socket is not an error.
        """
        self.assertFalse(notify("READY=1", {}))
        self.assertFalse(notify("READY=1", {"NOTIFY_SOCKET": "/nonexistent/notify"}))
